import Backends
import CLinux
import CloudShare
import FUSE
import Foundation
import Glibc
import Logging
import ServiceLifecycle

/// The daemon's work for one endpoint: a sync pass whenever the local tree changed (inotify), the
/// share's log moved (polled every `pollInterval`), `rescanInterval` passed (the safety net), or share
/// operations that could not be applied wait for a retry (after 2 s, doubling to 5 minutes). A pass
/// looks at the paths the change journal reported; the first pass and the safety net walk the whole tree.
public final class SyncService: Service {
    let state: LocalState
    let endpoint: EndpointConfig
    let serverID: String
    let serverName: String
    let logger: Logger
    /// How often the share's log head is polled.
    let pollInterval: Duration
    /// How often a pass walks the whole tree even without any signal of change (the safety net for
    /// what inotify does not report, such as writes through a shared memory map).
    let rescanInterval: Duration = .seconds(1800)
    /// Quiet time after a local change before the pass starts, so a burst of writes becomes one commit.
    let debounce: Duration = .milliseconds(200)

    let directory: StateDirectory
    /// The effective free-space target of the endpoint's volume.
    let freeSpacePercent: Int

    /// The fanotify group a supervisor holds for this endpoint, if any.
    let fanotifyGroup: Int32?
    /// Which watcher feeds the change journal.
    let changeJournal: ChangeJournal.Source
    /// True when this daemon recalls stubs through fanotify on the endpoint's file system (then its
    /// journal cannot be a filesystem mark: see ``ChangeJournal/watch(_:using:recalledHere:)``).
    let recalledHere: Bool
    /// Told once the endpoint's stubs are marked and its mount is up.
    let readiness: ServeReadiness?
    /// The server's network limit, shared by every endpoint's sync (recall is exempt).
    let networkLimit: NetworkLimit

    init(state: LocalState, directory: StateDirectory, endpoint: EndpointConfig, serverID: String, serverName: String,
         pollInterval: Duration, freeSpacePercent: Int, fanotifyGroup: Int32?, networkLimit: NetworkLimit,
         changeJournal: ChangeJournal.Source = .automatic, recalledHere: Bool = false, readiness: ServeReadiness? = nil, logger: Logger) {
        self.fanotifyGroup = fanotifyGroup
        self.changeJournal = changeJournal
        self.recalledHere = recalledHere
        self.networkLimit = networkLimit
        self.readiness = readiness
        self.state = state
        self.directory = directory
        self.freeSpacePercent = freeSpacePercent
        self.endpoint = endpoint
        self.serverID = serverID
        self.serverName = serverName
        self.pollInterval = pollInterval
        var logger = logger
        logger[metadataKey: "endpoint.path"] = .string(endpoint.path)
        self.logger = logger
    }

    public func run() async throws {
        // Tiering first, before the share is even opened: stubs must be marked before anything reads
        // them, and while the share cannot be reached their readers get EIO, never zeros.
        let connection = ShareConnection(nil, name: StoreLocator.redacted(endpoint.shareURL))
        var tiering: TieringRuntime?
        if endpoint.tiering != nil {
            do {
                let runtime = try TieringRuntime(endpoint: endpoint, connection: connection, state: state, group: fanotifyGroup)
                let marked = try await runtime.markStubs()
                tiering = runtime
                logger.info("tiering on: \(marked) stubs marked for recall", metadata: ["free space %": .stringConvertible(freeSpacePercent)])
            } catch {
                logger.error("\(error)")
            }
        }
        defer { tiering?.stop() }
        // From now on every stub is marked: a write into one was recalled around first.
        let recallActiveSince = tiering.map { _ in Int64(Date().timeIntervalSince1970 * 1e9) }
        // One recall engine for fanotify and the mount: one set of figures, one low-disk mode.
        let recaller = tiering?.recaller ?? RecallEngine(connection: connection, state: state, endpoint: endpoint)
        // The mounted cache volume, when the configuration asks for one.
        var mount: MountSession?
        if let mountpoint = endpoint.mountPoint {
            do {
                mount = try await Gateway.mount(endpoint, at: mountpoint, state: state, recaller: recaller)
                logger.info("mounted at \(mountpoint)")
            } catch {
                logger.error("\(error)")
            }
        }
        readiness?.endpointStarted()
        // A share that cannot be opened (unreachable, wrong credentials, another share) puts this
        // endpoint in Error and is retried; the daemon and its other endpoints carry on.
        var opened: SyncEngine?
        var delay = Duration.seconds(1)
        while opened == nil {
            do {
                let engine = try await openEngine(endpoint)
                connection.connect(engine.share)
                opened = engine
            } catch {
                SyncEngine.recordFailedPass(error, endpoint: endpoint, state: state)
                logger.error("cannot open the share; retrying in \(delay): \(error)")
                try? await Task.sleep(for: delay)
                if Task.isCancelled || Task.isShuttingDownGracefully {
                    mount?.stop()
                    return
                }
                delay = min(delay * 2, .seconds(60))
            }
        }
        guard var engine = opened else { return }
        let metrics = EndpointMetrics(endpoint: endpoint.id)
        var lastTieringFigures = ContinuousClock().now - .seconds(3600)
        engine.recallActiveSince = recallActiveSince
        if let tiering { engine.onStubCreated = { path in try? tiering.mark(path) } }
        defer { mount?.stop() }
        let journal = try ChangeJournal.watch(endpoint.path, using: changeJournal, recalledHere: recalledHere)
        defer { journal.stop() }
        var lastPolicy = ContinuousClock().now - .seconds(86_400)
        var storedFigures: RecallEngine.Figures?
        let clock = ContinuousClock()
        var seenChanges = -1
        var lastWholeTree = clock.now
        var lastPoll = clock.now
        // Share operations that could not be applied (a fetch that failed, a folder in the way) are retried
        // by a pass of their own, 2 s after the last pass and twice as long after each that left some.
        var lastPass = clock.now
        var retryDelay: Duration = .seconds(2)
        var deferredPending = false
        logger.info("watching endpoint", metadata: ["share": .string(engine.share.name), "journal": .string(journal.watcherName)])
        let configFile = ConfigFile(path: directory.configPath)
        var refusedURL: String?
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            // A named store defined anew in config.json (`tiergate store set`): the share is opened there.
            if let current = configFile.current()?.endpoints.first(where: { $0.id == endpoint.id }),
               current.shareURL != engine.endpoint.shareURL, current.shareURL != refusedURL {
                do {
                    engine = try await reopen(engine, at: current, connection: connection)
                    seenChanges = -1
                    logger.notice("the share's store is now \(engine.share.name) (config.json)")
                } catch {
                    refusedURL = current.shareURL
                    logger.error("config.json names another store for this endpoint's share, which is not used: \(error)")
                }
            }
            var reason: String?
            if seenChanges < 0 {
                reason = "start"
            } else if journal.changeCount != seenChanges, Self.quietFor(journal, debounce) {
                reason = "local change"
            } else if clock.now - lastWholeTree >= rescanInterval {
                reason = "periodic rescan"
            } else if deferredPending, clock.now - lastPass >= retryDelay {
                reason = "retry"
                retryDelay = min(retryDelay * 2, .seconds(300))
            } else if clock.now - lastPoll >= pollInterval {
                lastPoll = clock.now
                let cursor = try state.cursor(endpoint.id)
                let head = try? await engine.share.log.head(after: cursor)
                if let head, head > cursor { reason = "cloud change" }
                metrics.recordLag(cursor: cursor, head: head)
            }
            if let notice = journal.takeNotice() {
                logger.warning("\(notice)")
            }
            if let reason {
                seenChanges = journal.changeCount
                // Taken before the pass: what changes while it runs is the next pass's work.
                let taken = journal.take()
                let scope = reason == "start" || reason == "periodic rescan" ? .everything : taken
                if case .everything = scope { lastWholeTree = clock.now }
                var report: SyncReport
                do {
                    report = try await engine.syncOnce(scope: scope)
                    if report.commits > 0 || report.downloaded > 0 || report.appliedRemovals > 0 || reason == "start" {
                        logger.info("\(report.summary)", metadata: ["trigger": .string(reason), "share.seq": .stringConvertible(report.cursor)])
                    }
                } catch let moved as ShareMoved {
                    journal.giveBack(scope)
                    report = (try? state.value(SyncReport.self, endpoint.id, SyncReport.stateKey)) ?? SyncReport()
                    do {
                        // The share moved to another store: follow it from the same cursor, and pass again at once.
                        engine = try await reopen(engine, at: try await Gateway.follow(moved, endpoint: engine.endpoint, directory: directory), connection: connection)
                        seenChanges = -1
                        logger.notice("\(moved); following it from sequence \(report.cursor)", metadata: ["share": .string(engine.share.name)])
                    } catch {
                        logger.error("\(error)", metadata: ["trigger": .string(reason)])
                    }
                } catch {
                    journal.giveBack(scope)
                    logger.error("sync failed: \(error)", metadata: ["trigger": .string(reason)])
                    report = (try? state.value(SyncReport.self, endpoint.id, SyncReport.stateKey)) ?? SyncReport()
                }
                lastPass = clock.now
                deferredPending = (try? state.value(DeferredOperations.self, endpoint.id, DeferredOperations.stateKey))?.isEmpty == false
                if !deferredPending { retryDelay = .seconds(2) }
                metrics.recordPass(report)
                recordActivity { $0.record(report, trigger: reason) }
                recordStanding(metrics, cursor: report.cursor, head: report.result == "success" ? report.cursor : nil)
                // A pass over the whole tree frees lists of every item, which malloc keeps: given back, the
                // idle daemon's RSS is what it holds, not what its largest pass held.
                if case .everything = scope { _ = CLinux_malloc_trim() }
            }
            // Recall figures for `status`, written when they changed (not on every tick).
            let figures = recaller.currentFigures
            if tiering != nil || mount != nil, figures != storedFigures {
                storedFigures = figures
                try? state.setValue(figures, endpoint.id, "recallFigures")
                let lowOnSpace = tiering != nil && ((try? TieringPolicy.volume(of: endpoint.path).isLowOnSpace) ?? false)
                let new = metrics.recordRecalls(figures, lowOnSpace: lowOnSpace, queued: tiering?.queuedEvents)
                recordActivity { $0.recordRecalls(new.recalls, bytes: new.bytes) }
            }
            if tiering != nil || mount != nil, clock.now - lastTieringFigures >= .seconds(60) {
                lastTieringFigures = clock.now
                if let figures = try? Gateway.tieringFigures(endpoint, state: state, now: Date()) { metrics.recordTiering(figures) }
                metrics.recordMount(requests: mount?.requestCount)
            }
            if let tiering {
                // Low-disk mode: policies every minute, and what accesses recall is tiered again once closed.
                let lowOnSpace = (try? TieringPolicy.volume(of: endpoint.path).isLowOnSpace) ?? false
                recaller.setLowOnSpace(lowOnSpace)
                if lowOnSpace, await tiering.tierUnkeptRecalls() > 0 {
                    logger.debug("low-disk mode: recalled files tiered again")
                }
                if clock.now - lastPolicy >= (lowOnSpace ? .seconds(60) : .seconds(3600)) {
                    lastPolicy = clock.now
                    if let outcome = try? await tiering.applyPolicies(freeSpacePercent: freeSpacePercent), outcome.files > 0 {
                        logger.info("tiered \(outcome.files) files, freed \(ByteFormat.string(outcome.bytes))")
                    }
                }
                if endpoint.tiering?.download == .namespaceThenContent {
                    await recallInBackground(tiering, limit: 16)
                }
            }
            await serveRequests(tiering: tiering, share: engine.share)
            // Short ticks while a local change settles (the debounce); an idle endpoint wakes 4 times a
            // second, which bounds how late a change or a CLI request is noticed and keeps an idle
            // daemon's CPU low.
            try? await Task.sleep(for: journal.changeCount != seenChanges ? .milliseconds(50) : .milliseconds(250))
        }
        logger.info("stopped")
    }

    /// An engine for `endpoint`, its share paced by the network limit (the recalls this share also serves
    /// mark their reads exempt); refused when the store holds another share.
    func openEngine(_ endpoint: EndpointConfig) async throws -> SyncEngine {
        let share = try await CloudShare.open(networkLimit.wrap(StoreLocator.open(endpoint.shareURL)))
        return try SyncEngine(endpoint: endpoint, share: share, state: state, serverID: serverID, serverName: serverName)
    }

    /// A new engine for `endpoint` (its share at another store), taking over `engine`'s recall settings;
    /// the recalls of tiering and the mount use it too. Refused when the store there does not hold the
    /// log this endpoint applied (``SyncEngine/checkLog()``).
    func reopen(_ engine: SyncEngine, at endpoint: EndpointConfig, connection: ShareConnection) async throws -> SyncEngine {
        let next = try await openEngine(endpoint)
        try await next.checkLog()
        next.logChecked = true
        next.recallActiveSince = engine.recallActiveSince
        next.onStubCreated = engine.onStubCreated
        connection.connect(next.share)
        return next
    }

    /// Adds to the endpoint's activity history (what the status page plots).
    func recordActivity(_ change: (inout SyncActivity) -> Void) {
        var activity = (try? state.value(SyncActivity.self, endpoint.id, SyncActivity.stateKey)) ?? SyncActivity()
        change(&activity)
        try? state.setValue(activity, endpoint.id, SyncActivity.stateKey)
    }

    /// The endpoint's standing figures for the metrics: lag, pending, not syncing, health.
    func recordStanding(_ metrics: EndpointMetrics, cursor: UInt64, head: UInt64?) {
        let errors = (try? state.errors(endpoint.id)) ?? []
        let pending = (try? state.pendingCount(endpoint.id)) ?? 0
        let last = (try? state.value(SyncReport.self, endpoint.id, SyncReport.stateKey)) ?? nil
        let health = Gateway.health(last: last, cursor: cursor, head: head, reachable: head != nil, pending: pending, errors: errors, now: Date())
        metrics.recordStanding(cursor: cursor, head: head, pending: pending, notSyncing: errors.count, health: health)
    }

    /// Namespace-then-content: recalls a few stubs per tick, hottest first, while the daemon runs.
    func recallInBackground(_ tiering: TieringRuntime, limit: Int) async {
        guard let entries = try? state.entries(endpoint.id) else { return }
        let heat = (try? state.heatStore(endpoint.id).all()) ?? [:]
        let stubs = entries.filter { $0.value.kind == .file && $0.value.residency != .full }
            .sorted { (heat[$0.value.fileID]?.lastAccess ?? 0) > (heat[$1.value.fileID]?.lastAccess ?? 0) }
        for (path, _) in stubs.prefix(limit) {
            _ = try? await tiering.recaller.recall(path)
        }
    }

    /// Runs `tier`/`recall` requests the CLI queued for this endpoint while the daemon holds the database.
    func serveRequests(tiering: TieringRuntime?, share: CloudShare) async {
        for request in ControlRequests.pending(in: directory) where request.path == endpoint.path || request.path.hasPrefix(endpoint.path + "/") {
            let relative = request.path == endpoint.path ? "" : String(request.path.dropFirst(endpoint.path.count + 1))
            var result = Gateway.TieringResult()
            let started = Date()
            do {
                let entries = try state.entries(endpoint.id).filter { $0.value.kind == .file && (relative.isEmpty || $0.key == relative || $0.key.hasPrefix(relative + "/")) }
                if entries.isEmpty {
                    result.failures.append("'\(request.path)' is no synced file of this endpoint (not synced yet, or not a file)")
                }
                for (path, record) in entries.sorted(by: { $0.key < $1.key }) {
                    do {
                        if request.operation == "tier", record.residency == .full {
                            // A stub nothing recalls would read as zeros: tier only where fanotify recalls.
                            guard let tiering else {
                                throw GatewayError("not tiered: tiering is off for endpoint \(endpoint.id), so nothing would recall '\(path)' (turn it on with `tiergate endpoint tiering` and restart `tiergate serve`)")
                            }
                            result.bytes += try await tiering.tier(path)
                            result.files += 1
                        } else if request.operation == "recall", record.residency != .full {
                            result.bytes += try await (tiering?.recaller ?? RecallEngine(share: share, state: state, endpoint: endpoint)).recall(path)
                            result.files += 1
                        }
                    } catch {
                        result.failures.append("\(error)")
                    }
                }
            } catch {
                result.failures.append("\(error)")
            }
            result.seconds = Date().timeIntervalSince(started)
            ControlRequests.answer(request, with: result, in: directory)
        }
    }

    static func quietFor(_ journal: ChangeJournal, _ duration: Duration) -> Bool {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let elapsed = Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec) - journal.lastChangeNanoseconds
        return elapsed >= duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000
    }
}

extension Gateway {
    /// Runs every endpoint's sync service until SIGTERM or SIGINT (or SIGHUP, a reload), then stops them
    /// cleanly. `fanotifyGroups` are the groups a supervisor holds, by endpoint id (see ``DaemonSupervisor``).
    /// Under systemd (`$NOTIFY_SOCKET`) it reports readiness and pings the watchdog. `metrics` is the
    /// loopback address of the metrics and status-page listener (nil: config.json's `metrics`, if any;
    /// `off`: none). `changeJournal` chooses what watches each endpoint's tree.
    @discardableResult
    public func serve(logger: Logger, pollInterval: Duration = .seconds(1), fanotifyGroups: [UInt32: Int32] = [:],
                      metrics: String? = nil, changeJournal: ChangeJournal.Source = .automatic) async throws -> ServeOutcome {
        guard !config.endpoints.isEmpty else { throw GatewayError("no endpoints to serve; add one with `tiergate endpoint add`") }
        var listener: [any Service] = []
        if let address = metrics ?? config.metrics, address != "off" {
            DaemonMetrics.bootstrap()
            listener = [try OperationsListener(address: address, gateway: self, logger: logger)]
        }
        let notifier = SystemdNotifier()
        let readiness = ServeReadiness(endpoints: config.endpoints.count, notifier: notifier)
        // The watchdog comes first: the group stops its services in reverse order, so it pings to the end.
        let watchdog: [any Service] = notifier.flatMap { notifier in
            SystemdNotifier.watchdogInterval().map { [SystemdWatchdog(notifier: notifier, interval: $0)] } } ?? []
        // The file systems where this daemon recalls stubs through fanotify (its tiering endpoints').
        let recalling = Set(config.endpoints.filter { $0.tiering != nil }.compactMap { try? TieringPolicy.volume(of: $0.path).device })
        let services: [any Service] = watchdog + listener + config.endpoints.map {
            SyncService(state: state, directory: directory, endpoint: $0, serverID: config.serverID, serverName: config.serverName,
                        pollInterval: pollInterval, freeSpacePercent: effectiveFreeSpacePercent($0), fanotifyGroup: fanotifyGroups[$0.id],
                        networkLimit: networkLimit, changeJournal: changeJournal,
                        recalledHere: (try? TieringPolicy.volume(of: $0.path).device).map(recalling.contains) ?? true, readiness: readiness, logger: logger)
        }
        // The collector is stopped first (the group stops services in reverse order).
        let collection: [any Service] = (config.gc ?? CollectionSchedule()).intervalSeconds.map { interval in
            [CollectionService(shares: config.endpoints.map(\.shareURL), interval: interval, options: (config.gc ?? CollectionSchedule()).options,
                               networkLimit: networkLimit, logger: logger)]
        } ?? []
        let group = ServiceGroup(configuration: .init(
            services: (services + collection).map { .init(service: $0) },
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger
        ))
        // Under a supervisor, the supervisor is the daemon CLI requests wait for (it outlives workers).
        let supervised = !fanotifyGroups.isEmpty || DaemonSupervisor.isWorker
        if !supervised { ControlRequests.announceDaemon(in: directory) }
        defer { if !supervised { ControlRequests.withdrawDaemon(in: directory) } }
        let reload = ReloadRequest(group: group, logger: logger, notifier: notifier) { [directory] in _ = try directory.loadConfig() }
        defer { reload.stop() }
        try await group.run()
        return reload.isRequested ? .reloadRequested : .stopped
    }
}
