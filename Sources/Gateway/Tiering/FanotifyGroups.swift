import Fanotify
import Glibc

/// The fanotify groups the supervisor of `tiergate serve` holds, one per tiering endpoint, inherited by
/// every worker it starts. A group passed back by systemd (`fanotify-<endpoint id>` in `$LISTEN_FDNAMES`)
/// is taken over rather than made anew: it still carries the marks of the stubs, so their readers have
/// been waiting for a daemon instead of reading holes as zeros. Nothing here assumes a fresh group:
/// marks are set again by each worker (fanotify_mark ADD is idempotent), and events a dead process read
/// but never answered are answered (EIO) by the next worker before it reads any.
struct FanotifyGroups {
    /// The groups by endpoint id; inherited by workers (not close-on-exec).
    private(set) var byEndpoint: [UInt32: Int32] = [:]
    /// Descriptors systemd passed that no endpoint has taken yet, by name.
    private var inherited: [String: Int32]
    private let notifier: SystemdNotifier?
    private let log: @Sendable (String) -> Void

    /// Groups taken from `inherited` (passed descriptors by name) or made; with a `notifier`, each new one
    /// goes to systemd's descriptor store.
    init(inherited: [String: Int32], notifier: SystemdNotifier?, log: @escaping @Sendable (String) -> Void) {
        self.inherited = inherited
        self.notifier = notifier
        self.log = log
    }

    /// The descriptor-store name of an endpoint's group.
    static func name(_ endpoint: UInt32) -> String { "fanotify-\(endpoint)" }

    /// Gives every tiering endpoint of `endpoints` a group, and lets go of the groups of the others (their
    /// marks go with them) and of passed descriptors nobody took.
    mutating func provide(for endpoints: [EndpointConfig]) {
        let wanted = Set(endpoints.filter { $0.tiering != nil }.map(\.id))
        for endpoint in wanted.sorted() where byEndpoint[endpoint] == nil {
            let name = Self.name(endpoint)
            let group: Int32
            if let passed = inherited.removeValue(forKey: name) {
                group = passed
                log("endpoint \(endpoint): fanotify group taken over from the descriptor store (its stubs stayed marked)")
            } else if let made = try? PreContentMonitor.makeGroupDescriptor(reportThreadIDs: true) {
                group = made
            } else {
                continue   // no pre-content events here: the worker says why when tiering starts
            }
            _ = fcntl(group, F_SETFD, 0)
            byEndpoint[endpoint] = group
            do {
                try notifier?.store(group, name: name)
            } catch {
                log("endpoint \(endpoint): the fanotify group cannot go to systemd's descriptor store: \(error)")
            }
        }
        for (endpoint, group) in byEndpoint where !wanted.contains(endpoint) {
            release(group, name: Self.name(endpoint))
            byEndpoint[endpoint] = nil
        }
        for (name, descriptor) in inherited { release(descriptor, name: name) }
        inherited = [:]
    }

    private func release(_ descriptor: Int32, name: String) {
        notifier?.post("FDSTOREREMOVE=1\nFDNAME=\(name)")
        close(descriptor)
    }
}
