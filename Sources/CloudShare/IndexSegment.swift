import Hashing

/// Index segments: the chunk → location entries of one pack, stored at `index/<pack id>` so a new
/// endpoint loads the share's index without reading packs.
///
///     magic "TGIDX001", pack id: 32 bytes, count: u32,
///     count × (chunk id: 32 bytes, offset: u64, length: u32), xxh3-64 of all preceding bytes: u64
public enum IndexSegment {
    static let magic: [UInt8] = Array("TGIDX001".utf8)

    /// The object key of a pack's index segment.
    public static func key(_ pack: Digest32) -> String { "index/\(pack.hex)" }

    /// Encodes a pack's entries.
    public static func encode(pack: Digest32, chunks: [(id: Digest32, location: ChunkLocation)]) -> [UInt8] {
        var writer = ByteWriter()
        writer.append(magic)
        writer.append(pack)
        writer.append(UInt32(chunks.count))
        for chunk in chunks {
            writer.append(chunk.id)
            writer.append(chunk.location.offset)
            writer.append(chunk.location.length)
        }
        writer.append(XXH3.hash64(writer.bytes))
        return writer.bytes
    }

    /// Decodes a segment; throws `corrupt` naming the segment when damaged.
    public static func decode(_ bytes: [UInt8], share: String, name: String) throws -> [(id: Digest32, location: ChunkLocation)] {
        func corrupt(_ why: String) -> ShareError {
            ShareError(.corrupt, share: share, object: name, cause: "corrupt index segment: \(why)")
        }
        guard bytes.count >= 8 + 32 + 4 + 8 else { throw corrupt("too short") }
        guard XXH3.hash64(Array(bytes.dropLast(8))) == ByteReaderHelpers.trailingUInt64(bytes) else { throw corrupt("checksum mismatch") }
        var reader = ByteReader(bytes.dropLast(8))
        do {
            guard Array(try reader.readBytes(8)) == magic else { throw corrupt("bad magic") }
            let pack = try reader.readDigest()
            let count = Int(try reader.read(UInt32.self))
            guard reader.remaining == count * 44 else { throw corrupt("length does not match \(count) entries") }
            var chunks: [(Digest32, ChunkLocation)] = []
            chunks.reserveCapacity(count)
            for _ in 0..<count {
                let id = try reader.readDigest()
                let offset = try reader.read(UInt64.self)
                let length = try reader.read(UInt32.self)
                chunks.append((id, ChunkLocation(pack: pack, offset: offset, length: length)))
            }
            return chunks
        } catch is ByteReader.Truncated {
            throw corrupt("truncated")
        }
    }
}

enum ByteReaderHelpers {
    static func trailingUInt64(_ bytes: [UInt8]) -> UInt64 {
        var reader = ByteReader(bytes.suffix(8))
        return (try? reader.read(UInt64.self)) ?? 0
    }
}
