import Foundation
import Synchronization

/// Wraps a store and makes chosen operations fail, for tests of retry and recovery logic.
///
/// A fault is a rule: which operations it hits, how many times, and the error it throws. Rules are
/// checked before the wrapped store is called, so an injected failure never half-applies a write.
/// `failAfterWrite` instead applies the write and then reports a transient failure, which is what a
/// dropped connection after the server committed looks like.
public final class FaultInjectingStore: ObjectStore {
    /// One injected failure rule.
    public struct Fault: Sendable {
        /// Operations it hits (`get`, `put`, `putIfAbsent`, `head`, `list`, `delete`).
        public var operations: Set<String>
        /// Keys it hits: those starting with this prefix.
        public var keyPrefix: String
        /// How many more times it fires.
        public var remaining: Int
        /// The error code to throw.
        public var code: StoreError.Code
        /// When true the write reaches the store and the failure is reported afterwards.
        public var afterWrite: Bool

        /// A rule that fails `count` calls of `operations` on keys under `keyPrefix`.
        public init(operations: Set<String>, keyPrefix: String = "", count: Int = 1, code: StoreError.Code = .transient, afterWrite: Bool = false) {
            self.operations = operations
            self.keyPrefix = keyPrefix
            self.remaining = count
            self.code = code
            self.afterWrite = afterWrite
        }
    }

    private let base: any ObjectStore
    private let faults = Mutex<[Fault]>([])
    private let counts = Mutex<[String: Int]>([:])

    public var displayName: String { base.displayName }

    /// How long every `get` takes at least (a slow or distant store).
    public let getDelay: Duration

    /// Wraps `base`; every `get` waits `getDelay` first.
    public init(_ base: any ObjectStore, getDelay: Duration = .zero) {
        self.base = base
        self.getDelay = getDelay
    }

    /// Adds a failure rule.
    public func inject(_ fault: Fault) {
        faults.withLock { $0.append(fault) }
    }

    /// How many times `operation` was called (including failed calls).
    public func calls(_ operation: String) -> Int {
        counts.withLock { $0[operation, default: 0] }
    }

    private func check(_ operation: String, _ key: String, afterWrite: Bool) throws {
        let code: StoreError.Code? = faults.withLock { faults in
            for index in faults.indices where faults[index].remaining > 0
                && faults[index].afterWrite == afterWrite
                && faults[index].operations.contains(operation) && key.hasPrefix(faults[index].keyPrefix) {
                faults[index].remaining -= 1
                return faults[index].code
            }
            return nil
        }
        if let code {
            throw StoreError(code, store: displayName, operation: operation, key: key, cause: "injected fault")
        }
    }

    private func enter(_ operation: String, _ key: String) throws {
        counts.withLock { $0[operation, default: 0] += 1 }
        try check(operation, key, afterWrite: false)
    }

    public func get(_ key: String, range: Range<Int64>?) async throws -> [UInt8] {
        try enter("get", key)
        if getDelay > .zero { try await Task.sleep(for: getDelay) }
        return try await base.get(key, range: range)
    }

    public func put(_ key: String, bytes: [UInt8]) async throws {
        try enter("put", key)
        try await base.put(key, bytes: bytes)
        try check("put", key, afterWrite: true)
    }

    public func putIfAbsent(_ key: String, bytes: [UInt8]) async throws {
        try enter("putIfAbsent", key)
        try await base.putIfAbsent(key, bytes: bytes)
        try check("putIfAbsent", key, afterWrite: true)
    }

    public func head(_ key: String) async throws -> ObjectInfo {
        try enter("head", key)
        return try await base.head(key)
    }

    public func list(prefix: String, startAfter: String?, limit: Int) async throws -> ListPage {
        try enter("list", prefix)
        return try await base.list(prefix: prefix, startAfter: startAfter, limit: limit)
    }

    public func delete(_ key: String) async throws {
        try enter("delete", key)
        try await base.delete(key)
    }

    public func serverTime() async throws -> Date? {
        try await base.serverTime()
    }

    public func removeAbandonedWrites(olderThan age: Double) async throws -> Int {
        try await base.removeAbandonedWrites(olderThan: age)
    }
}
