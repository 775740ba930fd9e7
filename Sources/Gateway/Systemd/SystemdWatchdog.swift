import ServiceLifecycle

/// Sends `WATCHDOG=1` every `interval` (half of `$WATCHDOG_USEC`) while the worker runs, from its start:
/// systemd arms the watchdog when the service starts, not when it is ready, and marking the stubs of a
/// large endpoint may take a while. A worker whose tasks no longer run stops pinging, and systemd
/// restarts the service (the descriptor store keeps the fanotify groups across that restart).
public struct SystemdWatchdog: Service {
    let notifier: SystemdNotifier
    let interval: Duration

    /// A watchdog that pings through `notifier` every `interval`.
    public init(notifier: SystemdNotifier, interval: Duration) {
        self.notifier = notifier
        self.interval = interval
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                notifier.post("WATCHDOG=1")
                try? await Task.sleep(for: interval)
            }
        }
    }
}
