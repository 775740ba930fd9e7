import CoreMetrics
import Telemetry
import Foundation

/// How to retry a failed call: bounded attempts with exponential backoff and full jitter.
///
/// The delay before retry *n* (1-based) is uniform in `0 ..< min(maxDelay, baseDelay · 2^(n-1))`
/// ("full jitter"), which spreads out clients that failed together instead of having them retry in
/// lockstep against a server that is already struggling.
public struct RetryPolicy: Sendable {
    /// Attempts in total, the first included; 1 means never retry.
    public var maxAttempts: Int
    /// The backoff ceiling of the first retry.
    public var baseDelay: Duration
    /// The largest backoff ceiling.
    public var maxDelay: Duration
    /// How to wait; tests replace it to run without real time passing.
    public var sleep: @Sendable (Duration) async throws -> Void

    /// A policy; the defaults give 6 attempts over at most ~6 s of backoff.
    public init(maxAttempts: Int = 6, baseDelay: Duration = .milliseconds(100), maxDelay: Duration = .seconds(3),
                sleep: @escaping @Sendable (Duration) async throws -> Void = { try await Task.sleep(for: $0) }) {
        precondition(maxAttempts >= 1, "maxAttempts must be at least 1")
        self.maxAttempts = maxAttempts
        self.baseDelay = baseDelay
        self.maxDelay = maxDelay
        self.sleep = sleep
    }

    /// No retries at all.
    public static let never = RetryPolicy(maxAttempts: 1)

    /// The upper bound of the backoff before retry `retry` (1 for the first retry).
    public func ceiling(beforeRetry retry: Int) -> Duration {
        let doublings = min(max(retry - 1, 0), 30)
        let scaled = baseDelay * (1 << doublings)
        return scaled < maxDelay ? scaled : maxDelay
    }

    /// The backoff before retry `retry`, for a uniform random `unit` in `0..<1`.
    public func delay(beforeRetry retry: Int, unit: Double) -> Duration {
        ceiling(beforeRetry: retry) * min(max(unit, 0), 1)
    }

    /// Retries of every store, counted for the daemon's metrics.
    static let retries = Counter(label: MetricName.storeRetries)

    /// Runs `body` until it succeeds, throws an error `isRetryable` rejects, or the attempts run out
    /// (then the last error is thrown). `body` gets the attempt number, starting at 1.
    public func run<T>(isRetryable: (any Error) -> Bool, _ body: (Int) async throws -> T) async throws -> T {
        var attempt = 1
        while true {
            do {
                return try await body(attempt)
            } catch {
                guard attempt < maxAttempts, isRetryable(error), !Task.isCancelled else { throw error }
                Self.retries.increment()
                try await sleep(delay(beforeRetry: attempt, unit: Double.random(in: 0..<1)))
                attempt += 1
            }
        }
    }
}

/// A decorator that retries a store's transient failures (``StoreError/Code/transient``) with
/// backoff; every other error, and the last transient one, reaches the caller unchanged.
///
/// Retrying is safe because every operation of ``ObjectStore`` is idempotent, except the outcome of
/// `putIfAbsent` after an ambiguous failure: if the first attempt wrote the object but its answer was
/// lost, the retry finds the key taken. The decorator then reads the object back, and when it holds
/// exactly the bytes being written, reports success, because the write that won was this one.
/// (Commit records name their author, so another writer's record is never byte-identical.)
///
/// Stores that retry per request internally (``S3Store``) need no wrapping.
public final class RetryingStore: ObjectStore {
    private let base: any ObjectStore
    /// The policy applied to every operation.
    public let policy: RetryPolicy

    public var displayName: String { base.displayName }

    /// Wraps `base`, retrying its transient failures under `policy`.
    public init(_ base: any ObjectStore, policy: RetryPolicy = RetryPolicy()) {
        self.base = base
        self.policy = policy
    }

    private func retrying<T>(_ body: () async throws -> T) async throws -> T {
        try await policy.run(isRetryable: { ($0 as? StoreError)?.isTransient == true }) { _ in try await body() }
    }

    public func get(_ key: String, range: Range<Int64>?) async throws -> [UInt8] {
        try await retrying { try await base.get(key, range: range) }
    }

    public func put(_ key: String, bytes: [UInt8]) async throws {
        try await retrying { try await base.put(key, bytes: bytes) }
    }

    public func putIfAbsent(_ key: String, bytes: [UInt8]) async throws {
        var ambiguous = false
        do {
            try await policy.run(isRetryable: { ($0 as? StoreError)?.isTransient == true }) { attempt in
                do {
                    try await base.putIfAbsent(key, bytes: bytes)
                } catch let error as StoreError where error.isTransient {
                    ambiguous = true
                    throw error
                }
            }
        } catch let error as StoreError where error.code == .alreadyExists && ambiguous {
            guard let stored = try? await retrying({ try await base.get(key, range: nil) }), stored == bytes else { throw error }
        }
    }

    public func head(_ key: String) async throws -> ObjectInfo {
        try await retrying { try await base.head(key) }
    }

    public func list(prefix: String, startAfter: String?, limit: Int) async throws -> ListPage {
        try await retrying { try await base.list(prefix: prefix, startAfter: startAfter, limit: limit) }
    }

    public func serverTime() async throws -> Date? {
        try await retrying { try await base.serverTime() }
    }

    public func delete(_ key: String) async throws {
        try await retrying { try await base.delete(key) }
    }

    public func removeAbandonedWrites(olderThan age: Double) async throws -> Int {
        try await retrying { try await base.removeAbandonedWrites(olderThan: age) }
    }
}
