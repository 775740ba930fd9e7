import Metrics
import Synchronization
import Telemetry

/// One endpoint's metric handles, made once when its service starts (label: the endpoint id only).
final class EndpointMetrics: Sendable {
    private let uploadedFiles, uploadedBytes, downloadedFiles, downloadedBytes: Counter
    private let sessionsSucceeded, sessionsFailed, commits, commitRetries: Counter
    private let lastSync, filesNotSyncing, pendingChanges, cursorLag, health: Gauge
    private let recallsSucceeded, recallsFailed, recallBytes, cacheHits: Counter
    private let hitRate, cacheBytes, tieredBytes, stubs, lowDisk, fanotifyQueue: Gauge
    private let byAccess: [Gauge]
    private let mountRequests: Counter
    private let exportedMountRequests = Mutex(0)
    /// The recall figures last exported (the engine keeps totals; counters take the difference).
    private let exported = Mutex(RecallEngine.Figures())

    init(endpoint: UInt32) {
        let id = ("endpoint", String(endpoint))
        func counter(_ name: String, _ extra: (String, String)...) -> Counter { Counter(label: name, dimensions: [id] + extra) }
        func gauge(_ name: String, _ extra: (String, String)...) -> Gauge { Gauge(label: name, dimensions: [id] + extra) }
        uploadedFiles = counter(MetricName.syncFiles, ("direction", "upload"))
        uploadedBytes = counter(MetricName.syncBytes, ("direction", "upload"))
        downloadedFiles = counter(MetricName.syncFiles, ("direction", "download"))
        downloadedBytes = counter(MetricName.syncBytes, ("direction", "download"))
        sessionsSucceeded = counter(MetricName.syncSessions, ("result", "success"))
        sessionsFailed = counter(MetricName.syncSessions, ("result", "error"))
        commits = counter(MetricName.commits)
        commitRetries = counter(MetricName.commitRetries)
        lastSync = gauge(MetricName.lastSync)
        filesNotSyncing = gauge(MetricName.filesNotSyncing)
        pendingChanges = gauge(MetricName.pendingChanges)
        cursorLag = gauge(MetricName.cursorLag)
        health = gauge(MetricName.health)
        recallsSucceeded = counter(MetricName.recalls, ("result", "success"))
        recallsFailed = counter(MetricName.recalls, ("result", "error"))
        recallBytes = counter(MetricName.recallBytes)
        cacheHits = counter(MetricName.cacheHits)
        hitRate = gauge(MetricName.cacheHitRate)
        cacheBytes = gauge(MetricName.cacheBytes)
        tieredBytes = gauge(MetricName.tieredBytes)
        stubs = gauge(MetricName.stubs)
        lowDisk = gauge(MetricName.lowDisk)
        fanotifyQueue = gauge(MetricName.fanotifyQueue)
        mountRequests = counter(MetricName.mountRequests)
        byAccess = Gateway.accessBuckets.map { gauge(MetricName.cacheBytesByAccess, ("age", $0.days.map { "le_\($0)d" } ?? "older")) }
    }

    /// A finished pass (failed passes too).
    func recordPass(_ report: SyncReport) {
        uploadedFiles.increment(by: report.uploaded)
        uploadedBytes.increment(by: Int(report.uploadedBytes))
        downloadedFiles.increment(by: report.downloaded + report.stubsCreated)
        downloadedBytes.increment(by: Int(report.downloadedBytes))
        (report.result == "success" ? sessionsSucceeded : sessionsFailed).increment()
        commits.increment(by: report.commits)
        commitRetries.increment(by: report.commitRetries)
        lastSync.record(report.started + report.seconds)
    }

    /// The cursor's lag behind the share's head (nil: unknown), after each poll of the head.
    func recordLag(cursor: UInt64, head: UInt64?) {
        if let head { cursorLag.record(Double(head > cursor ? head - cursor : 0)) }
    }

    /// The endpoint's standing figures, after a pass.
    func recordStanding(cursor: UInt64, head: UInt64?, pending: Int, notSyncing: Int, health: String) {
        recordLag(cursor: cursor, head: head)
        pendingChanges.record(pending)
        filesNotSyncing.record(notSyncing)
        self.health.record(Gateway.Health.level(health))
    }

    /// The recall engine's totals; returns what is new since the last call (for the activity history).
    @discardableResult
    func recordRecalls(_ figures: RecallEngine.Figures, lowOnSpace: Bool, queued: Int?) -> (recalls: Int, bytes: Int64) {
        let previous = exported.withLock { previous in
            defer { previous = figures }
            return previous
        }
        let new = (recalls: max(0, figures.recalls - previous.recalls), failures: max(0, figures.failures - previous.failures),
                   bytes: max(0, figures.bytes - previous.bytes), hits: max(0, figures.hits - previous.hits))
        recallsSucceeded.increment(by: new.recalls)
        recallsFailed.increment(by: new.failures)
        recallBytes.increment(by: Int(new.bytes))
        cacheHits.increment(by: new.hits)
        if let rate = figures.hitRate { hitRate.record(rate) }
        lowDisk.record(lowOnSpace ? 1 : 0)
        if let queued { fanotifyQueue.record(queued) }
        return (new.recalls, new.bytes)
    }

    /// Requests the endpoint's mount has served since it was mounted.
    func recordMount(requests: Int?) {
        guard let requests else { return }
        let new = exportedMountRequests.withLock { exported in
            defer { exported = requests }
            return requests >= exported ? requests - exported : requests    // a new mount counts from 0
        }
        mountRequests.increment(by: new)
    }

    /// Stubs and cache, from the database (a scan: the daemon calls it after passes, at most once a minute).
    func recordTiering(_ figures: Gateway.TieringFigures) {
        cacheBytes.record(figures.cacheSize)
        tieredBytes.record(figures.sizeTiered)
        stubs.record(figures.stubs)
        for (gauge, bucket) in zip(byAccess, figures.cacheByLastAccess) { gauge.record(bucket.bytes) }
    }
}
