import CoreMetrics
import Foundation
import Dispatch
import Telemetry

/// Wraps a store and counts its requests by operation and result, with their latency, through
/// swift-metrics (exported by the daemon as Prometheus metrics; without a metrics backend the handles
/// do nothing). ``StoreLocator`` wraps every store it opens, so every backend is measured the same way.
public final class MeteredStore: ObjectStore {
    /// The store measured.
    public let base: any ObjectStore

    public var displayName: String { base.displayName }

    /// Wraps `base`.
    public init(_ base: any ObjectStore) { self.base = base }

    /// The handles of one operation, made once per process (labels are bounded: operation × result).
    struct Handles: Sendable {
        let latency: CoreMetrics.Timer
        let results: [String: Counter]

        init(_ operation: String) {
            latency = CoreMetrics.Timer(label: MetricName.storeLatency, dimensions: [("operation", operation)])
            results = Dictionary(uniqueKeysWithValues: Self.results.map {
                ($0, Counter(label: MetricName.storeRequests, dimensions: [("operation", operation), ("result", $0)]))
            })
        }

        static let results = ["success", "not_found", "already_exists", "unauthorized", "transient", "error"]
    }

    private static let handles: [String: Handles] = Dictionary(uniqueKeysWithValues:
        ["get", "put", "put_if_absent", "head", "list", "delete"].map { ($0, Handles($0)) })

    private static func result(of error: any Error) -> String {
        guard let error = error as? StoreError else { return "error" }
        switch error.code {
        case .notFound: return "not_found"
        case .alreadyExists: return "already_exists"
        case .unauthorized: return "unauthorized"
        case .transient: return "transient"
        default: return "error"
        }
    }

    private func measure<T>(_ operation: String, _ body: () async throws -> T) async throws -> T {
        let handles = Self.handles[operation]!
        let started = DispatchTime.now().uptimeNanoseconds
        do {
            let value = try await body()
            handles.latency.recordNanoseconds(Int64(DispatchTime.now().uptimeNanoseconds - started))
            handles.results["success"]!.increment()
            return value
        } catch {
            handles.latency.recordNanoseconds(Int64(DispatchTime.now().uptimeNanoseconds - started))
            handles.results[Self.result(of: error)]!.increment()
            throw error
        }
    }

    public func get(_ key: String, range: Range<Int64>?) async throws -> [UInt8] {
        try await measure("get") { try await base.get(key, range: range) }
    }

    public func put(_ key: String, bytes: [UInt8]) async throws {
        try await measure("put") { try await base.put(key, bytes: bytes) }
    }

    public func putIfAbsent(_ key: String, bytes: [UInt8]) async throws {
        try await measure("put_if_absent") { try await base.putIfAbsent(key, bytes: bytes) }
    }

    public func head(_ key: String) async throws -> ObjectInfo {
        try await measure("head") { try await base.head(key) }
    }

    public func list(prefix: String, startAfter: String?, limit: Int) async throws -> ListPage {
        try await measure("list") { try await base.list(prefix: prefix, startAfter: startAfter, limit: limit) }
    }

    public func delete(_ key: String) async throws {
        try await measure("delete") { try await base.delete(key) }
    }

    public func serverTime() async throws -> Date? { try await base.serverTime() }

    public func removeAbandonedWrites(olderThan age: Double) async throws -> Int {
        try await base.removeAbandonedWrites(olderThan: age)
    }
}
