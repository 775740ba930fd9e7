import Foundation

/// A 32-byte digest (SHA-256 or HMAC-SHA256), stored inline so that chunk ids cost no allocation.
public struct Digest32: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// The raw digest bytes.
    public var bytes: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)

    /// The all-zero digest.
    public init() {}

    /// A digest from exactly 32 raw bytes; nil for any other length. Inlinable, so that callers in other
    /// modules (index and commit decoding) get a specialized copy instead of a generic one.
    @inlinable
    public init?<Bytes: Collection>(bytes raw: Bytes) where Bytes.Element == UInt8 {
        guard raw.count == 32 else { return nil }
        withUnsafeMutableBytes(of: &bytes) { buffer in
            let copied: Void? = raw.withContiguousStorageIfAvailable { buffer.copyMemory(from: UnsafeRawBufferPointer($0)) }
            if copied == nil {
                for (index, byte) in raw.enumerated() { buffer[index] = byte }
            }
        }
    }

    /// A digest from 64 lowercase or uppercase hex digits; nil when malformed.
    public init?(hex: some StringProtocol) {
        guard let raw = Hex.decode(hex), raw.count == 32 else { return nil }
        self.init(bytes: raw)
    }

    /// The digest as 32 bytes.
    public var array: [UInt8] { Swift.withUnsafeBytes(of: bytes) { Array($0) } }

    /// The digest as 64 lowercase hex digits.
    public var hex: String { Hex.encode(array) }

    public var description: String { hex }

    public static func == (a: Digest32, b: Digest32) -> Bool {
        a.bytes.0 == b.bytes.0 && a.bytes.1 == b.bytes.1 && a.bytes.2 == b.bytes.2 && a.bytes.3 == b.bytes.3
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(bytes.0)
        hasher.combine(bytes.1)
    }

    /// The order of the raw bytes, compared 8 at a time: each word holds 8 of the bytes as stored, and in
    /// big-endian order its first byte is the most significant. (It compared two byte arrays, made for
    /// every comparison: sorting a million ids allocated tens of millions of them.)
    public static func < (a: Digest32, b: Digest32) -> Bool {
        let left = (a.bytes.0.bigEndian, a.bytes.1.bigEndian, a.bytes.2.bigEndian, a.bytes.3.bigEndian)
        let right = (b.bytes.0.bigEndian, b.bytes.1.bigEndian, b.bytes.2.bigEndian, b.bytes.3.bigEndian)
        return left < right
    }

    /// Calls `body` with the 32 raw bytes.
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try Swift.withUnsafeBytes(of: bytes, body)
    }
}

/// Lowercase hex encoding and decoding.
public enum Hex {
    private static let digits = Array("0123456789abcdef".utf8)

    /// Lowercase hex of `bytes`.
    public static func encode<Bytes: Sequence>(_ bytes: Bytes) -> String where Bytes.Element == UInt8 {
        var out = [UInt8]()
        out.reserveCapacity(bytes.underestimatedCount * 2)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0xf)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The bytes of a hex string; nil when it has an odd length or a non-hex character.
    public static func decode(_ text: some StringProtocol) -> [UInt8]? {
        let utf8 = Array(text.utf8)
        guard utf8.count % 2 == 0 else { return nil }
        var out = [UInt8]()
        out.reserveCapacity(utf8.count / 2)
        var index = 0
        while index < utf8.count {
            guard let high = value(utf8[index]), let low = value(utf8[index + 1]) else { return nil }
            out.append(high << 4 | low)
            index += 2
        }
        return out
    }

    private static func value(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
