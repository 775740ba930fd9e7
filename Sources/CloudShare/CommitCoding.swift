import Hashing

/// The binary form of commit records, written to shares of format 2 (format-1 shares keep JSON, and
/// both are read): `TGC1`, then the fields little-endian, strings as a u32 length and UTF-8, and an
/// xxh3-64 of everything before it. Decoding a 50,000-operation commit takes milliseconds where JSON
/// took half a second, and ids travel as bytes, not hex.
enum CommitCoding {
    static let magic: [UInt8] = Array("TGC1".utf8)

    /// Whether `bytes` are a binary record (else JSON).
    static func isBinary(_ bytes: [UInt8]) -> Bool {
        bytes.starts(with: magic)
    }

    static func encode(_ commit: Commit) -> [UInt8] {
        var writer = ByteWriter()
        writer.append(magic)
        writer.append(string: commit.id)
        writer.append(commit.sequence)
        writer.append(string: commit.author)
        writer.append(string: commit.authorName)
        writer.append(commit.time.bitPattern)
        writer.append(UInt32(commit.packs.count))
        for pack in commit.packs { writer.append(string: pack) }
        writer.append(UInt32(commit.operations.count))
        for operation in commit.operations {
            writer.append(UInt8(operationKinds.firstIndex(of: operation.op)!))
            writer.append(UInt8((operation.from != nil ? 1 : 0) | (operation.entry != nil ? 2 : 0)))
            writer.append(string: operation.path)
            if let from = operation.from { writer.append(string: from) }
            if let entry = operation.entry { encode(entry, into: &writer) }
        }
        writer.append(XXH3.hash64(writer.bytes))
        return writer.bytes
    }

    static let operationKinds: [NamespaceOperation.Kind] = [.upsert, .delete, .rename]
    static let entryKinds: [NamespaceEntry.Kind] = [.file, .directory]

    static func encode(_ entry: NamespaceEntry, into writer: inout ByteWriter) {
        writer.append(UInt8(entryKinds.firstIndex(of: entry.kind)!))
        writer.append(UInt8((entry.fingerprint != nil ? 1 : 0) | (entry.acl != nil ? 2 : 0) | (entry.version != nil ? 4 : 0)))
        writer.append(string: entry.fileID)
        writer.append(entry.size)
        writer.append(entry.mode)
        writer.append(entry.mtime)
        writer.append(entry.uid)
        writer.append(entry.gid)
        writer.append(UInt32(entry.chunks.count))
        for chunk in entry.chunks {
            writer.append(chunk.id)
            writer.append(chunk.length)
        }
        if let fingerprint = entry.fingerprint { writer.append(string: fingerprint) }
        if let acl = entry.acl {
            writer.append(UInt32(acl.count))
            for (name, value) in acl.sorted(by: { $0.key < $1.key }) {
                writer.append(string: name)
                writer.append(string: value)
            }
        }
        if let version = entry.version { writer.append(version) }
    }

    /// Decodes a binary record; the error says what is wrong with it.
    static func decode(_ bytes: [UInt8]) throws(Corrupt) -> Commit {
        guard bytes.count >= magic.count + 8 else { throw Corrupt("too short") }
        guard XXH3.hash64(Array(bytes.dropLast(8))) == ByteReaderHelpers.trailingUInt64(bytes) else { throw Corrupt("checksum mismatch") }
        var reader = ByteReader(bytes.dropLast(8))
        do {
            _ = try reader.readBytes(magic.count)
            var commit = Commit(author: "", authorName: "", operations: [])
            commit.id = try reader.readString()
            commit.sequence = try reader.read(UInt64.self)
            commit.author = try reader.readString()
            commit.authorName = try reader.readString()
            commit.time = Double(bitPattern: try reader.read(UInt64.self))
            for _ in 0..<(try reader.read(UInt32.self)) { commit.packs.append(try reader.readString()) }
            let count = Int(try reader.read(UInt32.self))
            // Every operation takes at least 6 bytes: a count past that is damage, not a reason to allocate.
            guard count <= reader.remaining / 6 else { throw Corrupt("\(count) operations cannot fit in \(reader.remaining) bytes") }
            commit.operations.reserveCapacity(count)
            for _ in 0..<count {
                let kind = Int(try reader.read(UInt8.self))
                guard kind < operationKinds.count else { throw Corrupt("unknown operation kind \(kind)") }
                let present = try reader.read(UInt8.self)
                let path = try reader.readString()
                let from = present & 1 != 0 ? try reader.readString() : nil
                let entry = present & 2 != 0 ? try decodeEntry(&reader) : nil
                commit.operations.append(NamespaceOperation(op: operationKinds[kind], path: path, from: from, entry: entry))
            }
            guard reader.remaining == 0 else { throw Corrupt("\(reader.remaining) bytes after the last operation") }
            return commit
        } catch is ByteReader.Truncated {
            throw Corrupt("truncated")
        } catch let error as Corrupt {
            throw error
        } catch {
            throw Corrupt("\(error)")
        }
    }

    static func decodeEntry(_ reader: inout ByteReader) throws -> NamespaceEntry {
        let kind = Int(try reader.read(UInt8.self))
        guard kind < entryKinds.count else { throw Corrupt("unknown entry kind \(kind)") }
        let present = try reader.read(UInt8.self)
        var entry = NamespaceEntry(kind: entryKinds[kind], fileID: try reader.readString(), size: try reader.read(Int64.self),
                                   mode: try reader.read(UInt32.self), mtime: try reader.read(Int64.self),
                                   uid: try reader.read(UInt32.self), gid: try reader.read(UInt32.self))
        let chunks = Int(try reader.read(UInt32.self))
        guard chunks <= reader.remaining / 36 else { throw Corrupt("\(chunks) chunks cannot fit in \(reader.remaining) bytes") }
        entry.chunks.reserveCapacity(chunks)
        for _ in 0..<chunks {
            entry.chunks.append(ChunkRef(id: try reader.readDigest(), length: try reader.read(UInt32.self)))
        }
        if present & 1 != 0 { entry.fingerprint = try reader.readString() }
        if present & 2 != 0 {
            var acl: [String: String] = [:]
            for _ in 0..<(try reader.read(UInt32.self)) { acl[try reader.readString()] = try reader.readString() }
            entry.acl = acl
        }
        if present & 4 != 0 { entry.version = try reader.read(UInt64.self) }
        return entry
    }

    /// What is wrong with a damaged record.
    struct Corrupt: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }
}

extension ByteWriter {
    mutating func append(string: String) {
        let utf8 = Array(string.utf8)
        append(UInt32(utf8.count))
        append(utf8)
    }
}

extension ByteReader {
    mutating func readString() throws -> String {
        let bytes = try readBytes(Int(try read(UInt32.self)))
        guard let string = String(validating: bytes, as: UTF8.self) else { throw CommitCoding.Corrupt("a string is not UTF-8") }
        return string
    }
}
