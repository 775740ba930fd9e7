import Backends
import Hashing

/// Where one chunk lives: which pack, at which offset, how long.
public struct ChunkLocation: Sendable, Hashable {
    /// The pack holding the chunk.
    public var pack: Digest32
    /// Byte offset of the chunk inside the pack.
    public var offset: UInt64
    /// Length of the chunk in bytes.
    public var length: UInt32

    /// A chunk location.
    public init(pack: Digest32, offset: UInt64, length: UInt32) {
        self.pack = pack
        self.offset = offset
        self.length = length
    }
}

/// The pack object format.
///
/// A pack is the chunks' bytes back to back, followed by a trailer index and a fixed footer:
///
///     chunk bytes …
///     trailer: count × (chunk id: 32 bytes, offset: u64, length: u32)
///     footer (24 bytes): magic "TGPACK01", count: u32, trailer length: u32, xxh3-64 of trailer: u64
///
/// All integers are little-endian. The pack id is the SHA-256 of the whole pack, so a pack can be
/// verified as a unit, and the trailer lets the share's index be rebuilt from packs alone.
public enum PackFormat {
    static let magic: [UInt8] = Array("TGPACK01".utf8)
    static let footerSize = 24
    static let entrySize = 44

    /// The object key of a pack.
    public static func key(_ pack: Digest32) -> String {
        let hex = pack.hex
        return "packs/\(hex.prefix(2))/\(hex)"
    }

    /// Parses a pack's trailer from its last bytes (`tail` must end at the pack's end) and returns the
    /// chunk entries it lists; throws `corrupt` naming `packName` when the footer or trailer is damaged.
    public static func parseTrailer(tail: ArraySlice<UInt8>, packSize: Int64, share: String, packName: String) throws -> [(id: Digest32, offset: UInt64, length: UInt32)] {
        func corrupt(_ why: String) -> ShareError {
            ShareError(.corrupt, share: share, object: packName, cause: "corrupt pack: \(why)")
        }
        guard tail.count >= footerSize else { throw corrupt("shorter than its footer") }
        var footer = ByteReader(tail.suffix(footerSize))
        guard Array(try footer.readBytes(8)) == magic else { throw corrupt("bad magic") }
        let count = Int(try footer.read(UInt32.self))
        let trailerLength = Int(try footer.read(UInt32.self))
        let checksum = try footer.read(UInt64.self)
        guard trailerLength == count * entrySize, trailerLength + footerSize <= tail.count else {
            throw corrupt("trailer length \(trailerLength) does not fit \(count) entries")
        }
        let trailer = tail.dropLast(footerSize).suffix(trailerLength)
        guard XXH3.hash64(Array(trailer)) == checksum else { throw corrupt("trailer checksum mismatch") }
        var reader = ByteReader(trailer)
        let dataEnd = UInt64(packSize) - UInt64(trailerLength + footerSize)
        var entries: [(Digest32, UInt64, UInt32)] = []
        entries.reserveCapacity(count)
        for _ in 0..<count {
            let id = try reader.readDigest()
            let offset = try reader.read(UInt64.self)
            let length = try reader.read(UInt32.self)
            guard offset + UInt64(length) <= dataEnd else { throw corrupt("chunk \(id) lies outside the data") }
            entries.append((id, offset, length))
        }
        return entries
    }
}

extension PackFormat {
    /// The chunk list in a pack's trailer, read with a ranged GET of the pack's tail (a second one when the
    /// trailer is longer than the first read); throws `corrupt` naming the pack when it is damaged.
    public static func readTrailer(of pack: Digest32, in store: any ObjectStore) async throws -> [(id: Digest32, offset: UInt64, length: UInt32)] {
        let key = Self.key(pack)
        let size = try await store.head(key).size
        var tail = try await store.get(key, range: max(0, size - (64 << 10))..<size)
        if tail.count >= footerSize {
            // The footer ends with the trailer length (u32) and the trailer's checksum (u64).
            var footer = ByteReader(tail.suffix(12))
            let needed = min(size, Int64(try footer.read(UInt32.self)) + Int64(footerSize))
            if needed > Int64(tail.count) {
                tail = try await store.get(key, range: size - needed..<size)
            }
        }
        return try parseTrailer(tail: tail[...], packSize: size, share: store.displayName, packName: key)
    }

    /// What a whole pack holds: its trailer's entries, whether its bytes hash to its id, and the chunks
    /// whose bytes fail their SHA-256.
    public struct Check: Sendable {
        /// The trailer's entries.
        public var entries: [(id: Digest32, offset: UInt64, length: UInt32)]
        /// True when the pack's SHA-256 is its id.
        public var matchesID: Bool
        /// Chunks whose bytes do not hash to their id.
        public var badChunks: [Digest32]
    }

    /// Checks a whole pack's bytes; throws `corrupt` naming the pack when its trailer is unreadable.
    public static func check(_ bytes: [UInt8], pack: Digest32, share: String) throws -> Check {
        let entries = try parseTrailer(tail: bytes[...], packSize: Int64(bytes.count), share: share, packName: key(pack))
        let bad = entries.filter { entry in
            let start = Int(entry.offset)
            return bytes[start..<start + Int(entry.length)].withUnsafeBytes { SHA256.hash($0) } != entry.id
        }.map(\.id)
        return Check(entries: entries, matchesID: SHA256.hash(bytes) == pack, badChunks: bad)
    }
}

/// Builds one pack in memory, chunk by chunk.
public struct PackWriter: Sendable {
    private var data: [UInt8] = []
    private var entries: [(id: Digest32, offset: UInt64, length: UInt32)] = []

    /// An empty pack, reserving room for `capacity` bytes.
    public init(capacity: Int = 0) {
        data.reserveCapacity(capacity)
    }

    /// Bytes of chunk data so far.
    public var size: Int { data.count }
    /// Number of chunks so far.
    public var count: Int { entries.count }
    /// True when no chunk was added.
    public var isEmpty: Bool { entries.isEmpty }

    /// Adds a chunk whose id is `id` (the SHA-256 of `bytes`, computed by the caller).
    public mutating func add(id: Digest32, bytes: UnsafeRawBufferPointer) {
        entries.append((id, UInt64(data.count), UInt32(bytes.count)))
        data.append(contentsOf: bytes)
    }

    /// Finishes the pack: its bytes, its id and the location of every chunk in it.
    public consuming func seal() -> (id: Digest32, bytes: [UInt8], chunks: [(id: Digest32, location: ChunkLocation)]) {
        var trailer = ByteWriter()
        for entry in entries {
            trailer.append(entry.id)
            trailer.append(entry.offset)
            trailer.append(entry.length)
        }
        var footer = ByteWriter()
        footer.append(PackFormat.magic)
        footer.append(UInt32(entries.count))
        footer.append(UInt32(trailer.bytes.count))
        footer.append(XXH3.hash64(trailer.bytes))
        data.append(contentsOf: trailer.bytes)
        data.append(contentsOf: footer.bytes)
        let id = SHA256.hash(data)
        let chunks = entries.map { ($0.id, ChunkLocation(pack: id, offset: $0.offset, length: $0.length)) }
        return (id, data, chunks)
    }
}
