import Hashing

/// Appends little-endian fixed-width values to a byte buffer (the on-store binary formats).
struct ByteWriter {
    var bytes: [UInt8] = []

    mutating func append<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    mutating func append(_ digest: Digest32) {
        digest.withUnsafeBytes { bytes.append(contentsOf: $0) }
    }

    mutating func append(_ raw: [UInt8]) {
        bytes.append(contentsOf: raw)
    }
}

/// Reads little-endian fixed-width values; every read is bounds-checked and throws on truncation.
struct ByteReader {
    let bytes: ArraySlice<UInt8>
    var position: Int

    init(_ bytes: ArraySlice<UInt8>) {
        self.bytes = bytes
        position = bytes.startIndex
    }

    var remaining: Int { bytes.endIndex - position }

    struct Truncated: Error {}

    mutating func read<T: FixedWidthInteger>(_: T.Type) throws -> T {
        let size = MemoryLayout<T>.size
        guard remaining >= size else { throw Truncated() }
        var value: T = 0
        withUnsafeMutableBytes(of: &value) { target in
            bytes[position..<position + size].withUnsafeBytes { target.copyMemory(from: $0) }
        }
        position += size
        return T(littleEndian: value)
    }

    mutating func readDigest() throws -> Digest32 {
        guard remaining >= 32 else { throw Truncated() }
        defer { position += 32 }
        return Digest32(bytes: bytes[position..<position + 32])!
    }

    mutating func readBytes(_ count: Int) throws -> ArraySlice<UInt8> {
        guard count >= 0, remaining >= count else { throw Truncated() }
        defer { position += count }
        return bytes[position..<position + count]
    }
}
