import Backends
import CLinux
import Foundation
import Hashing

/// Deletes packs no commit needs (`tiergate share gc`), in two phases so that a writer deduplicating
/// against a doomed chunk never commits a reference to a deleted one (the argument is in docs/gc.md).
///
/// One run, holding the share's lease (``CollectionLease``):
/// 1. marks every chunk a kept version references: by default every commit at any sequence of the log
///    and every snapshot; under the share's ``RetentionPolicy``, the namespace at every sequence of its
///    window, at every sequence a registered server may still hold, at those its rules choose, and at
///    the head (see ``mark(store:now:progress:)``);
/// 2. finishes pending records older than the safety interval: each of their packs that no kept version
///    needs as it is now (no marked chunk, or each marked chunk also in an indexed pack no record names)
///    loses its index segment, then its pack object; the record moves to `gc/deleted/` (kept as a
///    tombstone for writers whose index predates the deletion);
/// 3. with ``Options/repackBelow``, copies the needed chunks of sparse packs into new packs first;
/// 4. records the packs no kept version needs (and the repacked ones) that are older than the grace
///    period in a new pending record (`gc/pending/<id>.json`); writers stop deduplicating against them.
///
/// Every step is idempotent, so a run killed (or cancelled) anywhere leaves a state the next run
/// finishes. Partly used packs stay unless repacked; their unused bytes are reported.
public struct GarbageCollector: Sendable {
    /// How the collector runs.
    public struct Options: Sendable {
        /// Report what would be recorded and deleted, and change nothing (no lease, no record).
        public var dryRun = false
        /// Seconds a pack must have existed before it is marked for deletion: a writer may be about to
        /// commit a pack it just uploaded.
        public var grace: Double = 86_400
        /// Seconds between marking packs for deletion and deleting them; writers read the records at
        /// least this often (their check is good for half of it).
        public var safetyInterval: Double = 3_600
        /// Seconds the collector's lease lasts without renewal (a killed collector's lease is taken over after it).
        public var leaseDuration: Double = 600
        /// Repack packs whose chunks a kept version needs add up to less than this fraction of their chunk
        /// bytes (0.5: less than half): their needed chunks are copied into new packs, and the old pack is
        /// recorded for deletion like garbage. Nil: no repacking.
        public var repackBelow: Double?
        /// The clock (tests move it).
        public var now: @Sendable () -> Date = { Date() }

        /// The defaults: 24 h grace, 1 h safety interval, 10 min lease.
        public init() {}
    }

    /// A count of packs and their bytes.
    public struct Tally: Codable, Sendable, Equatable {
        /// Pack objects.
        public var packs = 0
        /// Their bytes.
        public var bytes: Int64 = 0

        /// A tally of `packs` packs holding `bytes`.
        public init(packs: Int = 0, bytes: Int64 = 0) {
            self.packs = packs
            self.bytes = bytes
        }

        mutating func add(_ size: Int64) {
            packs += 1
            bytes += size
        }
    }

    /// A pack some of whose chunks no commit references (kept: repacking is later work).
    public struct PartlyUsedPack: Codable, Sendable, Equatable {
        /// The pack's key.
        public var pack: String
        /// The pack object's size.
        public var bytes: Int64
        /// Bytes of its chunks that no commit references.
        public var unusedBytes: Int64
    }

    /// Old packs that no longer serve a kept version alone and are recorded for deletion although some
    /// of their chunks are needed: a copy of each of those is in a pack no record names.
    public struct Repacked: Codable, Sendable, Equatable {
        /// Packs recorded.
        public var packs = 0
        /// Their bytes.
        public var bytes: Int64 = 0
        /// Bytes of needed chunks this run copied into new packs (the rest already had copies).
        public var copiedBytes: Int64 = 0
        /// New packs written.
        public var newPacks = 0
    }

    /// What a run found and did.
    public struct Report: Codable, Sendable {
        /// The share, as its store prints it.
        public var share: String
        /// True when nothing was changed.
        public var dryRun: Bool
        /// The log head the mark was taken at.
        public var logHead: UInt64 = 0
        /// Distinct chunks referenced by some kept version or snapshot.
        public var markedChunks = 0
        /// The share's retention policy.
        public var retention = RetentionPolicy()
        /// Every version from this sequence through the head was kept (0: every version).
        public var keptFrom: UInt64 = 0
        /// Versions before ``keptFrom`` kept by the daily, weekly and monthly rules.
        public var keptSelected = 0
        /// The registered endpoint that holds versions the policy alone would not keep, if any.
        public var heldBy: String?
        /// Every pack object in the store.
        public var packs = Tally()
        /// Packs deleted by this run (dry run: that would be).
        public var deleted = Tally()
        /// Packs this run marked for deletion in a new pending record (dry run: that would be).
        public var markedPending = Tally()
        /// Packs of earlier pending records whose safety interval has not passed yet.
        public var awaitingDeletion = Tally()
        /// Packs holding at least one chunk some commit references.
        public var keptReferenced = Tally()
        /// Unreferenced packs younger than the grace period.
        public var keptYoung = Tally()
        /// Packs whose chunk list could not be read (index segment and trailer): kept, in doubt.
        public var keptUnreadable = Tally()
        /// Packs of pending records that a commit referenced since they were recorded: kept.
        public var keptReferencedAgain = Tally()
        /// Packs recorded for deletion whose needed chunks have copies elsewhere (repacking, or duplicates).
        public var repacked = Repacked()
        /// Referenced packs that also hold unreferenced chunks.
        public var partlyUsed = Tally()
        /// Bytes of unreferenced chunks inside partly used packs.
        public var partlyUsedUnusedBytes: Int64 = 0
        /// The partly used packs, most unused bytes first.
        public var partlyUsedPacks: [PartlyUsedPack] = []
        /// Pending records this run finished.
        public var recordsFinished = 0
        /// The pending record this run wrote, if any.
        public var pendingRecord: String?
        /// When the earliest waiting pending record becomes due (seconds since 1970), if any.
        public var nextDeletionDue: Double?
        /// Log records and snapshots deleted by log compaction (dry run: that would be).
        public var compaction = Compaction()
        /// What writers stopped mid-write left behind, older than the grace period, removed (temporary
        /// files, incomplete multipart uploads); a dry run removes nothing.
        public var abandonedWrites = 0
    }

    /// Where a run is.
    public struct Progress: Sendable {
        /// What it does.
        public var phase: String
        /// Items done in this phase.
        public var done: Int
        /// Items in this phase.
        public var total: Int
    }

    /// The store holding the share.
    public let store: any ObjectStore
    /// How to run.
    public let options: Options

    /// A collector of the share in `store`.
    public init(store: any ObjectStore, options: Options = Options()) {
        self.store = store
        self.options = options
    }

    var name: String { store.displayName }

    /// One pack's chunks against the mark.
    struct PackState: Sendable {
        var size: Int64
        var modified: Date?
        /// nil: the chunk list could not be read.
        var referencedChunks: Int?
        var unusedBytes: Int64 = 0
        /// Bytes of all its chunks.
        var chunkBytes: Int64 = 0
        /// Its marked chunks, for a pack known from its trailer only (an indexed pack's are in the survey's
        /// owners: one list of every marked chunk is enough at a million files).
        var marked: [Digest32] = []
        /// Whether its chunk list came from its index segment (readers and writers find its chunks by it).
        var indexed = false
    }

    /// The packs of the survey, and for each marked chunk the indexed packs holding it: the first found
    /// in ``owners`` (beside the marked chunks, which replace the mark's set), the others, for the few
    /// chunks stored more than once (racing writers, repacking), in ``moreHolders``.
    struct Survey: Sendable {
        var states: [Digest32: PackState] = [:]
        /// Indexed packs by number (from 1, in the order surveyed).
        var packs: [Digest32] = [Digest32()]
        var numbers: [Digest32: UInt32] = [:]
        /// Every marked chunk (the mark's array, ascending and distinct: found by binary search).
        private let marked: ChunkMark
        /// For each chunk of ``marked``, at the same index, the number of the first indexed pack found
        /// holding it (0: none): 4 bytes a chunk beside the mark's 32, where a dictionary of chunk to
        /// owner took 54–108 (a power-of-two table at most three quarters full: 72 MiB at a million).
        private var owners: [UInt32]
        /// The other indexed packs holding a marked chunk.
        var moreHolders: [Digest32: [UInt32]] = [:]
        /// Per indexed pack number: how many marked chunks no other indexed pack holds.
        var sole: [UInt32: Int] = [:]
        /// Per indexed pack number: its marked chunks that other indexed packs hold too.
        var shared: [UInt32: [Digest32]] = [:]

        /// A survey of the chunks of `marked`, which it takes (the caller's mark is left empty, so the
        /// chunks are held once).
        init(marked: inout ChunkMark) {
            self.marked = marked.take()
            owners = Array(repeating: 0, count: self.marked.count)
        }

        /// The index of `chunk` in ``marked``; nil when it is not marked.
        private func index(_ chunk: Digest32) -> Int? { marked.index(of: chunk) }

        /// Numbers the indexed `pack` (its chunks are then added with ``add(_:heldBy:)``).
        mutating func number(_ pack: Digest32) -> UInt32 {
            let number = UInt32(packs.count)
            packs.append(pack)
            numbers[pack] = number
            return number
        }

        /// Whether `chunk` is marked.
        func isMarked(_ chunk: Digest32) -> Bool { index(chunk) != nil }

        /// Records that the indexed pack numbered `number` holds the marked `chunk`.
        mutating func add(_ chunk: Digest32, heldBy number: UInt32) {
            guard let index = index(chunk) else { return }
            let owner = owners[index]
            if owner == 0 {
                owners[index] = number
            } else if owner != number, !(moreHolders[chunk]?.contains(number) ?? false) {
                moreHolders[chunk, default: []].append(number)
            }
        }

        /// Counts, once every pack is surveyed, what each indexed pack alone holds.
        mutating func finish() {
            for index in owners.indices where owners[index] != 0 && moreHolders[marked.ids[index]] == nil { sole[owners[index], default: 0] += 1 }
            for (chunk, more) in moreHolders {
                for number in [index(chunk).map { owners[$0] } ?? 0] + more { shared[number, default: []].append(chunk) }
            }
        }

        /// Whether no indexed pack other than `pack` and those in `collecting` holds `chunk`: only `pack`
        /// keeps it readable.
        func isOnlyHere(_ chunk: Digest32, in pack: Digest32, collecting: Set<Digest32>) -> Bool {
            guard let index = index(chunk), case let owner = owners[index], owner != 0 else { return true }
            return !([owner] + (moreHolders[chunk] ?? [])).contains { packs[Int($0)] != pack && !collecting.contains(packs[Int($0)]) }
        }

        /// Whether some marked chunk of `pack` has no copy in another indexed pack outside `collecting`:
        /// then only this pack keeps it readable, and it may not go (docs/gc.md, Repacking).
        func keepsAChunkAlone(_ pack: Digest32, collecting: Set<Digest32>) -> Bool {
            guard let number = numbers[pack] else {
                return (states[pack]?.marked ?? []).contains { isOnlyHere($0, in: pack, collecting: collecting) }
            }
            return (sole[number] ?? 0) > 0 || (shared[number] ?? []).contains { isOnlyHere($0, in: pack, collecting: collecting) }
        }

        /// How many distinct marked chunks only `pack` keeps readable (see ``keepsAChunkAlone(_:collecting:)``).
        func chunksKeptAlone(_ pack: Digest32, collecting: Set<Digest32>) -> Int {
            guard let number = numbers[pack] else {
                return Set((states[pack]?.marked ?? []).filter { isOnlyHere($0, in: pack, collecting: collecting) }).count
            }
            return (sole[number] ?? 0) + (shared[number] ?? []).filter { isOnlyHere($0, in: pack, collecting: collecting) }.count
        }
    }

    /// Runs the collector; throws ``CollectorBusy`` when another one holds the lease, and a
    /// ``ShareError`` when the log or a snapshot cannot be read completely (then nothing is deleted).
    public func run(progress: (@Sendable (Progress) -> Void)? = nil) async throws -> Report {
        try await checkManifest()
        let lease = options.dryRun ? nil : try await HeldLease.acquire(store, duration: options.leaseDuration, now: options.now)
        do {
            let report = try await collect(lease: lease, progress: progress)
            await lease?.release()
            return report
        } catch {
            await lease?.release()
            throw error
        }
    }

    private func collect(lease: HeldLease?, progress: (@Sendable (Progress) -> Void)?) async throws -> Report {
        var report = Report(share: name, dryRun: options.dryRun)
        var pending = try await records(prefix: "gc/pending/")
        let finished = Set(try await store.listAll(prefix: "gc/deleted/").compactMap { CollectionRecord.id(ofKey: $0.key) })
        // A run killed after writing a deleted record but before removing its pending one.
        for record in pending where finished.contains(record.id) && !options.dryRun {
            try await store.delete(CollectionRecord.pendingKey(record.id))
        }
        pending.removeAll { finished.contains($0.id) }

        // Which records are due is decided before the log is read: the mark then includes every commit
        // appended up to the end of the safety interval (the argument in docs/gc.md needs this order).
        let start = options.now().timeIntervalSince1970
        func isDue(_ record: CollectionRecord) -> Bool {
            let wait = record.packs.contains { $0.modified == nil } ? max(record.safetyInterval, record.grace) : record.safetyInterval
            return start >= record.created + wait
        }
        let due = pending.filter(isDue)
        let waiting = pending.filter { !isDue($0) }
        report.nextDeletionDue = waiting.map { $0.created + ($0.packs.contains { $0.modified == nil } ? max($0.safetyInterval, $0.grace) : $0.safetyInterval) }.min()

        var mark = try await Self.mark(store: store, now: start, progress: progress)
        report.logHead = mark.head
        report.markedChunks = mark.chunks.count
        report.retention = mark.policy
        report.keptFrom = mark.retained.from
        report.keptSelected = mark.retained.selected.count
        report.heldBy = mark.heldBy
        // The survey takes the mark's array of chunks, so they are never held twice.
        let survey = try await survey(marked: &mark.chunks, progress: progress)
        let states = survey.states

        let duePacks = Set(due.flatMap(\.packIDs))
        let waitingPacks = Set(waiting.flatMap(\.packIDs))
        // Packs that will be gone or may be: never counted as another copy of a chunk.
        var collecting = duePacks.union(waitingPacks)
        var nominees: [CollectionRecord.Pack] = []
        var sparse: [Digest32] = []
        for (pack, state) in states.sorted(by: { $0.key.hex < $1.key.hex }) {
            report.packs.add(state.size)
            guard let referenced = state.referencedChunks else {
                report.keptUnreadable.add(state.size)
                continue
            }
            let young = state.modified.map { start - $0.timeIntervalSince1970 < options.grace } ?? false
            // A pack whose needed chunks all have copies elsewhere (a repacked pack whose run was killed
            // before its record, or duplicates of racing writers) is garbage like an unreferenced one.
            let needed = referenced > 0 && survey.keepsAChunkAlone(pack, collecting: collecting)
            if duePacks.contains(pack) && !needed { continue } // deleted below
            if needed {
                report.keptReferenced.add(state.size)
                let recorded = duePacks.contains(pack) || waitingPacks.contains(pack)
                if recorded { report.keptReferencedAgain.add(state.size) }
                if state.unusedBytes > 0 {
                    report.partlyUsed.add(state.size)
                    report.partlyUsedUnusedBytes += state.unusedBytes
                    report.partlyUsedPacks.append(PartlyUsedPack(pack: PackFormat.key(pack), bytes: state.size, unusedBytes: state.unusedBytes))
                    if let below = options.repackBelow, state.indexed, !young, !recorded,
                       Double(state.chunkBytes - state.unusedBytes) < below * Double(state.chunkBytes) {
                        sparse.append(pack)
                    }
                }
                continue
            }
            if waitingPacks.contains(pack) {
                report.awaitingDeletion.add(state.size)
            } else if young {
                report.keptYoung.add(state.size)
            } else {
                nominees.append(CollectionRecord.Pack(id: pack.hex, bytes: state.size, modified: state.modified?.timeIntervalSince1970,
                                                      neededBytes: referenced > 0 ? state.chunkBytes - state.unusedBytes : nil))
                collecting.insert(pack)
                if referenced > 0 {
                    report.repacked.packs += 1
                    report.repacked.bytes += state.size
                } else {
                    report.markedPending.add(state.size)
                }
            }
        }
        report.partlyUsedPacks.sort { ($0.unusedBytes, $1.pack) > ($1.unusedBytes, $0.pack) }
        if !sparse.isEmpty {
            try await lease?.keep()
            nominees += try await repack(sparse, survey: survey, collecting: &collecting, report: &report, progress: progress)
        }

        // Phase two: delete what the records named and the log still does not reference.
        let deletions = due.reduce(0) { $0 + $1.packs.count }
        var done = 0
        for record in due {
            try await lease?.keep()
            var deleted: [String] = []
            for pack in record.packs {
                try Task.checkCancellation()
                done += 1
                progress?(Progress(phase: "deleting packs", done: done, total: deletions))
                guard let id = Digest32(hex: pack.id) else { continue }
                if let state = states[id] {
                    // Unreadable, or a chunk a kept version needs has no copy outside the records: kept.
                    guard let referenced = state.referencedChunks,
                          referenced == 0 || !survey.keepsAChunkAlone(id, collecting: collecting.union(duePacks)) else { continue }
                }
                if states[id] == nil, (try? await store.head(IndexSegment.key(id))) != nil {
                    // The pack is gone but its segment is not: never this collector's order (segment
                    // first), so someone else's damage for `share verify` to report. Left alone.
                    continue
                }
                if !options.dryRun {
                    // The index segment first: a pack without one is never deduplicated against, and
                    // its chunks stay readable from its trailer until the pack goes too.
                    try await store.delete(IndexSegment.key(id))
                    try await store.delete(PackFormat.key(id))
                }
                deleted.append(pack.id)
                report.deleted.add(states[id]?.size ?? 0)
            }
            if !options.dryRun {
                var finishedRecord = record
                finishedRecord.completed = options.now().timeIntervalSince1970
                finishedRecord.deleted = deleted
                try await store.put(CollectionRecord.deletedKey(record.id), bytes: try finishedRecord.encoded())
                try await store.delete(CollectionRecord.pendingKey(record.id))
            }
            report.recordsFinished += 1
        }

        // Phase one: record the new garbage; nothing of it is deleted before the safety interval.
        if !nominees.isEmpty && !options.dryRun {
            try Task.checkCancellation()
            try await lease?.keep()
            let record = CollectionRecord(id: UUID().uuidString.lowercased(), created: options.now().timeIntervalSince1970,
                                          safetyInterval: options.safetyInterval, grace: options.grace, packs: nominees)
            try await store.put(CollectionRecord.pendingKey(record.id), bytes: try record.encoded())
            report.pendingRecord = CollectionRecord.pendingKey(record.id)
            let wait = nominees.contains { $0.modified == nil } ? max(record.safetyInterval, record.grace) : record.safetyInterval
            report.nextDeletionDue = min(report.nextDeletionDue ?? .infinity, record.created + wait)
        }

        try await lease?.keep()
        report.compaction = try await compactLog(mark, progress: progress, lease: lease)
        // A write still in flight is younger than the grace period, as an unreferenced pack still to be
        // committed is.
        if !options.dryRun {
            try await lease?.keep()
            report.abandonedWrites = try await store.removeAbandonedWrites(olderThan: options.grace)
        }
        return report
    }

    private func checkManifest() async throws {
        do {
            if let problem = ShareVerifier.manifestProblem(try await store.get(ShareManifest.key)) {
                throw ShareError(.corrupt, share: name, object: ShareManifest.key, cause: problem + "; nothing was collected")
            }
        } catch let error as StoreError where error.code == .notFound {
            throw ShareError(.noShare, share: name, object: ShareManifest.key, cause: "no share here; nothing was collected")
        }
    }

    private func records(prefix: String) async throws -> [CollectionRecord] {
        var records: [CollectionRecord] = []
        for object in try await store.listAll(prefix: prefix) {
            do {
                records.append(try CollectionRecord.decode(try await store.get(object.key), share: name, key: object.key))
            } catch let error as StoreError where error.code == .notFound {
                continue // finished by another run meanwhile
            }
        }
        return records
    }

    /// What a mark found: the chunks to keep and why.
    struct Mark: Sendable {
        /// Every chunk some kept version (or a snapshot a new endpoint may start from) references.
        var chunks = ChunkMark()
        /// The log head.
        var head: UInt64 = 0
        /// The share's retention policy.
        var policy = RetentionPolicy()
        /// The versions kept.
        var retained = RetainedVersions(head: 0, from: 0, selected: [])
        /// The registered endpoint (or unreadable registration) that holds versions the policy alone
        /// would not keep, when one does.
        var heldBy: String?
        /// The snapshots and the log records the mark listed (before it read them), ascending.
        var snapshots: [Listed] = []
        var records: [Listed] = []

        /// One snapshot or log record in a listing.
        struct Listed: Sendable {
            var sequence: UInt64
            var size: Int64
        }
    }

    /// Marks every chunk a kept version references: with the default policy, every upsert of every
    /// record and every snapshot; with a retention policy, the namespace at every kept sequence (the
    /// window, the versions registered servers may hold, the daily, weekly and monthly rules, the head),
    /// and the snapshots at kept sequences and the newest one. Throws when a record, a needed snapshot,
    /// the policy or the log's continuity cannot be read: what they reference is unknown.
    ///
    /// Under a retention policy the log is read twice, one record at a time, and never held: first for
    /// each version's time (which versions are kept depends on all of them), then to replay it into a
    /// ``CompactNamespace`` and mark. Both reads stop at the head of the one listing taken before them,
    /// and the registrations are listed after the first read, as docs/gc.md's argument needs.
    static func mark(store: any ObjectStore, now: Double, progress: (@Sendable (Progress) -> Void)?) async throws -> Mark {
        let name = store.displayName
        let refuse = "nothing was collected: what it references is unknown (see `tiergate share verify`)"
        var mark = Mark()
        mark.policy = try await RetentionPolicy.load(from: store)
        mark.snapshots = try await store.listAll(prefix: CloudShare.snapshotPrefix)
            .compactMap { object in CloudShare.snapshotSequence(ofKey: object.key).map { Mark.Listed(sequence: $0, size: object.size) } }
            .sorted { $0.sequence < $1.sequence }
        func snapshot(_ sequence: UInt64) async throws -> CompactNamespace {
            try await CloudShare.readSnapshot(CompactNamespace.self, key: CloudShare.snapshotKey(sequence), from: store, consequence: refuse)
        }
        @Sendable func upserted(_ commit: Commit) -> [Digest32] {
            commit.operations.flatMap { operation -> [Digest32] in
                guard operation.op == .upsert, let entry = operation.entry, entry.kind == .file else { return [] }
                return entry.chunks.map(\.id)
            }
        }
        let snapshotSequences = mark.snapshots.map(\.sequence)
        mark.records = try await store.listAll(prefix: "log/", pageSize: 1000)
            .compactMap { object in CommitLog.sequence(ofKey: object.key).map { Mark.Listed(sequence: $0, size: object.size) } }
            .sorted { $0.sequence < $1.sequence }
        let logSequences = mark.records.map(\.sequence)
        // The log may begin after a snapshot (log compaction deleted the records before it): the replay
        // starts from it, and records a compaction cut short left below it are not needed.
        guard let base = CommitLog.base(firstRecord: logSequences.first, snapshots: snapshotSequences) else {
            throw ShareError(.badLog, share: name, object: CommitLog.key(1), cause: "missing log records before \(logSequences.first ?? 0); " + refuse)
        }
        let sequences = logSequences.filter { $0 > base }
        var previous = base
        for sequence in sequences {
            guard sequence == previous + 1 else {
                throw ShareError(.badLog, share: name, object: CommitLog.key(previous + 1), cause: "missing log record; " + refuse)
            }
            previous = sequence
        }
        mark.head = sequences.last ?? 0
        let head = mark.head
        let log = CommitLog(store: store)
        // Records are decoded whole (up to 50,000 operations) and dropped at once: their memory goes back
        // to the kernel, not left as holes between the namespace's nodes (about 50 MiB at 1,000,000
        // files). Once per 50,000 operations read, not after every record: a log of many small records
        // would pay a walk of the heap for each.
        var readSinceTrim = 0
        func read(_ operations: Int) {
            readSinceTrim += operations
            guard readSinceTrim >= 50_000 else { return }
            _ = CLinux_malloc_trim()
            readSinceTrim = 0
        }

        guard !mark.policy.keepsEverything else {
            mark.retained = RetainedVersions(head: mark.head, from: 0, selected: [])
            for listed in mark.snapshots { try await snapshot(listed.sequence).markAll(into: &mark.chunks) }
            var done = 0
            try await ShareVerifier.forEach(sequences, parallel: 8) { sequence in
                try Task.checkCancellation()
                return upserted(try await log.read(sequence))
            } result: { _, chunks in
                mark.chunks.formUnion(chunks)
                read(chunks.count)
                done += 1
                if done % 64 == 0 || done == sequences.count { progress?(Progress(phase: "marking chunks of every kept version", done: done, total: sequences.count)) }
            }
            mark.chunks.compact()
            return mark
        }

        /// Reads the records after `base` through the head, one at a time, in order; a record missing
        /// since the listing above is an error.
        func forEachRecord(phase: String, _ body: (Commit) -> Void) async throws {
            var reached = base
            for try await commit in log.reading(after: base) {
                try Task.checkCancellation()
                guard commit.sequence <= head else { break } // appended after the listing: not this mark's
                body(commit)
                read(commit.operations.count)
                reached = commit.sequence
                let done = Int(reached - base)
                if done % 64 == 0 || reached == head { progress?(Progress(phase: phase, done: done, total: sequences.count)) }
            }
            guard reached == head else {
                throw ShareError(.badLog, share: name, object: CommitLog.key(reached + 1), cause: "missing log record; " + refuse)
            }
        }

        // Which versions are kept depends on every version's time: a first read takes only those.
        var versions: [RetentionPolicy.Version] = []
        versions.reserveCapacity(sequences.count)
        try await forEachRecord(phase: "reading the times of the log") { commit in
            versions.append(RetentionPolicy.Version(sequence: commit.sequence, time: commit.time))
        }
        // Registrations are read after the log: an endpoint registers before it first reads the log, so one
        // not listed here reads a head at least as new as this mark's (the argument is in docs/gc.md).
        let (registrations, unreadable) = try await ServerRegistration.listForCollection(in: store)
        var heldFrom = registrations.map(\.oldestHeldSequence).min()
        if !unreadable.isEmpty { heldFrom = 0 }
        mark.retained = mark.policy.retained(versions, now: now, heldFrom: heldFrom)
        if mark.retained.from < mark.policy.retained(versions, now: now, heldFrom: nil).from {
            if let key = unreadable.first {
                mark.heldBy = "\(key) (unreadable: every version is kept)"
            } else if let oldest = registrations.min(by: { $0.oldestHeldSequence < $1.oldestHeldSequence }) {
                mark.heldBy = "server \(oldest.name) (\(oldest.serverID)) endpoint \(oldest.endpoint), which holds versions from #\(oldest.oldestHeldSequence)"
            }
        }

        // The namespace at sequence s is kept whole when s is kept. For a run of kept sequences a…b that
        // is the namespace at a plus every upsert of a+1…b: whatever is in the namespace at some
        // sequence of the run was there at a or was written after it (renames move entries, never create
        // them). A file whose chunks are marked is held without them from then on.
        // When every version from where the history begins is kept (a registered server holds them
        // all, say), that run is the whole log: the namespace there (its snapshot, marked below with the
        // kept ones), then every upsert, and no replay.
        if mark.retained.from <= max(base, 1) {
            try await forEachRecord(phase: "marking chunks of every kept version") { commit in
                mark.chunks.formUnion(upserted(commit))
            }
        } else {
            let namespace = base > 0 ? try await snapshot(base) : CompactNamespace()
            var previousKept = base == 0 || mark.retained.contains(base)
            if base > 0 && previousKept { namespace.markAll(into: &mark.chunks) }
            try await forEachRecord(phase: "marking chunks of every kept version") { commit in
                let kept = mark.retained.contains(commit.sequence)
                namespace.apply(commit, marksUpserts: kept && previousKept, mark: &mark.chunks)
                if kept && !previousKept { namespace.markAll(into: &mark.chunks) }
                previousKept = kept
            }
        }
        // New endpoints start from the newest snapshot; restores at a kept sequence from the one at or before it.
        let newest = snapshotSequences.last
        for sequence in snapshotSequences where sequence == newest || mark.retained.contains(sequence) {
            try await snapshot(sequence).markAll(into: &mark.chunks)
        }
        mark.chunks.compact()
        return mark
    }

    /// Every pack object with its chunks counted against the mark: from its index segment, else its
    /// trailer; a pack whose chunk list is unreadable either way is kept.
    func survey(marked: inout ChunkMark, progress: (@Sendable (Progress) -> Void)?) async throws -> Survey {
        let packObjects = try await store.listAll(prefix: "packs/")
        let segments = Set(try await store.listAll(prefix: "index/").map(\.key))
        var survey = Survey(marked: &marked)
        var done = 0
        let store = store, name = name
        let packs = packObjects.compactMap { object in Digest32(hex: object.key.split(separator: "/").last ?? "").map { (id: $0, object: object) } }
        try await ShareVerifier.forEach(packs, parallel: 8) { pack -> (chunks: [(Digest32, UInt32)], indexed: Bool)? in
            try Task.checkCancellation()
            if segments.contains(IndexSegment.key(pack.id)) {
                do {
                    let bytes = try await store.get(IndexSegment.key(pack.id))
                    return (try IndexSegment.decode(bytes, share: name, name: IndexSegment.key(pack.id)).map { ($0.id, $0.location.length) }, true)
                } catch let error as StoreError where error.code == .notFound {
                    // Deleted meanwhile: the trailer says the same.
                } catch is ShareError {
                    // Damaged: the trailer says the same.
                }
            }
            do {
                return (try await PackFormat.readTrailer(of: pack.id, in: store).map { ($0.id, $0.length) }, false)
            } catch is ShareError {
                return nil
            } catch let error as StoreError where error.code == .notFound {
                return nil // deleted meanwhile (by a collector's earlier, killed run): not a pack of this survey
            }
        } result: { pack, list in
            var state = PackState(size: pack.object.size, modified: pack.object.modified)
            if let list {
                state.indexed = list.indexed
                let number = list.indexed ? survey.number(pack.id) : 0
                var referenced = 0
                for (id, length) in list.chunks {
                    state.chunkBytes += Int64(length)
                    if survey.isMarked(id) {
                        referenced += 1
                        if list.indexed { survey.add(id, heldBy: number) } else { state.marked.append(id) }
                    } else {
                        state.unusedBytes += Int64(length)
                    }
                }
                state.referencedChunks = referenced
            }
            survey.states[pack.id] = state
            done += 1
            if done % 64 == 0 || done == packs.count { progress?(Progress(phase: "checking packs against the mark", done: done, total: packs.count)) }
        }
        survey.finish()
        return survey
    }

    /// Copies the chunks only `packs` keep readable (``Survey/isOnlyHere(_:in:collecting:)``) into new packs,
    /// each with its index segment, and returns the old packs for the pending record: once the copies
    /// are durable, the old packs are garbage like any other (the argument is in docs/gc.md). A pack
    /// that cannot be read whole and verified is left alone. A dry run copies nothing and reports what
    /// it would do.
    private func repack(_ packs: [Digest32], survey: Survey, collecting: inout Set<Digest32>, report: inout Report,
                        progress: (@Sendable (Progress) -> Void)?) async throws -> [CollectionRecord.Pack] {
        let share = try await CloudShare.open(store)
        try await share.refreshCollected()
        let uploader = share.makeUploader()
        var repacked: [CollectionRecord.Pack] = []
        for (done, pack) in packs.enumerated() {
            try Task.checkCancellation()
            progress?(Progress(phase: "repacking", done: done, total: packs.count))
            guard let state = survey.states[pack] else { continue }
            let keepsAChunk = survey.keepsAChunkAlone(pack, collecting: collecting)
            var copied: Int64 = 0
            if keepsAChunk && !options.dryRun {
                let bytes: [UInt8], check: PackFormat.Check
                do {
                    bytes = try await store.get(PackFormat.key(pack))
                    check = try PackFormat.check(bytes, pack: pack, share: name)
                } catch is ShareError {
                    continue // damaged: `share verify` reports it; the pack stays
                } catch let error as StoreError where error.code == .notFound {
                    continue
                }
                var seen: Set<Digest32> = []
                let entries = check.entries.filter { survey.isMarked($0.id) && survey.isOnlyHere($0.id, in: pack, collecting: collecting) && seen.insert($0.id).inserted }
                // A needed chunk missing from the pack, or failing its check: the pack is kept.
                guard entries.count == survey.chunksKeptAlone(pack, collecting: collecting),
                      !entries.contains(where: { check.badChunks.contains($0.id) }) else { continue }
                for entry in entries {
                    let chunk = Array(bytes[Int(entry.offset)..<Int(entry.offset) + Int(entry.length)])
                    try await uploader.addAgain(id: entry.id, bytes: chunk)
                    copied += Int64(entry.length)
                }
            } else if keepsAChunk {
                copied = state.chunkBytes - state.unusedBytes // at most
            }
            report.repacked.packs += 1
            report.repacked.bytes += state.size
            report.repacked.copiedBytes += copied
            report.keptReferenced.packs -= 1
            report.keptReferenced.bytes -= state.size
            repacked.append(CollectionRecord.Pack(id: pack.hex, bytes: state.size, modified: state.modified?.timeIntervalSince1970,
                                                  neededBytes: state.chunkBytes - state.unusedBytes))
            collecting.insert(pack)
            // The pack was read whole (16 MiB): glibc serves such buffers from the heap once one was
            // freed, and keeps the holes they leave resident unless given back.
            _ = CLinux_malloc_trim()
        }
        // The copies are durable (packs and index segments) before the record names the old packs.
        if !options.dryRun {
            try await uploader.finish()
            report.repacked.newPacks = await uploader.packs.count
        }
        return repacked
    }
}
