import Backends
import CloudShare
import Foundation

extension ServerRegistration {
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
