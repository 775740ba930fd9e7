import Foundation
import Hashing

/// Signs FileREST requests with a storage account key: Azure Storage's `SharedKey` scheme.
///
/// The string to sign is the method, the eleven standard header slots plus `Range` (Content-Length empty
/// when zero), the `x-ms-*` headers in the service's collation, and the canonicalized resource
/// (`/account` + the encoded path, then the query parameters sorted by lowercased name with decoded values).
/// The key never leaves this value except as a signature; printing it shows only the account.
public struct SharedKeySigner: Sendable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// The storage account name.
    public let account: String
    private let key: [UInt8]

    /// A signer for `account` with the raw key bytes.
    public init(account: String, key: [UInt8]) {
        self.account = account
        self.key = key
    }

    /// A signer for `account` with the key as the portal shows it (base64); nil when it is not base64.
    public init?(account: String, base64Key: String) {
        guard let data = Data(base64Encoded: base64Key.trimmingCharacters(in: .whitespacesAndNewlines)), !data.isEmpty else {
            return nil
        }
        self.init(account: account, key: Array(data))
    }

    public var description: String { "SharedKeySigner(account: \(account), key: <redacted>)" }
    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: ["account": account], displayStyle: .struct) }

    /// The header slots, in order, that follow the method in the string to sign.
    static let standardHeaders = ["content-encoding", "content-language", "content-length", "content-md5", "content-type",
                                  "date", "if-modified-since", "if-match", "if-none-match", "if-unmodified-since", "range"]

    /// The string the service signs for this request.
    ///
    /// - Parameters:
    ///   - path: the URL path exactly as sent, percent-encoding included (`/share/dir/file%20name`).
    ///   - query: the query parameters with decoded names and values.
    ///   - headers: every header that will be sent.
    public func stringToSign(method: String, path: String, query: [(name: String, value: String)],
                             headers: [(name: String, value: String)]) -> String {
        var byName: [String: [String]] = [:]
        for (name, value) in headers {
            byName[name.lowercased(), default: []].append(value)
        }
        var result = method + "\n"
        for name in Self.standardHeaders {
            var value = byName[name]?.joined(separator: ",") ?? ""
            if name == "content-length" && value == "0" { value = "" } // signed as empty since version 2015-02-21
            result += value + "\n"
        }
        let msHeaders = byName.keys.filter { $0.hasPrefix("x-ms-") }.sorted(by: HeaderCollation.precedes)
        for name in msHeaders {
            result += name + ":" + byName[name]!.joined(separator: ",") + "\n"
        }
        result += "/" + account + path
        var parameters: [String: [String]] = [:]
        for (name, value) in query {
            parameters[name.lowercased(), default: []].append(value)
        }
        for name in parameters.keys.sorted(by: { $0.utf8.lexicographicallyPrecedes($1.utf8) }) {
            let values = parameters[name]!.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
            result += "\n" + name + ":" + values.joined(separator: ",")
        }
        return result
    }

    /// The base64 HMAC-SHA256 of `stringToSign` under the account key.
    public func signature(of stringToSign: String) -> String {
        let mac = HMACSHA256.mac(key: key, string: stringToSign)
        return withUnsafeBytes(of: mac.bytes) { Data($0).base64EncodedString() }
    }

    /// The `Authorization` header value for this request: `SharedKey account:signature`.
    public func authorization(method: String, path: String, query: [(name: String, value: String)],
                              headers: [(name: String, value: String)]) -> String {
        "SharedKey \(account):" + signature(of: stringToSign(method: method, path: path, query: query, headers: headers))
    }
}

/// The order in which the service sorts `x-ms-*` header names when it canonicalizes them.
///
/// It is not byte order: it is a two-level collation in which `-` and `'` are ignored at the first level
/// (and only break ties at the second), `_` sorts before digits and digits before letters, and letters
/// compare case-insensitively. So `x-ms-meta-a_1` < `x-ms-meta-a1` < `x-ms-meta-ab`, and a plain sort
/// produces signatures the service rejects as soon as metadata names mix `_`, `-` and digits.
enum HeaderCollation {
    /// First-level weights of ASCII characters; 0 means ignorable, and non-ASCII is ignorable too.
    private static let primary: [UInt16] = {
        var table = [UInt16](repeating: 0, count: 128)
        let punctuation: [(Character, UInt16)] = [
            ("!", 0x71C), ("#", 0x71F), ("$", 0x721), ("%", 0x723), ("&", 0x725), ("*", 0x72D), ("+", 0x803),
            (".", 0x733), ("^", 0x743), ("_", 0x744), ("`", 0x748), ("|", 0x74C), ("~", 0x750),
        ]
        for (character, weight) in punctuation { table[Int(character.asciiValue!)] = weight }
        let digits: [UInt16] = [0xD03, 0xD1A, 0xD1C, 0xD1E, 0xD20, 0xD22, 0xD24, 0xD26, 0xD28, 0xD2A]
        for (index, weight) in digits.enumerated() { table[0x30 + index] = weight }
        let letters: [UInt16] = [0xE02, 0xE09, 0xE0A, 0xE1A, 0xE21, 0xE23, 0xE25, 0xE2C, 0xE32, 0xE35, 0xE36, 0xE48, 0xE51,
                                 0xE70, 0xE7C, 0xE7E, 0xE89, 0xE8A, 0xE91, 0xE99, 0xE9F, 0xEA2, 0xEA4, 0xEA6, 0xEA7, 0xEA9]
        for (index, weight) in letters.enumerated() {
            table[0x41 + index] = weight
            table[0x61 + index] = weight
        }
        return table
    }()

    private static func weight(level: Int, _ text: [UInt8], _ index: Int) -> UInt16 {
        guard index < text.count else { return 1 } // the end of the string
        let byte = text[index]
        guard byte < 0x80 else { return 0 }
        if level == 0 { return primary[Int(byte)] }
        switch byte {
        case UInt8(ascii: "'"): return 0x8012
        case UInt8(ascii: "-"): return 0x8212
        default: return 0
        }
    }

    /// -1, 0 or 1 as `lhs` sorts before, with, or after `rhs`.
    static func compare(_ lhs: String, _ rhs: String) -> Int {
        let left = Array(lhs.utf8), right = Array(rhs.utf8)
        var level = 0, i = 0, j = 0
        while level < 2 {
            // At the second level the first position where only one side has a hyphen or apostrophe decides:
            // the name without it sorts first (`ab` < `a-b`).
            if level == 1 && i != j { return i > j ? -1 : 1 }
            let w1 = weight(level: level, left, i), w2 = weight(level: level, right, j)
            if w1 == 1 && w2 == 1 {
                level += 1
                i = 0
                j = 0
            } else if w1 == w2 {
                i += 1
                j += 1
            } else if w1 == 0 {
                i += 1
            } else if w2 == 0 {
                j += 1
            } else {
                return w1 < w2 ? -1 : 1
            }
        }
        return 0
    }

    /// True when `lhs` sorts strictly before `rhs`; ties fall back to byte order so sorting is deterministic.
    static func precedes(_ lhs: String, _ rhs: String) -> Bool {
        let order = compare(lhs, rhs)
        return order != 0 ? order < 0 : lhs.utf8.lexicographicallyPrecedes(rhs.utf8)
    }
}
