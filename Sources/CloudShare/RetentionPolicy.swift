import Backends
import Foundation

/// Which versions of a share the garbage collector keeps (`gc/retention.json`, set with `tiergate share
/// retention`). A version is the namespace right after one log sequence. Rules like `restic forget`:
/// every version within a window, and the last version of each of the newest N days, weeks and months
/// that have commits. The log head is always kept, and so is every version a registered server may still
/// need (see ``RetainedVersions`` and docs/gc.md). With no rule set, every version is kept.
public struct RetentionPolicy: Codable, Sendable, Equatable {
    /// Keep every version that was the share's state at some time within this many seconds before now.
    public var keepWithin: Double?
    /// Keep the last version of each of the newest this many days (UTC) that have commits.
    public var keepDaily: Int?
    /// Keep the last version of each of the newest this many ISO weeks (UTC) that have commits.
    public var keepWeekly: Int?
    /// Keep the last version of each of the newest this many months (UTC) that have commits.
    public var keepMonthly: Int?

    /// The object key of the policy.
    public static let key = "gc/retention.json"

    /// A policy; no rule at all keeps every version.
    public init(keepWithin: Double? = nil, keepDaily: Int? = nil, keepWeekly: Int? = nil, keepMonthly: Int? = nil) {
        self.keepWithin = keepWithin
        self.keepDaily = keepDaily
        self.keepWeekly = keepWeekly
        self.keepMonthly = keepMonthly
    }

    /// True when no rule is set: every version of every file is kept (the default).
    public var keepsEverything: Bool { keepWithin == nil && keepDaily == nil && keepWeekly == nil && keepMonthly == nil }

    /// Why the policy cannot be used, or nil.
    public var problem: String? {
        if let keepWithin, !(keepWithin >= 0 && keepWithin.isFinite) { return "keep-within must be a duration of zero or more" }
        for (name, count) in [("keep-daily", keepDaily), ("keep-weekly", keepWeekly), ("keep-monthly", keepMonthly)] {
            if let count, count < 1 { return "\(name) must be 1 or more" }
        }
        return nil
    }

    /// The share's policy in `store`: keep everything when none is set. An unreadable policy is an error
    /// (the collector then deletes nothing: what it should keep is unknown).
    public static func load(from store: any ObjectStore) async throws -> RetentionPolicy {
        let bytes: [UInt8]
        do {
            bytes = try await store.get(key)
        } catch let error as StoreError where error.code == .notFound {
            return RetentionPolicy()
        }
        do {
            let policy = try JSONDecoder().decode(RetentionPolicy.self, from: Data(bytes))
            if let problem = policy.problem { throw ShareError(.corrupt, share: store.displayName, object: key, cause: "invalid retention policy: \(problem)") }
            return policy
        } catch let error as DecodingError {
            throw ShareError(.corrupt, share: store.displayName, object: key, cause: "unreadable retention policy: \(error)")
        }
    }

    /// Stores this policy in `store` (a policy that keeps everything removes the object).
    public func save(to store: any ObjectStore) async throws {
        if keepsEverything {
            try await store.delete(Self.key)
            return
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try await store.put(Self.key, bytes: Array(try encoder.encode(self)))
    }

    /// One version of the share: a log sequence and its commit's time (its author's clock).
    public struct Version: Sendable, Equatable {
        /// The sequence.
        public var sequence: UInt64
        /// The commit's time (seconds since 1970).
        public var time: Double

        /// A version.
        public init(sequence: UInt64, time: Double) {
            self.sequence = sequence
            self.time = time
        }
    }

    /// The versions this policy keeps among `versions` (the log, in sequence order) at `now`, when
    /// registered servers may still need every version from `heldFrom` on (nil: no server holds any).
    public func retained(_ versions: [Version], now: Double, heldFrom: UInt64?) -> RetainedVersions {
        let head = versions.last?.sequence ?? 0
        guard !keepsEverything else { return RetainedVersions(head: head, from: 0, selected: []) }
        // The window: every version from the one before the first commit (in log order) stamped after the
        // window's start. A restore at any time T within the window reads the log through its last commit
        // stamped at or before T, which is never older; and a commit stamped early by a slow clock never
        // moves the window past newer versions (a fast clock only keeps more).
        var from = head
        if let keepWithin {
            let start = now - keepWithin
            from = versions.first { $0.time > start }.map { $0.sequence - 1 } ?? head
        }
        if let heldFrom { from = min(from, heldFrom) }
        var selected: Set<UInt64> = []
        let calendar: Calendar = {
            var calendar = Calendar(identifier: .iso8601)
            calendar.timeZone = TimeZone(identifier: "UTC")!
            return calendar
        }()
        let rules: [(count: Int?, bucket: (Date) -> [Int])] = [
            (keepDaily, { let parts = calendar.dateComponents([.year, .month, .day], from: $0); return [parts.year!, parts.month!, parts.day!] }),
            (keepWeekly, { let parts = calendar.dateComponents([.yearForWeekOfYear, .weekOfYear], from: $0); return [parts.yearForWeekOfYear!, parts.weekOfYear!] }),
            (keepMonthly, { let parts = calendar.dateComponents([.year, .month], from: $0); return [parts.year!, parts.month!] }),
        ]
        for rule in rules {
            guard var left = rule.count else { continue }
            // Newest first, as `restic forget`: the first version seen of a new bucket is that bucket's last.
            var lastBucket: [Int]?
            for version in versions.reversed() where left > 0 {
                let bucket = rule.bucket(Date(timeIntervalSince1970: version.time))
                guard bucket != lastBucket else { continue }
                lastBucket = bucket
                left -= 1
                if version.sequence < from { selected.insert(version.sequence) }
            }
        }
        return RetainedVersions(head: head, from: from, selected: selected)
    }
}

/// The versions of a share a garbage collector run keeps: every sequence from ``from`` through the log
/// head, and the ``selected`` ones before it.
public struct RetainedVersions: Sendable, Equatable {
    /// The log head (always kept).
    public var head: UInt64
    /// Every version from this sequence on is kept (0: every version).
    public var from: UInt64
    /// Versions before ``from`` kept by the daily, weekly and monthly rules.
    public var selected: Set<UInt64>

    /// A set of kept versions.
    public init(head: UInt64, from: UInt64, selected: Set<UInt64>) {
        self.head = head
        self.from = min(from, head)
        self.selected = selected
    }

    /// Whether the version at `sequence` is kept.
    public func contains(_ sequence: UInt64) -> Bool { sequence >= from || selected.contains(sequence) }

    /// True when every version is kept.
    public var keepsEverything: Bool { from == 0 }
}
