import Backends
import Foundation
import Hashing
import RocksDB

/// The checkpoint of one migration (one source into one share path), kept in the state directory: for
/// every file copied, the source's identity when it was read (size, mtime, ctime, inode) and what the
/// share got (file id, fingerprint). A rerun reads only files whose identity changed or whose share entry
/// is no longer the one recorded. Records are written durably just before the commit that carries them,
/// so a commit that never landed only costs a re-read (its chunks are already stored and deduplicated).
final class MigrationLedger: Sendable {
    /// What was copied for one path.
    struct Record: Equatable {
        var size: Int64
        var mtime: Int64
        var ctime: Int64
        var inode: UInt64
        var fileID: String
        var fingerprint: String

        init(item: LocalItem, fileID: String, fingerprint: String) {
            size = item.size
            mtime = item.mtime
            ctime = item.ctime
            inode = item.inode
            self.fileID = fileID
            self.fingerprint = fingerprint
        }

        /// Decodes a record: four little-endian 64-bit integers (size, mtime, ctime, inode), the file id's
        /// length in one byte, the file id, then the fingerprint. Nil when malformed (the file is read again).
        init?(encoded: [UInt8]) {
            guard encoded.count >= 33, encoded.count >= 33 + Int(encoded[32]) else { return nil }
            let numbers = encoded.withUnsafeBytes { raw in
                (0..<4).map { raw.loadUnaligned(fromByteOffset: $0 * 8, as: UInt64.self).littleEndian }
            }
            size = Int64(bitPattern: numbers[0])
            mtime = Int64(bitPattern: numbers[1])
            ctime = Int64(bitPattern: numbers[2])
            inode = numbers[3]
            let idEnd = 33 + Int(encoded[32])
            fileID = String(decoding: encoded[33..<idEnd], as: UTF8.self)
            fingerprint = String(decoding: encoded[idEnd...], as: UTF8.self)
        }

        var encoded: [UInt8] {
            var bytes: [UInt8] = []
            bytes.reserveCapacity(33 + fileID.utf8.count + fingerprint.utf8.count)
            for number in [UInt64(bitPattern: size), UInt64(bitPattern: mtime), UInt64(bitPattern: ctime), inode] {
                withUnsafeBytes(of: number.littleEndian) { bytes.append(contentsOf: $0) }
            }
            bytes.append(UInt8(min(fileID.utf8.count, 255)))
            bytes.append(contentsOf: fileID.utf8.prefix(255))
            bytes.append(contentsOf: fingerprint.utf8)
            return bytes
        }

        /// The source file is still the one that was read.
        func matches(_ item: LocalItem) -> Bool {
            size == item.size && mtime == item.mtime && ctime == item.ctime && inode == item.inode
        }
    }

    private let database: Database
    private let files: ColumnFamily
    /// Where the ledger lives.
    let path: String

    /// The ledger directory for migrating `source` into `shareID` at `destination`, beneath `stateDirectory`.
    static func path(stateDirectory: String, source: String, shareID: String, destination: String) -> String {
        let identity = SHA256.hash(Array("\(source)\n\(shareID)\n\(destination)".utf8)).hex
        return stateDirectory + "/migrations/" + identity.prefix(24)
    }

    /// Opens (or creates) the ledger at `path`; a second run of the same migration is refused.
    init(path: String, description: String) throws {
        self.path = path
        try Posix.makeDirectories(path, mode: 0o700)
        let opened: Database
        do {
            opened = try Database(path: path + "/db", families: ["files"])
        } catch {
            guard "\(error)".contains("lock") else { throw error }
            throw GatewayError("another `tiergate migrate` of this source into this share is running (its checkpoint \(path) is locked)")
        }
        database = opened
        files = try database.family("files")
        // For people looking at the state directory.
        try? Data((description + "\n").utf8).write(to: URL(fileURLWithPath: path + "/migration.txt"))
    }

    /// The record of `path`, if it was copied.
    func record(_ path: String) throws -> Record? {
        try database.get(Array(path.utf8), in: files).flatMap(Record.init(encoded:))
    }

    /// Writes `records` and removes `removed` durably, in one batch.
    func write(_ records: [(String, Record)], removing removed: [String] = []) throws {
        guard !records.isEmpty || !removed.isEmpty else { return }
        var batch = WriteBatch()
        for (path, record) in records { batch.put(Array(path.utf8), record.encoded, in: files) }
        for path in removed { batch.delete(Array(path.utf8), in: files) }
        try database.write(batch, sync: true)
    }

    /// Paths recorded under `prefix` (a deleted source subtree's records are dropped with `write`).
    func paths(under prefix: String) throws -> [String] {
        var result: [String] = []
        try database.scan(files, prefix: Array(prefix.utf8)) { key, _ in
            result.append(String(decoding: key, as: UTF8.self))
            return true
        }
        return result
    }

    func close() { database.close() }
}
