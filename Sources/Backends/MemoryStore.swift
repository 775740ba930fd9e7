import Foundation
import Synchronization

/// An object store held in memory, for unit tests of the logic above the store.
///
/// It keeps every contract of ``ObjectStore`` so that it passes the conformance suite; it is never
/// a substitute for testing a real protocol.
public final class MemoryStore: ObjectStore {
    private let objects = Mutex<[String: [UInt8]]>([:])
    /// When each object was last written, for listings (the garbage collector's grace period reads it).
    private let written = Mutex<[String: Date]>([:])
    public let displayName: String

    /// An empty store.
    public init(name: String = "memory://") {
        displayName = name
    }

    public func get(_ key: String, range: Range<Int64>?) async throws -> [UInt8] {
        try ObjectKey.validate(key, store: displayName, operation: "get")
        guard let bytes = objects.withLock({ $0[key] }) else {
            throw StoreError(.notFound, store: displayName, operation: "get", key: key, cause: "no such object")
        }
        guard let range else { return bytes }
        let lower = Int(min(range.lowerBound, Int64(bytes.count)))
        let upper = Int(min(range.upperBound, Int64(bytes.count)))
        return Array(bytes[lower..<upper])
    }

    public func put(_ key: String, bytes: [UInt8]) async throws {
        try ObjectKey.validate(key, store: displayName, operation: "put")
        objects.withLock { $0[key] = bytes }
        written.withLock { $0[key] = Date() }
    }

    public func putIfAbsent(_ key: String, bytes: [UInt8]) async throws {
        try ObjectKey.validate(key, store: displayName, operation: "putIfAbsent")
        let stored = objects.withLock { objects in
            if objects[key] != nil { return false }
            objects[key] = bytes
            return true
        }
        if stored { written.withLock { $0[key] = Date() } }
        if !stored {
            throw StoreError(.alreadyExists, store: displayName, operation: "putIfAbsent", key: key, cause: "the object exists")
        }
    }

    public func head(_ key: String) async throws -> ObjectInfo {
        try ObjectKey.validate(key, store: displayName, operation: "head")
        guard let bytes = objects.withLock({ $0[key] }) else {
            throw StoreError(.notFound, store: displayName, operation: "head", key: key, cause: "no such object")
        }
        return ObjectInfo(key: key, size: Int64(bytes.count))
    }

    public func list(prefix: String, startAfter: String?, limit: Int) async throws -> ListPage {
        let keys = objects.withLock { objects in
            objects.keys.filter { $0.hasPrefix(prefix) && (startAfter == nil || $0.utf8.lexicographicallyPrecedes(startAfter!.utf8) == false && $0 != startAfter!) }
        }.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        let page = keys.prefix(limit)
        let times = written.withLock { $0 }
        let infos = objects.withLock { objects in page.map { ObjectInfo(key: $0, size: Int64(objects[$0]?.count ?? 0), modified: times[$0]) } }
        return ListPage(objects: infos, isTruncated: keys.count > limit)
    }

    public func delete(_ key: String) async throws {
        try ObjectKey.validate(key, store: displayName, operation: "delete")
        _ = objects.withLock { $0.removeValue(forKey: key) }
        _ = written.withLock { $0.removeValue(forKey: key) }
    }

    /// Writes in memory are whole or absent: nothing is ever left behind.
    public func removeAbandonedWrites(olderThan age: Double) async throws -> Int { 0 }
}
