import Foundation

/// The one interface every cloud-share backend implements (`file://`, `s3://`, `filerest://`).
///
/// Contracts, which the conformance suite checks for every store:
/// - Keys are `/`-separated relative paths of printable UTF-8 (see ``ObjectKey``); a store never touches
///   anything outside its root or prefix.
/// - `put` replaces atomically: a reader sees the old object or the new one, never a mix.
/// - `putIfAbsent` is atomic across processes and machines: of two racing writers exactly one succeeds,
///   the other gets ``StoreError/Code/alreadyExists``. The commit log relies on this.
/// - `get` is idempotent; a missing key is ``StoreError/Code/notFound``.
/// - `delete` of a missing key succeeds (deletes are idempotent so retries are safe).
/// - `list` returns keys in ascending byte order, at most `limit` per page.
/// - Errors are ``StoreError``: `transient` ones may be retried, all others are permanent.
public protocol ObjectStore: Sendable {
    /// A description safe to print: the URL without secrets.
    var displayName: String { get }

    /// The object's bytes, or only `range` of them (clamped to the object's end).
    func get(_ key: String, range: Range<Int64>?) async throws -> [UInt8]

    /// Stores `bytes` under `key`, replacing any earlier object atomically.
    func put(_ key: String, bytes: [UInt8]) async throws

    /// Stores `bytes` under `key` only if no object has that key; else throws `alreadyExists`.
    func putIfAbsent(_ key: String, bytes: [UInt8]) async throws

    /// The object's size; throws `notFound` when it does not exist.
    func head(_ key: String) async throws -> ObjectInfo

    /// One page of keys that start with `prefix` and sort after `startAfter`.
    func list(prefix: String, startAfter: String?, limit: Int) async throws -> ListPage

    /// Removes `key`; succeeds when it is already gone.
    func delete(_ key: String) async throws

    /// Removes what writers that stopped mid-write (killed, or cut off) left behind more than `age`
    /// seconds ago: temporary files, incomplete multipart uploads. Listings never show them; a write
    /// still in flight is younger than `age`. Returns how many were removed.
    func removeAbandonedWrites(olderThan age: Double) async throws -> Int

    /// The store's clock, from the `Date` header of one cheap request, for a clock-skew check (S3 refuses
    /// requests signed more than 15 minutes off); nil for a store without a clock of its own (`file://`).
    func serverTime() async throws -> Date?
}

extension ObjectStore {
    /// No clock of its own: the local stores.
    public func serverTime() async throws -> Date? { nil }

    /// The whole object.
    public func get(_ key: String) async throws -> [UInt8] {
        try await get(key, range: nil)
    }

    /// Every key under `prefix`, following pages to the end.
    public func listAll(prefix: String, pageSize: Int = 1000) async throws -> [ObjectInfo] {
        var result: [ObjectInfo] = []
        var after: String? = nil
        while true {
            let page = try await list(prefix: prefix, startAfter: after, limit: pageSize)
            result += page.objects
            guard page.isTruncated, let last = page.objects.last else { return result }
            after = last.key
        }
    }
}

/// What a store knows about one object.
public struct ObjectInfo: Sendable, Hashable {
    /// The object's key.
    public var key: String
    /// Its size in bytes.
    public var size: Int64
    /// When it was last written, when the store says (listings of `file://` and S3 do; nil otherwise).
    /// The garbage collector's grace period reads it.
    public var modified: Date?

    /// An object description.
    public init(key: String, size: Int64, modified: Date? = nil) {
        self.key = key
        self.size = size
        self.modified = modified
    }
}

/// One page of a listing.
public struct ListPage: Sendable {
    /// The objects of this page, in ascending key order.
    public var objects: [ObjectInfo]
    /// True when more keys follow; continue with `startAfter` = the last key.
    public var isTruncated: Bool

    /// A page of a listing.
    public init(objects: [ObjectInfo], isTruncated: Bool) {
        self.objects = objects
        self.isTruncated = isTruncated
    }
}
