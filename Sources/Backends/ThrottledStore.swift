import Foundation
import Synchronization

/// Wraps a store and paces the bytes of `get` and `put` to a rate (a token bucket with one second of
/// burst), for `--bwlimit` and the network limit schedule. Metadata calls (`head`, `list`, `delete`) are
/// not paced. One limit is shared by every task using the wrapper.
public final class ThrottledStore: ObjectStore {
    private let base: any ObjectStore
    /// Bytes per second.
    public let bytesPerSecond: Int64
    /// When the link is free again (seconds on the monotonic clock).
    private let free = Mutex<Double>(0)

    public var displayName: String { base.displayName }

    /// Wraps `base`, limited to `bytesPerSecond` (at least 1).
    public init(_ base: any ObjectStore, bytesPerSecond: Int64) {
        self.base = base
        self.bytesPerSecond = max(1, bytesPerSecond)
    }

    /// Reserves the link for `bytes` and waits until the reservation starts.
    private func pace(_ bytes: Int) async throws {
        guard bytes > 0 else { return }
        let now = Self.now()
        let start = free.withLock { free in
            let start = max(free, now - 1)           // up to one second of unused rate is kept as burst
            free = start + Double(bytes) / Double(bytesPerSecond)
            return start
        }
        if start > now { try await Task.sleep(for: .seconds(start - now)) }
    }

    private static func now() -> Double {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
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
}
