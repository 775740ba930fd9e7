import Foundation
import CCrypto

/// Streaming SHA-256 over libcrypto's EVP interface (uses SHA-NI where the CPU has it).
///
/// A value owns one `EVP_MD_CTX`; it is not shared between threads.
public final class SHA256 {
    private let context: OpaquePointer

    /// Starts a new digest.
    public init() {
        guard let context = EVP_MD_CTX_new() else { fatalError("EVP_MD_CTX_new: out of memory") }
        self.context = context
        precondition(EVP_DigestInit_ex(context, EVP_sha256(), nil) == 1, "EVP_DigestInit_ex(sha256) failed")
    }

    deinit { EVP_MD_CTX_free(context) }

    /// Feeds bytes into the digest.
    public func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        precondition(EVP_DigestUpdate(context, base, bytes.count) == 1, "EVP_DigestUpdate failed")
    }

    /// Feeds any contiguous bytes into the digest.
    public func update<Bytes: ContiguousBytes>(_ bytes: Bytes) {
        bytes.withUnsafeBytes { update($0) }
    }

    /// Finishes the digest; the value must not be used afterwards.
    public func finalize() -> Digest32 {
        var out = Digest32()
        var length: UInt32 = 0
        withUnsafeMutableBytes(of: &out.bytes) { buffer in
            precondition(EVP_DigestFinal_ex(context, buffer.baseAddress!.assumingMemoryBound(to: UInt8.self), &length) == 1)
        }
        return out
    }

    /// The SHA-256 of `bytes` in one call.
    public static func hash(_ bytes: UnsafeRawBufferPointer) -> Digest32 {
        var out = Digest32()
        withUnsafeMutableBytes(of: &out.bytes) { buffer in
            precondition(EVP_Digest(bytes.baseAddress, bytes.count, buffer.baseAddress!.assumingMemoryBound(to: UInt8.self), nil, EVP_sha256(), nil) == 1)
        }
        return out
    }

    /// The SHA-256 of any contiguous bytes in one call.
    public static func hash<Bytes: ContiguousBytes>(_ bytes: Bytes) -> Digest32 {
        bytes.withUnsafeBytes { hash($0) }
    }
}

/// HMAC-SHA256 (RFC 2104), the primitive of SigV4 and Azure SharedKey signing.
public enum HMACSHA256 {
    /// The MAC of `message` under `key`.
    public static func mac<K: ContiguousBytes, M: ContiguousBytes>(key: K, message: M) -> Digest32 {
        var out = Digest32()
        var length: UInt32 = 32
        key.withUnsafeBytes { keyBytes in
            message.withUnsafeBytes { messageBytes in
                withUnsafeMutableBytes(of: &out.bytes) { buffer in
                    let result = HMAC(EVP_sha256(), keyBytes.baseAddress, Int32(keyBytes.count),
                                      messageBytes.baseAddress?.assumingMemoryBound(to: UInt8.self), messageBytes.count,
                                      buffer.baseAddress!.assumingMemoryBound(to: UInt8.self), &length)
                    precondition(result != nil, "HMAC-SHA256 failed")
                }
            }
        }
        return out
    }

    /// The MAC of a UTF-8 string under `key`.
    public static func mac<K: ContiguousBytes>(key: K, string: String) -> Digest32 {
        mac(key: key, message: Array(string.utf8))
    }
}
