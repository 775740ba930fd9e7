import Backends
import Foundation

/// One server endpoint's registration in a share: `servers/<serverID>-<endpoint>.json`, written before
/// an endpoint's first pass in each process and after every pass. It tells the other servers (and
/// `status`, `share servers`) who syncs with the share, when it was last seen and how far it has applied
/// the log, and it tells the garbage collector which versions the endpoint's stubs may still name.
public struct ServerRegistration: Codable, Sendable, Equatable {
    /// The registered server's id.
    public var serverID: String
    /// The server's name.
    public var name: String
    /// The endpoint's id on that server.
    public var endpoint: UInt32
    /// When it last finished a pass (seconds since the epoch).
    public var lastSeen: Double
    /// The log sequence it had applied then.
    public var lastAppliedSequence: UInt64
    /// The oldest sequence whose namespace may hold a version this endpoint still names (a stub, or a
    /// file not yet replaced because its newer version is deferred): the cursor, or one before the oldest
    /// deferred operation. Nil in registrations written by builds that did not know it: then
    /// ``lastAppliedSequence``. The garbage collector keeps every version from here on (docs/gc.md).
    public var holdsFrom: UInt64?

    /// A registration as an endpoint writes it.
    public init(serverID: String, name: String, endpoint: UInt32, lastSeen: Double, lastAppliedSequence: UInt64, holdsFrom: UInt64? = nil) {
        self.serverID = serverID
        self.name = name
        self.endpoint = endpoint
        self.lastSeen = lastSeen
        self.lastAppliedSequence = lastAppliedSequence
        self.holdsFrom = holdsFrom
    }

    /// A server that has not been seen for this long is shown offline: a running daemon passes at
    /// least every rescan interval (300 s), so three missed rescans mean it is not running.
    public static let onlineWindow: Double = 900

    /// True when the server was seen within ``onlineWindow`` of `now`.
    public func isOnline(now: Date = Date()) -> Bool { now.timeIntervalSince1970 - lastSeen <= Self.onlineWindow }

    /// The oldest sequence whose versions this endpoint may still need.
    public var oldestHeldSequence: UInt64 { min(lastAppliedSequence, holdsFrom ?? lastAppliedSequence) }

    /// The object key of this registration.
    public var key: String { Self.prefix + "\(serverID)-\(endpoint).json" }

    /// Where registrations live.
    public static let prefix = "servers/"
    /// Markers of endpoints an operator released with `share forget-server`.
    public static let forgottenPrefix = "servers/forgotten/"

    /// What `share forget-server` leaves for a released endpoint: it refuses to sync from then on.
    public struct Forgotten: Codable, Sendable, Equatable {
        /// The registration it ended.
        public var registration: ServerRegistration
        /// When it was forgotten (seconds since the epoch).
        public var forgottenAt: Double

        /// A marker for `registration`.
        public init(registration: ServerRegistration, forgottenAt: Double) {
            self.registration = registration
            self.forgottenAt = forgottenAt
        }
    }

    /// Writes this registration to `store`.
    public func write(to store: any ObjectStore) async throws {
        try await store.put(key, bytes: Array(JSONEncoder().encode(self)))
    }

    /// The registration objects in `store` (not the forgotten markers).
    static func keys(in store: any ObjectStore) async throws -> [String] {
        try await store.listAll(prefix: prefix).map(\.key).filter { $0.hasSuffix(".json") && !$0.dropFirst(prefix.count).contains("/") }
    }

    /// Every registration in `store`, by server name; records that cannot be read are left out.
    public static func list(in store: any ObjectStore) async throws -> [ServerRegistration] {
        var result: [ServerRegistration] = []
        for key in try await keys(in: store) {
            guard let bytes = try? await store.get(key),
                  let record = try? JSONDecoder().decode(ServerRegistration.self, from: Data(bytes)) else { continue }
            result.append(record)
        }
        return result.sorted { ($0.name, $0.serverID, $0.endpoint) < ($1.name, $1.serverID, $1.endpoint) }
    }

    /// The registrations in `store` for the garbage collector: every one, and the keys of those that
    /// cannot be read (their endpoints' needs are unknown, so the collector keeps every version).
    static func listForCollection(in store: any ObjectStore) async throws -> (registrations: [ServerRegistration], unreadable: [String]) {
        var registrations: [ServerRegistration] = [], unreadable: [String] = []
        for key in try await keys(in: store) {
            let bytes: [UInt8]
            do {
                bytes = try await store.get(key)
            } catch let error as StoreError where error.code == .notFound {
                continue // forgotten meanwhile
            }
            if let record = try? JSONDecoder().decode(ServerRegistration.self, from: Data(bytes)) {
                registrations.append(record)
            } else {
                unreadable.append(key)
            }
        }
        return (registrations, unreadable)
    }
}
