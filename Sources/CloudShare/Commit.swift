import Foundation
import Hashing

/// A reference to one chunk of a file: its SHA-256 id and its length.
///
/// Encoded in commit records as the compact string `"<64 hex>:<length>"`.
public struct ChunkRef: Codable, Sendable, Hashable {
    /// The chunk's SHA-256.
    public var id: Digest32
    /// The chunk's length in bytes.
    public var length: UInt32

    /// A chunk reference.
    public init(id: Digest32, length: UInt32) {
        self.id = id
        self.length = length
    }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        let parts = text.split(separator: ":")
        guard parts.count == 2, let id = Digest32(hex: parts[0]), let length = UInt32(parts[1]) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "bad chunk reference '\(text)'"))
        }
        self.init(id: id, length: length)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode("\(id.hex):\(length)")
    }
}

/// One item of a namespace: a file or a directory with its attributes.
///
/// A namespace holds one of these per path, in a dictionary (a million at a million files). So that
/// dictionary's slots stay small, and its growth (old and new table side by side) with them, an entry
/// holds its fields in one shared, copy-on-write allocation: a slot holds a reference, not 104 bytes.
/// Within it, the file id and the fingerprint, 32 hex digits each, are held in 16 bytes each (see
/// ``CompactHex``), and the fields are declared in the order that leaves the least padding.
public struct NamespaceEntry: Codable, Sendable, Equatable {
    /// File or directory.
    public enum Kind: String, Codable, Sendable { case file, directory }

    /// The stored fields, encoded as the entry.
    private struct Fields: Codable, Equatable {
        var fileID: CompactHex
        var kind: Kind
        var mode: UInt32
        var fingerprint: CompactHex?
        var uid: UInt32
        var gid: UInt32
        var size: Int64
        var mtime: Int64
        var chunks: [ChunkRef]
        var acl: [String: String]?
        var version: UInt64?

        enum CodingKeys: String, CodingKey {
            case kind = "k", fileID = "id", size = "s", mode = "m", mtime = "t", uid = "u", gid = "g", chunks = "c", fingerprint = "f", acl = "a", version = "v"
        }
    }

    /// The fields' one allocation. Only an entry that holds the sole reference changes it; any other
    /// copies it first, so entries keep value semantics.
    private final class Box: @unchecked Sendable {
        var fields: Fields
        init(_ fields: Fields) { self.fields = fields }
    }

    private var box: Box

    /// The fields, to change: copied first unless this entry holds the sole reference.
    private var fields: Fields {
        get { box.fields }
        _modify {
            if !isKnownUniquelyReferenced(&box) { box = Box(box.fields) }
            yield &box.fields
        }
    }

    /// File or directory.
    public var kind: Kind {
        get { box.fields.kind }
        set { fields.kind = newValue }
    }
    /// A stable id that follows the item across renames.
    public var fileID: String {
        get { box.fields.fileID.string }
        set { fields.fileID = CompactHex(newValue) }
    }
    /// Size in bytes (0 for directories).
    public var size: Int64 {
        get { box.fields.size }
        set { fields.size = newValue }
    }
    /// Permission bits (`st_mode & 0o7777`).
    public var mode: UInt32 {
        get { box.fields.mode }
        set { fields.mode = newValue }
    }
    /// Modification time, nanoseconds since the epoch.
    public var mtime: Int64 {
        get { box.fields.mtime }
        set { fields.mtime = newValue }
    }
    /// Owner user id.
    public var uid: UInt32 {
        get { box.fields.uid }
        set { fields.uid = newValue }
    }
    /// Owner group id.
    public var gid: UInt32 {
        get { box.fields.gid }
        set { fields.gid = newValue }
    }
    /// The file's content as chunks, in order.
    public var chunks: [ChunkRef] {
        get { box.fields.chunks }
        set { fields.chunks = newValue }
    }
    /// xxh3-128 of the content (hex), for change detection.
    public var fingerprint: String? {
        get { box.fields.fingerprint?.string }
        set { fields.fingerprint = newValue.map(CompactHex.init) }
    }

    /// The fingerprint as a value, without the round trip through its 32 digits; nil when there is none
    /// or it is not 32 hex digits.
    public var fingerprintValue: Fingerprint128? {
        switch box.fields.fingerprint {
        case .hex(let high, let low): Fingerprint128(high: high, low: low)
        case .text(let text): Fingerprint128(hex: text)
        case nil: nil
        }
    }

    /// POSIX ACL xattrs (`system.posix_acl_access`, `…_default`), base64, when present.
    public var acl: [String: String]? {
        get { box.fields.acl }
        set { fields.acl = newValue }
    }
    /// The log sequence number of the commit that last changed the content (set when applied).
    public var version: UInt64? {
        get { box.fields.version }
        set { fields.version = newValue }
    }

    public static func == (lhs: NamespaceEntry, rhs: NamespaceEntry) -> Bool {
        lhs.box === rhs.box || lhs.box.fields == rhs.box.fields
    }

    public init(from decoder: any Decoder) throws {
        box = Box(try Fields(from: decoder))
    }

    public func encode(to encoder: any Encoder) throws {
        try box.fields.encode(to: encoder)
    }

    /// The sequence of the commit that wrote this content, for an entry found in the commit at `sequence`
    /// (an entry taken from a namespace names an older one): where the share keeps the content's chunk list.
    public func contentVersion(committedAt sequence: UInt64) -> UInt64 { version ?? sequence }

    /// An entry.
    public init(kind: Kind, fileID: String, size: Int64, mode: UInt32, mtime: Int64, uid: UInt32, gid: UInt32,
                chunks: [ChunkRef] = [], fingerprint: String? = nil, acl: [String: String]? = nil, version: UInt64? = nil) {
        box = Box(Fields(fileID: CompactHex(fileID), kind: kind, mode: mode, fingerprint: fingerprint.map(CompactHex.init), uid: uid, gid: gid,
                         size: size, mtime: mtime, chunks: chunks, acl: acl, version: version))
    }

    /// A new random file id: 32 hex digits (16 random bytes).
    public static func newFileID() -> String {
        // Two 64-bit draws: one random source call each, not one per byte.
        var generator = SystemRandomNumberGenerator()
        return CompactHex.hex(generator.next(), generator.next()).string
    }
}

/// A string held in 16 bytes, without an allocation of its own, when it is 32 lowercase hex digits (a file
/// id, a fingerprint); any other string is held as it is. It reads back exactly as it was given, and it is
/// encoded as that string.
public enum CompactHex: Codable, Sendable, Equatable {
    /// The 32 digits as two numbers: the first 16 digits, then the last 16.
    case hex(UInt64, UInt64)
    /// Any other string.
    case text(String)

    public init(_ string: String) {
        var halves: (UInt64, UInt64) = (0, 0)
        var count = 0
        for byte in string.utf8 {
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            default:
                self = .text(string)
                return
            }
            if count < 16 { halves.0 = halves.0 << 4 | UInt64(digit) } else { halves.1 = halves.1 << 4 | UInt64(digit) }
            count += 1
            if count > 32 { break }
        }
        self = count == 32 ? .hex(halves.0, halves.1) : .text(string)
    }

    /// The string, exactly as it was given.
    public var string: String {
        switch self {
        case .text(let text):
            return text
        case .hex(let high, let low):
            return String(unsafeUninitializedCapacity: 32) { buffer in
                for index in 0..<32 {
                    let half = index < 16 ? high : low
                    let digit = UInt8(truncatingIfNeeded: half >> (4 * UInt64(15 - index % 16))) & 0xf
                    buffer[index] = digit < 10 ? UInt8(ascii: "0") + digit : UInt8(ascii: "a") + digit - 10
                }
                return 32
            }
        }
    }

    public init(from decoder: any Decoder) throws {
        self.init(try decoder.singleValueContainer().decode(String.self))
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(string)
    }
}

/// One change to the namespace, as recorded in a commit.
public struct NamespaceOperation: Codable, Sendable, Equatable {
    /// What the operation does.
    public enum Kind: String, Codable, Sendable {
        /// Create or replace the item at `path` with `entry`.
        case upsert
        /// Remove the item at `path` (a directory with everything below it): a tombstone.
        case delete
        /// Move the item at `from` (and everything below it) to `path`.
        case rename
    }

    /// What the operation does.
    public var op: Kind
    /// The item's path relative to the share root, `/`-separated, no leading slash.
    public var path: String
    /// For renames: the old path.
    public var from: String?
    /// For upserts: the new entry.
    public var entry: NamespaceEntry?

    /// An operation as a record holds it, unchecked: readers validate every field before use.
    public init(op: Kind, path: String, from: String?, entry: NamespaceEntry?) {
        self.op = op
        self.path = path
        self.from = from
        self.entry = entry
    }

    /// Create or replace an item.
    public static func upsert(_ path: String, _ entry: NamespaceEntry) -> Self { .init(op: .upsert, path: path, from: nil, entry: entry) }
    /// Delete an item.
    public static func delete(_ path: String) -> Self { .init(op: .delete, path: path, from: nil, entry: nil) }
    /// Rename an item.
    public static func rename(from: String, to: String) -> Self { .init(op: .rename, path: to, from: from, entry: nil) }
}

/// An immutable record of the commit log: one atomic set of namespace operations by one author.
public struct Commit: Codable, Sendable {
    /// Unique id, so an author can recognize its own record after an ambiguous append.
    public var id: String
    /// Position in the log (1, 2, …); the one total order every endpoint applies.
    public var sequence: UInt64
    /// The registered server that wrote it (`cloud` for direct edits of the share).
    public var author: String
    /// That server's name, used in conflict file names.
    public var authorName: String
    /// When it was written (seconds since the epoch).
    public var time: Double
    /// The packs this commit's new chunks went into (their index segments are in `index/`).
    public var packs: [String]
    /// The namespace changes, applied in order.
    public var operations: [NamespaceOperation]
    /// Set on the record that ends a share's log here because the share moved to another store (see
    /// ``ShareRedirect``); such a record has no operations and nothing is ever appended after it.
    public var movedTo: ShareRedirect?

    /// A commit to be appended; `sequence` is assigned by the log.
    public init(author: String, authorName: String, packs: [String] = [], operations: [NamespaceOperation]) {
        id = UUID().uuidString.lowercased()
        sequence = 0
        self.author = author
        self.authorName = authorName
        time = Date().timeIntervalSince1970
        self.packs = packs
        self.operations = operations
    }

    enum CodingKeys: String, CodingKey {
        case id, sequence = "seq", author, authorName, time, packs, operations = "ops", movedTo
    }
}
