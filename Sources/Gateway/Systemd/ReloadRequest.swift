import Dispatch
import Glibc
import Logging
import ServiceLifecycle
import Synchronization

/// How a run of `Gateway.serve` ended.
public enum ServeOutcome: Sendable {
    /// Stopped by SIGTERM or SIGINT.
    case stopped
    /// Stopped by SIGHUP to read the configuration again: the supervisor starts a new worker at once.
    case reloadRequested
}

/// SIGHUP in the worker of `tiergate serve`: the configuration is read again by stopping the worker
/// gracefully and letting the supervisor start the next one (which keeps the fanotify groups, so stubs
/// stay marked and their readers wait). A configuration that does not load refuses the reload, and the
/// worker serves on with what it has.
final class ReloadRequest: Sendable {
    private let requested = Atomic<Bool>(false)
    /// Set in init and cancelled by ``stop()``, nowhere else (Dispatch does not mark its sources Sendable).
    nonisolated(unsafe) private var source: (any DispatchSourceSignal)?

    /// Whether a reload stopped the group.
    var isRequested: Bool { requested.load(ordering: .sequentiallyConsistent) }

    /// Catches SIGHUP (which would otherwise end the process) for `group`; `configurationLoads` is asked
    /// before the group is stopped.
    init(group: ServiceGroup, logger: Logger, notifier: SystemdNotifier?, configurationLoads: @escaping @Sendable () throws -> Void) {
        signal(SIGHUP, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: SIGHUP, queue: .global())
        source.setEventHandler { [self] in
            do {
                try configurationLoads()
            } catch {
                logger.error("configuration not reloaded: \(error)")
                notifier?.ready(status: "configuration not reloaded: \(error)")
                return
            }
            logger.info("reloading configuration")
            requested.store(true, ordering: .sequentiallyConsistent)
            Task { await group.triggerGracefulShutdown() }
        }
        source.resume()
        self.source = source
    }

    /// Stops catching SIGHUP (it is ignored from then on); the source no longer holds this object.
    func stop() { source?.cancel() }
}
