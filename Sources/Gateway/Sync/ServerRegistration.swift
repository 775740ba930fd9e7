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

    /// Writes this registration to `store`.
    func write(to store: any ObjectStore) async throws {
        try await store.put(key, bytes: Array(JSONEncoder().encode(self)))
    }

    /// Every registration in `store`, by server name; records that cannot be read are left out.
    public static func list(in store: any ObjectStore) async throws -> [ServerRegistration] {
        var result: [ServerRegistration] = []
        for object in try await store.listAll(prefix: prefix) where object.key.hasSuffix(".json") {
            guard let bytes = try? await store.get(object.key),
                  let record = try? JSONDecoder().decode(ServerRegistration.self, from: Data(bytes)) else { continue }
            result.append(record)
        }
        return result.sorted { ($0.name, $0.serverID, $0.endpoint) < ($1.name, $1.serverID, $1.endpoint) }
    }
}
