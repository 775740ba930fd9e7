import Backends
import Foundation

/// One server endpoint's registration in a share: `servers/<serverID>-<endpoint>.json`, written after
/// every pass. It tells the other servers (and `status`, `share servers`) who syncs with the share,
/// when it was last seen and how far it has applied the log.
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

    /// A server that has not been seen for this long is shown offline: a running daemon passes at
    /// least every rescan interval (300 s), so three missed rescans mean it is not running.
    public static let onlineWindow: Double = 900

    /// True when the server was seen within ``onlineWindow`` of `now`.
    public func isOnline(now: Date = Date()) -> Bool { now.timeIntervalSince1970 - lastSeen <= Self.onlineWindow }

    var key: String { Self.prefix + "\(serverID)-\(endpoint).json" }

    static let prefix = "servers/"
    /// Markers of endpoints an operator released with `share forget-server`.
    static let forgottenPrefix = "servers/forgotten/"

    /// What `share forget-server` leaves for a released endpoint: it refuses to sync from then on.
    public struct Forgotten: Codable, Sendable, Equatable {
        /// The registration it ended.
        public var registration: ServerRegistration
        /// When it was forgotten (seconds since the epoch).
        public var forgottenAt: Double
    }

    /// Writes this registration to `store`.
    func write(to store: any ObjectStore) async throws {
        try await store.put(key, bytes: Array(JSONEncoder().encode(self)))
    }

    /// Every registration in `store`, by server name; records that cannot be read are left out.
    public static func list(in store: any ObjectStore) async throws -> [ServerRegistration] {
        var result: [ServerRegistration] = []
        for object in try await store.listAll(prefix: prefix) where object.key.hasSuffix(".json")
            && !object.key.dropFirst(prefix.count).contains("/") {
            guard let bytes = try? await store.get(object.key),
                  let record = try? JSONDecoder().decode(ServerRegistration.self, from: Data(bytes)) else { continue }
            result.append(record)
        }
        return result.sorted { ($0.name, $0.serverID, $0.endpoint) < ($1.name, $1.serverID, $1.endpoint) }
    }

    /// Releases every endpoint of the server `idOrName` (its id, or a name only one server has): a marker
    /// per endpoint first, then its registrations go. Returns what was forgotten. From then on those
    /// endpoints refuse to sync (their stubs may name data the share stops keeping for them).
    public static func forget(_ idOrName: String, in store: any ObjectStore, now: Date = Date()) async throws -> [ServerRegistration] {
        let all = try await list(in: store)
        var chosen = all.filter { $0.serverID == idOrName }
        if chosen.isEmpty {
            chosen = all.filter { $0.name == idOrName }
            guard Set(chosen.map(\.serverID)).count <= 1 else {
                throw GatewayError("more than one server is called '\(idOrName)'; name it by its id (`tiergate share servers` lists them)")
            }
        }
        guard !chosen.isEmpty else { throw GatewayError("no server '\(idOrName)' is registered in this share (`tiergate share servers` lists them)") }
        for registration in chosen {
            let marker = Forgotten(registration: registration, forgottenAt: now.timeIntervalSince1970)
            try await store.put(forgottenPrefix + "\(registration.serverID)-\(registration.endpoint).json", bytes: Array(JSONEncoder().encode(marker)))
        }
        for registration in chosen { try await store.delete(registration.key) }
        return chosen
    }

    /// The marker of endpoint `endpoint` of server `serverID`, when it was forgotten.
    static func forgotten(serverID: String, endpoint: UInt32, in store: any ObjectStore) async throws -> Forgotten? {
        let bytes: [UInt8]
        do {
            bytes = try await store.get(forgottenPrefix + "\(serverID)-\(endpoint).json")
        } catch let error as StoreError where error.code == .notFound {
            return nil
        }
        // A marker that cannot be read still says the endpoint was released: refuse rather than guess.
        return (try? JSONDecoder().decode(Forgotten.self, from: Data(bytes)))
            ?? Forgotten(registration: ServerRegistration(serverID: serverID, name: "", endpoint: endpoint, lastSeen: 0, lastAppliedSequence: 0), forgottenAt: 0)
    }
}
