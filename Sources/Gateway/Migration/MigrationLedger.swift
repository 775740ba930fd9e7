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
        /// Read back from the share and found equal (`--verify`).
        var verified = false

        init(item: LocalItem, fileID: String, fingerprint: String) {
            size = item.size
            mtime = item.mtime
            ctime = item.ctime
            inode = item.inode
            self.fileID = fileID
            self.fingerprint = fingerprint
        }

        /// Decodes a record: four little-endian 64-bit integers (size, mtime, ctime, inode), a flags byte
        /// (1: verified), the file id's length in one byte, the file id, then the fingerprint. Nil when
        /// malformed (the file is read again).
        init?(encoded: [UInt8]) {
            guard encoded.count >= 34, encoded.count >= 34 + Int(encoded[33]) else { return nil }
            let numbers = encoded.withUnsafeBytes { raw in
                (0..<4).map { raw.loadUnaligned(fromByteOffset: $0 * 8, as: UInt64.self).littleEndian }
            }
            size = Int64(bitPattern: numbers[0])
            mtime = Int64(bitPattern: numbers[1])
            ctime = Int64(bitPattern: numbers[2])
            inode = numbers[3]
            verified = encoded[32] & 1 != 0
            let idEnd = 34 + Int(encoded[33])
            fileID = String(decoding: encoded[34..<idEnd], as: UTF8.self)
            fingerprint = String(decoding: encoded[idEnd...], as: UTF8.self)
        }

        var encoded: [UInt8] {
            var bytes: [UInt8] = []
            bytes.reserveCapacity(34 + fileID.utf8.count + fingerprint.utf8.count)
            for number in [UInt64(bitPattern: size), UInt64(bitPattern: mtime), UInt64(bitPattern: ctime), inode] {
                withUnsafeBytes(of: number.littleEndian) { bytes.append(contentsOf: $0) }
            }
            bytes.append(verified ? 1 : 0)
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

    /// The source folder's identity (device and inode): a mount point left empty by an unmounted share
    /// is another folder.
    struct Root: Equatable {
        var device: UInt64
        var inode: UInt64
    }

    /// Key of the source root's identity: a NUL byte, which no item path holds.
    private static let rootKey: [UInt8] = [0] + Array("root".utf8)

    /// The source root's identity recorded by an earlier run, if any.
    func root() throws -> Root? {
        guard let bytes = try database.get(Self.rootKey, in: files), bytes.count == 16 else { return nil }
        let numbers = bytes.withUnsafeBytes { raw in (0..<2).map { raw.loadUnaligned(fromByteOffset: $0 * 8, as: UInt64.self).littleEndian } }
        return Root(device: numbers[0], inode: numbers[1])
    }

    /// Records the source root's identity.
    func setRoot(_ root: Root) throws {
        var bytes: [UInt8] = []
        for number in [root.device, root.inode] { withUnsafeBytes(of: number.littleEndian) { bytes.append(contentsOf: $0) } }
        try database.put(Self.rootKey, bytes, in: files, sync: true)
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

    func close() { database.close() }
}
