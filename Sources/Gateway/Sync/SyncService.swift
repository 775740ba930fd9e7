import Backends
import CloudShare
import Foundation
import Glibc
import Logging
import ServiceLifecycle

/// The daemon's work for one endpoint: a sync pass whenever the local tree changed (inotify), the
/// share's log moved (polled every `pollInterval`), or `rescanInterval` passed (the safety net).
public final class SyncService: Service {
    let state: LocalState
    let endpoint: EndpointConfig
    let serverID: String
    let serverName: String
    let logger: Logger
    /// How often the share's log head is polled.
    let pollInterval: Duration
    /// How often a full pass runs even without any signal of change.
    let rescanInterval: Duration = .seconds(300)
    /// Quiet time after a local change before the pass starts, so a burst of writes becomes one commit.
    let debounce: Duration = .milliseconds(200)

    init(state: LocalState, endpoint: EndpointConfig, serverID: String, serverName: String, pollInterval: Duration, logger: Logger) {
        self.state = state
        self.endpoint = endpoint
        self.serverID = serverID
        self.serverName = serverName
        self.pollInterval = pollInterval
        var logger = logger
        logger[metadataKey: "endpoint.path"] = .string(endpoint.path)
        self.logger = logger
    }

    public func run() async throws {
        let share = try await CloudShare.open(StoreLocator.open(endpoint.share))
        let engine = try SyncEngine(endpoint: endpoint, share: share, state: state, serverID: serverID, serverName: serverName)
        let watcher = try InotifyWatcher(root: endpoint.path)
        defer { watcher.stop() }
        let clock = ContinuousClock()
        var seenChanges = -1
        var lastPass = clock.now
        var lastPoll = clock.now
        logger.info("watching endpoint", metadata: ["share": .string(engine.share.name)])
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            var reason: String?
            if seenChanges < 0 {
                reason = "start"
            } else if watcher.changeCount != seenChanges, Self.quietFor(watcher, debounce) {
                reason = "local change"
            } else if clock.now - lastPass >= rescanInterval {
                reason = "periodic rescan"
            } else if clock.now - lastPoll >= pollInterval {
                lastPoll = clock.now
                let cursor = try state.cursor(endpoint.id)
                if let head = try? await engine.share.log.head(after: cursor), head > cursor { reason = "cloud change" }
            }
            if let reason {
                seenChanges = watcher.changeCount
                lastPass = clock.now
                do {
                    let report = try await engine.syncOnce()
                    if report.commits > 0 || report.downloaded > 0 || report.appliedRemovals > 0 || reason == "start" {
                        logger.info("\(report.summary)", metadata: ["trigger": .string(reason), "share.seq": .stringConvertible(report.cursor)])
                    }
                } catch {
                    logger.error("sync failed: \(error)", metadata: ["trigger": .string(reason)])
                }
            }
            try? await Task.sleep(for: .milliseconds(50))
        }
        logger.info("stopped")
    }

    static func quietFor(_ watcher: InotifyWatcher, _ duration: Duration) -> Bool {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let elapsed = Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec) - watcher.lastChangeNanoseconds
        return elapsed >= duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000
    }
}

extension Gateway {
    /// Runs every endpoint's sync service until SIGTERM or SIGINT, then stops them cleanly.
    public func serve(logger: Logger, pollInterval: Duration = .seconds(1)) async throws {
        guard !config.endpoints.isEmpty else { throw GatewayError("no endpoints to serve; add one with `tiergate endpoint add`") }
        let services: [any Service] = config.endpoints.map {
            SyncService(state: state, endpoint: $0, serverID: config.serverID, serverName: config.serverName, pollInterval: pollInterval, logger: logger)
        }
        let group = ServiceGroup(configuration: .init(
            services: services.map { .init(service: $0) },
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger
        ))
        try await group.run()
    }
}
