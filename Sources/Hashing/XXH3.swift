import Foundation
import CXXHash

/// A 128-bit xxh3 content fingerprint, used for change detection (not for integrity).
public struct Fingerprint128: Hashable, Sendable, CustomStringConvertible {
    /// High 64 bits, as xxhash's canonical form prints them first.
    public var high: UInt64
    /// Low 64 bits.
    public var low: UInt64

    /// A fingerprint from its two halves.
    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// Parses the 32-hex-digit form of ``description``; nil when malformed.
    public init?(hex: some StringProtocol) {
        guard hex.utf8.count == 32, let high = UInt64(hex.prefix(16), radix: 16), let low = UInt64(hex.suffix(16), radix: 16) else { return nil }
        self.init(high: high, low: low)
    }

    /// 32 hex digits, high half first (xxhsum's `-H2` form).
    public var description: String {
        let h = String(high, radix: 16), l = String(low, radix: 16)
        return String(repeating: "0", count: 16 - h.count) + h + String(repeating: "0", count: 16 - l.count) + l
    }
}

/// Streaming xxh3 (64- and 128-bit) over libxxhash.
public final class XXH3 {
    private let state: OpaquePointer

    /// Starts a new, unseeded hash.
    public init() {
        guard let state = XXH3_createState() else { fatalError("XXH3_createState: out of memory") }
        self.state = state
        XXH3_128bits_reset(state)
    }

    deinit { XXH3_freeState(state) }

    /// Feeds bytes into the 128-bit hash.
    public func update(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0 else { return }
        XXH3_128bits_update(state, bytes.baseAddress, bytes.count)
    }

    /// Feeds any contiguous bytes into the hash.
    public func update<Bytes: ContiguousBytes>(_ bytes: Bytes) {
        bytes.withUnsafeBytes { update($0) }
    }

    /// The 128-bit digest of everything fed so far (the state stays usable).
    public func digest128() -> Fingerprint128 {
        let value = XXH3_128bits_digest(state)
        return Fingerprint128(high: value.high64, low: value.low64)
    }

    /// One-shot xxh3-64.
    public static func hash64<Bytes: ContiguousBytes>(_ bytes: Bytes, seed: UInt64 = 0) -> UInt64 {
        bytes.withUnsafeBytes { XXH3_64bits_withSeed($0.baseAddress, $0.count, seed) }
    }

    /// One-shot xxh3-128.
    public static func hash128<Bytes: ContiguousBytes>(_ bytes: Bytes) -> Fingerprint128 {
        bytes.withUnsafeBytes {
            let value = XXH3_128bits($0.baseAddress, $0.count)
            return Fingerprint128(high: value.high64, low: value.low64)
        }
    }
}

/// Streaming xxh3-64, kept separate from the 128-bit state because the two digests differ.
public final class XXH3_64 {
    private let state: OpaquePointer

    /// Starts a new hash with `seed`.
    public init(seed: UInt64 = 0) {
        guard let state = XXH3_createState() else { fatalError("XXH3_createState: out of memory") }
        self.state = state
        XXH3_64bits_reset_withSeed(state, seed)
    }

    deinit { XXH3_freeState(state) }

    /// Feeds bytes into the hash.
    public func update<Bytes: ContiguousBytes>(_ bytes: Bytes) {
        bytes.withUnsafeBytes { if $0.count > 0 { XXH3_64bits_update(state, $0.baseAddress, $0.count) } }
    }

    /// The digest of everything fed so far.
    public func digest() -> UInt64 { XXH3_64bits_digest(state) }
}
