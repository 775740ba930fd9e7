import Backends
import Foundation

extension GarbageCollector {
    /// What log compaction did in a run (dry run: would do).
    public struct Compaction: Codable, Sendable, Equatable {
        /// The snapshot the share's history begins at after the run (0: the log begins at its first record).
        public var historyBegins: UInt64 = 0
        /// Log records deleted (their versions are outside the retention and no server holds them).
        public var recordsDeleted = 0
        /// Their bytes.
        public var recordsBytes: Int64 = 0
        /// Snapshots older than the one the history begins at, deleted.
        public var snapshotsDeleted = 0
        /// Their bytes.
        public var snapshotsBytes: Int64 = 0
    }

    /// Log compaction, under a retention policy: the newest snapshot older than every kept version (the
    /// window, the versions registered servers hold, those the rules chose) becomes where the share's
    /// history begins; the records up to it and the older snapshots are deleted. Kept versions are rebuilt
    /// from that snapshot and the records after it, and every reader of the log follows
    /// ``CommitLog/base(firstRecord:snapshots:)``: records go oldest first, then the older snapshots, so a
    /// run killed anywhere leaves a history that begins at that snapshot (the argument is in docs/gc.md).
    /// The head record is never deleted (the snapshot is older than the head), so writers keep appending.
    func compactLog(_ mark: Mark, progress: (@Sendable (Progress) -> Void)?, lease: HeldLease?) async throws -> Compaction {
        var done = Compaction()
        let snapshots = mark.snapshots, logRecords = mark.records
        done.historyBegins = CommitLog.base(firstRecord: logRecords.first?.sequence, snapshots: snapshots.map(\.sequence)) ?? 0
        guard !mark.policy.keepsEverything, !mark.retained.keepsEverything else { return done }
        let oldestKept = min(mark.retained.from, mark.retained.selected.min() ?? mark.retained.from)
        guard let base = snapshots.last(where: { $0.sequence < oldestKept && $0.sequence < mark.head })?.sequence else { return done }
        let records = logRecords.filter { $0.sequence <= base }
        let older = snapshots.filter { $0.sequence < base }
        guard !records.isEmpty || !older.isEmpty else { return done }
        // The snapshot must be readable and be the namespace at its sequence: the history begins there.
        let key = CloudShare.snapshotKey(base)
        let snapshot = try await CloudShare.readSnapshot(CompactNamespace.self, key: key, from: store,
                                                         consequence: "the log was not compacted (see `tiergate share verify`)")
        guard snapshot.sequence == base else {
            throw ShareError(.corrupt, share: name, object: key, cause: "the snapshot says sequence \(snapshot.sequence); the log was not compacted (see `tiergate share verify`)")
        }
        done.historyBegins = base
        let total = records.count + older.count
        var count = 0
        func step() {
            count += 1
            if count % 256 == 0 || count == total { progress?(Progress(phase: "compacting the log", done: count, total: total)) }
        }
        for record in records {
            try Task.checkCancellation()
            if count % 256 == 0 { try await lease?.keep() }
            if !options.dryRun { try await store.delete(CommitLog.key(record.sequence)) }
            done.recordsDeleted += 1
            done.recordsBytes += record.size
            step()
        }
        for snapshot in older {
            try Task.checkCancellation()
            if !options.dryRun { try await store.delete(CloudShare.snapshotKey(snapshot.sequence)) }
            done.snapshotsDeleted += 1
            done.snapshotsBytes += snapshot.size
            step()
        }
        return done
    }
}
