import Backends
import Foundation
import Synchronization

/// The one-collector-at-a-time lease: `gc/lease/<20-digit generation>`, created with put-if-absent.
///
/// The holder is the newest generation. A lease whose expiry has passed (its collector was killed) is
/// taken over by creating the next generation, which exactly one of two racing collectors wins. The
/// holder renews its expiry while it runs and checks that it still holds the lease before it deletes.
/// Safety never rests on the lease (every deletion re-marks against the log, docs/gc.md): it keeps two
/// collectors from doing the same work and from writing confusing records.
struct CollectionLease: Codable, Sendable {
    var owner: String
    var host: String
    var pid: Int32
    var acquired: Double
    var expires: Double

    static let prefix = "gc/lease/"

    static func key(_ generation: UInt64) -> String {
        let digits = String(generation)
        return prefix + String(repeating: "0", count: max(0, 20 - digits.count)) + digits
    }

    static func generation(ofKey key: String) -> UInt64? {
        guard key.hasPrefix(prefix) else { return nil }
        return UInt64(key.dropFirst(prefix.count))
    }
}

/// Another collector holds the share's lease, or this collector lost it.
public struct CollectorBusy: Error, CustomStringConvertible, Sendable {
    /// A sentence naming the holder and until when it holds the lease.
    public var description: String
}

/// A lease held by this process: renews it and checks it is still held.
final class HeldLease: Sendable {
    let store: any ObjectStore
    let key: String
    let duration: Double
    let now: @Sendable () -> Date
    let owner: String
    private let expires: Mutex<Double>

    private init(store: any ObjectStore, key: String, lease: CollectionLease, duration: Double, now: @escaping @Sendable () -> Date) {
        self.store = store
        self.key = key
        self.duration = duration
        self.now = now
        owner = lease.owner
        expires = Mutex(lease.expires)
    }

    /// Takes the lease for `duration` seconds; throws ``CollectorBusy`` when another collector holds it.
    static func acquire(_ store: any ObjectStore, duration: Double, now: @escaping @Sendable () -> Date) async throws -> HeldLease {
        let existing = try await store.listAll(prefix: CollectionLease.prefix).compactMap { CollectionLease.generation(ofKey: $0.key) }.sorted()
        var next: UInt64 = 1
        if let newest = existing.last {
            next = newest + 1
            do {
                let holder = try JSONDecoder().decode(CollectionLease.self, from: Data(try await store.get(CollectionLease.key(newest))))
                if holder.expires > now().timeIntervalSince1970 {
                    throw CollectorBusy(description: "another garbage collector is running on this share (\(holder.host), pid \(holder.pid), since \(Self.format(holder.acquired))); its lease expires at \(Self.format(holder.expires)) if it stopped")
                }
            } catch let error as StoreError where error.code == .notFound {
                // Released between the listing and the read: the next generation is free.
            } catch is DecodingError {
                // An unreadable lease object is treated as expired: it cannot name a live holder.
            }
        }
        let time = now().timeIntervalSince1970
        let lease = CollectionLease(owner: UUID().uuidString.lowercased(), host: ProcessInfo.processInfo.hostName,
                                    pid: ProcessInfo.processInfo.processIdentifier, acquired: time, expires: time + duration)
        let key = CollectionLease.key(next)
        do {
            try await store.putIfAbsent(key, bytes: Array(try JSONEncoder().encode(lease)))
        } catch let error as StoreError where error.code == .alreadyExists {
            throw CollectorBusy(description: "another garbage collector took this share's lease at the same moment; nothing was done")
        }
        // Older generations (stale leases of killed collectors) are no longer needed.
        for generation in existing { try? await store.delete(CollectionLease.key(generation)) }
        return HeldLease(store: store, key: key, lease: lease, duration: duration, now: now)
    }

    /// Renews the lease when less than half of it is left, after checking that no newer generation
    /// took it over (a collector paused longer than its lease). Called before every deletion.
    func keep() async throws {
        let newest = try await store.listAll(prefix: CollectionLease.prefix).last?.key
        guard newest == key else {
            throw CollectorBusy(description: "this garbage collector lost its lease (it was paused past its expiry and another collector took over); it stopped before deleting more")
        }
        let time = now().timeIntervalSince1970
        guard time < expires.withLock({ $0 }) else {
            throw CollectorBusy(description: "this garbage collector's lease expired while it ran; it stopped before deleting more (rerun it; use a longer --lease)")
        }
        guard expires.withLock({ $0 }) - time < duration / 2 else { return }
        let lease = CollectionLease(owner: owner, host: ProcessInfo.processInfo.hostName, pid: ProcessInfo.processInfo.processIdentifier,
                                    acquired: time, expires: time + duration)
        try await store.put(key, bytes: Array(try JSONEncoder().encode(lease)))
        expires.withLock { $0 = lease.expires }
    }

    /// Gives the lease up.
    func release() async {
        try? await store.delete(key)
    }

    static func format(_ seconds: Double) -> String {
        ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: seconds))
    }
}
