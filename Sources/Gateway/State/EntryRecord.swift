import CloudShare
import Hashing

/// What the local database knows of one synced item: its identity and version in the share, and the
/// local stat seen when it was last synced (so a scan hashes only files whose stat changed).
///
/// Encoded compactly (≈ 90 bytes) because a server holds one per file:
/// version 1 byte, kind 1, state 1, file id length 1 + its bytes (32), size 8, mtime 8, ctime 8, inode 8, mode 4, uid 4, gid 4,
/// fingerprint 16, synced sequence 8, ACL digest 8 (from version 2; a version 1 record reads as no ACL).
public struct EntryRecord: Sendable, Equatable {
    /// Residency of a file's content on the endpoint.
    public enum Residency: UInt8, Sendable {
        /// All content is local.
        case full = 0
        /// A stub: no content is local.
        case tiered = 1
        /// A stub with some ranges recalled.
        case partial = 2
        /// Tiering started and has not finished (recorded before the markers and the punch).
        case tiering = 3
        /// A whole-file recall started and has not finished.
        case recalling = 4
    }

    /// Declared first: the two one-byte fields fit beside it.
    private var storedFileID: CompactHex
    /// File or directory.
    public var kind: NamespaceEntry.Kind
    /// Residency of the content.
    public var residency: Residency = .full
    /// The share's file id (32 hex digits), held in 16 bytes (a server holds a record per file).
    public var fileID: String {
        get { storedFileID.string }
        set { storedFileID = CompactHex(newValue) }
    }
    /// Size at the last sync.
    public var size: Int64
    /// mtime (ns) at the last sync.
    public var mtime: Int64
    /// ctime (ns) at the last sync.
    public var ctime: Int64
    /// Inode at the last sync.
    public var inode: UInt64
    /// Permission bits.
    public var mode: UInt32
    /// Owner.
    public var uid: UInt32
    /// Group.
    public var gid: UInt32
    /// xxh3-128 of the content at the last sync.
    public var fingerprint: Fingerprint128
    /// The log sequence number that last set the content: also where its chunk list is recorded.
    public var version: UInt64
    /// The POSIX ACLs at the last sync, as ``aclDigest(_:)``: a change of the ACLs alone moves only the
    /// ctime, and is told from another such change by this.
    public var aclDigest: UInt64 = 0

    /// A digest of `acl` (xattr name to base64 value): 0 for none, never 0 otherwise.
    public static func aclDigest(_ acl: [String: String]?) -> UInt64 {
        guard let acl, !acl.isEmpty else { return 0 }
        let hash = XXH3()
        for (name, value) in acl.sorted(by: { $0.key < $1.key }) { hash.update(Array((name + "=" + value + "\n").utf8)) }
        return max(1, hash.digest128().low)
    }

    /// A record.
    public init(kind: NamespaceEntry.Kind, fileID: String, size: Int64, mtime: Int64, ctime: Int64, inode: UInt64,
                mode: UInt32, uid: UInt32, gid: UInt32, fingerprint: Fingerprint128, version: UInt64, residency: Residency = .full) {
        self.kind = kind
        self.storedFileID = CompactHex(fileID)
        self.size = size
        self.mtime = mtime
        self.ctime = ctime
        self.inode = inode
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.fingerprint = fingerprint
        self.version = version
        self.residency = residency
    }

    /// True when `item`'s stat equals the one recorded: the content is taken as unchanged.
    public func matches(_ item: LocalItem) -> Bool {
        size == item.size && mtime == item.mtime && ctime == item.ctime && inode == item.inode
    }

    /// Takes the stat fields from `item`.
    public mutating func updateStat(_ item: LocalItem) {
        size = item.size
        mtime = item.mtime
        ctime = item.ctime
        inode = item.inode
        mode = item.mode
        uid = item.uid
        gid = item.gid
    }

    static let encodingVersion: UInt8 = 2

    /// The compact binary form.
    public var encoded: [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(96)
        func append<T: FixedWidthInteger>(_ value: T) { withUnsafeBytes(of: value.littleEndian) { out.append(contentsOf: $0) } }
        append(Self.encodingVersion)
        append(kind == .file ? UInt8(0) : UInt8(1))
        append(residency.rawValue)
        let id = Array(fileID.utf8.prefix(255))
        out.append(UInt8(id.count))
        out.append(contentsOf: id)
        append(size); append(mtime); append(ctime); append(inode)
        append(mode); append(uid); append(gid)
        append(fingerprint.high); append(fingerprint.low)
        append(version)
        append(aclDigest)
        return out
    }

    /// Decodes the compact form; nil when malformed.
    public init?(encoded bytes: [UInt8]) {
        guard bytes.count >= 4, bytes[0] == 1 || bytes[0] == Self.encodingVersion,
              bytes.count == 4 + Int(bytes[3]) + 32 + 12 + 16 + 8 + (bytes[0] == 1 ? 0 : 8) else { return nil }
        var position = 4 + Int(bytes[3])
        func read<T: FixedWidthInteger>(_: T.Type) -> T {
            var value: T = 0
            withUnsafeMutableBytes(of: &value) { target in
                bytes[position..<position + MemoryLayout<T>.size].withUnsafeBytes { target.copyMemory(from: $0) }
            }
            position += MemoryLayout<T>.size
            return T(littleEndian: value)
        }
        kind = bytes[1] == 0 ? .file : .directory
        guard let residency = Residency(rawValue: bytes[2]) else { return nil }
        self.residency = residency
        storedFileID = CompactHex(String(decoding: bytes[4..<4 + Int(bytes[3])], as: UTF8.self))
        size = read(Int64.self); mtime = read(Int64.self); ctime = read(Int64.self); inode = read(UInt64.self)
        mode = read(UInt32.self); uid = read(UInt32.self); gid = read(UInt32.self)
        let high = read(UInt64.self), low = read(UInt64.self)
        fingerprint = Fingerprint128(high: high, low: low)
        version = read(UInt64.self)
        aclDigest = bytes[0] == 1 ? 0 : read(UInt64.self)
    }
}
