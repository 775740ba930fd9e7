import Synchronization

/// Tells the service manager when the worker of `tiergate serve` is ready: once every endpoint's service
/// has started, that is, has marked its stubs for recall and mounted what it mounts (a share still being
/// reached does not hold readiness back: its stubs answer EIO meanwhile, never zeros). Units ordered
/// after `tiergate.service` then never read an unmarked stub.
public final class ServeReadiness: Sendable {
    let notifier: SystemdNotifier?
    let endpoints: Int
    let started = Mutex(0)

    /// Readiness of a worker serving `endpoints` endpoints; with a nil `notifier` it tells nobody.
    public init(endpoints: Int, notifier: SystemdNotifier?) {
        self.endpoints = endpoints
        self.notifier = notifier
    }

    /// Called by each endpoint's service once it serves its stubs; the last one sends `READY=1`.
    public func endpointStarted() {
        let count = started.withLock { count in
            count += 1
            return count
        }
        if count == endpoints {
            notifier?.ready(status: "serving \(endpoints) endpoint\(endpoints == 1 ? "" : "s")")
        }
    }
}
