import Foundation

/// An endpoint's sync activity of the last 24 hours, by hour, and its last sessions that did work: what
/// the daemon's status page plots. The daemon keeps it in the endpoint's database (`activity`).
public struct SyncActivity: Codable, Sendable, Equatable {
    /// What happened in one hour.
    public struct Hour: Codable, Sendable, Equatable {
        /// The hour's start (seconds since the epoch, a multiple of 3600).
        public var start: Int64
        /// Sync passes, and of them the ones that failed.
        public var passes = 0
        public var failedPasses = 0
        /// Files and bytes uploaded and downloaded.
        public var uploadedFiles = 0
        public var uploadedBytes: Int64 = 0
        public var downloadedFiles = 0
        public var downloadedBytes: Int64 = 0
        /// Recalls and their bytes.
        public var recalls = 0
        public var recallBytes: Int64 = 0
    }

    /// One session that did work (or failed).
    public struct Session: Codable, Sendable, Equatable {
        /// When it started (seconds since the epoch).
        public var started: Double
        /// Seconds taken.
        public var seconds: Double
        /// What set it off (`local change`, `cloud change`, …).
        public var trigger: String
        /// The pass's one-line summary.
        public var summary: String
        /// True when it failed.
        public var failed: Bool
    }

    /// The hours, oldest first, at most 24.
    public var hours: [Hour] = []
    /// The last sessions, newest last, at most ``sessionLimit``.
    public var sessions: [Session] = []

    /// How many sessions are kept.
    public static let sessionLimit = 20
    /// The database key.
    static let stateKey = "activity"

    /// No activity yet.
    public init() {}

    /// Adds one pass.
    public mutating func record(_ report: SyncReport, trigger: String, now: Date = Date()) {
        let failed = report.result != "success"
        update(now) { hour in
            hour.passes += 1
            if failed { hour.failedPasses += 1 }
            hour.uploadedFiles += report.uploaded
            hour.uploadedBytes += report.uploadedBytes
            hour.downloadedFiles += report.downloaded + report.stubsCreated
            hour.downloadedBytes += report.downloadedBytes
        }
        let didWork = report.commits > 0 || report.downloaded > 0 || report.stubsCreated > 0 || report.appliedRemovals > 0
        if didWork || failed || trigger == "start" {
            sessions.append(Session(started: report.started, seconds: report.seconds, trigger: trigger, summary: report.summary, failed: failed))
            if sessions.count > Self.sessionLimit { sessions.removeFirst(sessions.count - Self.sessionLimit) }
        }
    }

    /// Adds recalls.
    public mutating func recordRecalls(_ count: Int, bytes: Int64, now: Date = Date()) {
        guard count > 0 || bytes > 0 else { return }
        update(now) { hour in
            hour.recalls += count
            hour.recallBytes += bytes
        }
    }

    /// The 24 hours ending with the one holding `now`, oldest first, quiet hours included (for plots).
    public func last24Hours(now: Date = Date()) -> [Hour] {
        let current = Self.hourStart(now)
        let byStart = Dictionary(hours.map { ($0.start, $0) }, uniquingKeysWith: { $1 })
        return (0..<24).reversed().map { back in
            let start = current - Int64(back) * 3600
            return byStart[start] ?? Hour(start: start)
        }
    }

    private mutating func update(_ now: Date, _ body: (inout Hour) -> Void) {
        let start = Self.hourStart(now)
        if hours.last?.start != start { hours.append(Hour(start: start)) }
        body(&hours[hours.count - 1])
        hours.removeAll { $0.start <= start - 24 * 3600 }
    }

    static func hourStart(_ date: Date) -> Int64 { Int64(date.timeIntervalSince1970) / 3600 * 3600 }
}
