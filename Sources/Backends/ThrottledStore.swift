import Foundation

/// Wraps a store and paces the bytes of `get` and `put` through a ``TokenBucket``, for `--bwlimit` and the
/// network limit schedule. Metadata calls (`head`, `list`, `delete`) are not paced, and neither is traffic
/// marked as on-access recall (``StoreTraffic/recall(_:)``). Stores wrapped with one bucket share its limit.
public final class ThrottledStore: ObjectStore {
    private let base: any ObjectStore
    /// The bucket the bytes are paced through.
    public let bucket: TokenBucket

    public var displayName: String { base.displayName }

    /// Wraps `base`, paced through `bucket` (which other stores may share).
    public init(_ base: any ObjectStore, bucket: TokenBucket) {
        self.base = base
        self.bucket = bucket
    }

    /// Wraps `base`, limited to a fixed `bytesPerSecond` (at least 1) of its own.
    public convenience init(_ base: any ObjectStore, bytesPerSecond: Int64) {
        self.init(base, bucket: TokenBucket(bytesPerSecond: bytesPerSecond))
    }

    private func pace(_ bytes: Int) async throws {
        if StoreTraffic.isRecall { return }
        try await bucket.take(bytes)
    }

    public func get(_ key: String, range: Range<Int64>?) async throws -> [UInt8] {
        if let range { try await pace(Int(range.count)) }
        let bytes = try await base.get(key, range: range)
        if range == nil { try await pace(bytes.count) }
        return bytes
    }

    public func put(_ key: String, bytes: [UInt8]) async throws {
        try await pace(bytes.count)
        try await base.put(key, bytes: bytes)
    }

    public func putIfAbsent(_ key: String, bytes: [UInt8]) async throws {
        try await pace(bytes.count)
        try await base.putIfAbsent(key, bytes: bytes)
    }

    public func head(_ key: String) async throws -> ObjectInfo { try await base.head(key) }

    public func list(prefix: String, startAfter: String?, limit: Int) async throws -> ListPage {
        try await base.list(prefix: prefix, startAfter: startAfter, limit: limit)
    }

    public func delete(_ key: String) async throws { try await base.delete(key) }

    public func serverTime() async throws -> Date? { try await base.serverTime() }

    public func removeAbandonedWrites(olderThan age: Double) async throws -> Int {
        try await base.removeAbandonedWrites(olderThan: age)
    }
}
