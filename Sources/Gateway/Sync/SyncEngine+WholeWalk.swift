import Foundation
import Synchronization

extension SyncEngine {
    /// How many differing paths a whole walk keeps before it holds every item instead
    /// (`TIERGATE_WHOLE_WALK_LIMIT`, default 100,000).
    static let wholeWalkLimit = ProcessInfo.processInfo.environment["TIERGATE_WHOLE_WALK_LIMIT"].flatMap(Int.init) ?? ChangeJournal.maxPaths

    /// What a whole walk found when it held only what differs: the paths whose item and record differ
    /// (new items, vanished records, changed items, skipped items), every skipped item, and how many
    /// items it walked.
    struct Differences {
        var changes = ChangeSet()
        var skipped: [SkippedItem] = []
        var walked = 0
    }

    /// Walks the whole tree in path order beside the database's entries in the same order (a merge of
    /// two sorted streams: the walk on one thread, the scan and the comparison on another), keeping
    /// only the paths whose item the pass may have to act on. Nil when more than `limit` paths differ
    /// (a first upload, a tree changed wholesale): such a pass holds every item anyway. An item counts as
    /// untouched only when the pass would leave it so (``isUntouched(_:_:)``): anything else is looked at
    /// again by the pass over the differences, with the same rules as a pass over the change journal.
    func differences(limit: Int) async throws -> Differences? {
        let (state, id, walker, progress) = (state, endpoint.id, TreeWalker(root: root), progress)
        let total = try lastWholeWalkCount()   // the progress's total
        let channel = ItemChannel()
        async let walked: [SkippedItem] = OwnThread.run {
            var skipped: [SkippedItem] = []
            do {
                try walker.walkInPathOrder(skipped: &skipped) { item in
                    guard channel.put(item) else { throw ItemChannel.Cancelled() }
                }
                channel.finish()
            } catch {
                channel.finish()
                if error is ItemChannel.Cancelled { return [] }
                throw error
            }
            return skipped
        }
        let compared: Differences? = try await OwnThread.run {
            defer { channel.cancel() }
            var differences = Differences()
            var previous: String?
            var disordered = false
            /// The next walked item, checked to come in path order (else the merge cannot be trusted).
            func next() -> LocalItem? {
                guard let item = channel.take() else { return nil }
                differences.walked += 1
                if let previous, !previous.utf8.lexicographicallyPrecedes(item.path.utf8) { disordered = true }
                previous = item.path
                return item
            }
            var head = next()
            let started = Date()
            var lastProgress = started
            try state.scanEntries(id) { path, record in
                if let progress, differences.walked % 4_096 == 0, Date().timeIntervalSince(lastProgress) > 0.5 {
                    lastProgress = Date()
                    progress(JobProgress(phase: "comparing the tree with the database (\(differences.changes.count) paths differ)",
                                         items: differences.walked, totalItems: total, bytes: 0,
                                         elapsed: lastProgress.timeIntervalSince(started), unit: "items"))
                }
                while let item = head, item.path.utf8.lexicographicallyPrecedes(path.utf8) {
                    differences.changes.changed(item.path)
                    head = next()
                }
                if let item = head, item.path.utf8.elementsEqual(path.utf8) {
                    if !Self.isUntouched(item, record) { differences.changes.changed(path) }
                    head = next()
                } else {
                    differences.changes.changed(path)
                }
                return differences.changes.count <= limit && !disordered
            }
            while differences.changes.count <= limit && !disordered, let item = head {
                differences.changes.changed(item.path)
                head = next()
            }
            return differences.changes.count <= limit && !disordered ? differences : nil
        }
        let skipped = try await walked
        guard var differences = compared else { return nil }
        differences.skipped = skipped
        for item in skipped { differences.changes.changed(item.path) }
        return differences.changes.count <= limit ? differences : nil
    }

    /// Whether a pass leaves `item` alone given its path's `record`: the same item (kind and inode), a
    /// folder whose mode, owner, mtime and ctime are recorded, or a file whose size, mtime, ctime and
    /// inode are (content and attributes unread), not in the middle of a tiering or recall. The upload
    /// skips such an item without reading anything; a whole walk keeps nothing of it.
    static func isUntouched(_ item: LocalItem, _ record: EntryRecord) -> Bool {
        guard !isAnother(item, than: record) else { return false }
        if item.isDirectory {
            return record.mode == item.mode && record.mtime == item.mtime && record.ctime == item.ctime
                && record.uid == item.uid && record.gid == item.gid
        }
        return record.matches(item) && record.residency != .tiering && record.residency != .recalling
    }
}

/// Items handed from a walk's thread to the thread that compares them, in batches, at most a few
/// batches ahead: what a whole walk holds is bounded, whatever the tree's size. One writer and one
/// reader; `filling` is the writer's own, `reading` the reader's, the rest is shared under `condition`.
final class ItemChannel: @unchecked Sendable {
    struct Cancelled: Error {}

    static let batchSize = 2_048
    static let batchesAhead = 4

    private let condition = NSCondition()
    private var batches: [[LocalItem]] = []
    private var finished = false
    private var cancelled = false
    private var filling: [LocalItem] = []
    private var reading: [LocalItem] = []
    private var readIndex = 0

    /// Adds an item (the writer); false once the reader cancelled: the walk should stop.
    func put(_ item: LocalItem) -> Bool {
        filling.append(item)
        return filling.count < Self.batchSize || hand(finishing: false)
    }

    /// Ends the stream (the writer); what was put is still taken.
    func finish() {
        _ = hand(finishing: true)
    }

    /// Stops the stream (the reader): the writer's next batch is refused.
    func cancel() {
        condition.lock()
        cancelled = true
        condition.broadcast()
        condition.unlock()
    }

    /// The next item (the reader), waiting for the writer; nil at the end.
    func take() -> LocalItem? {
        if readIndex < reading.count {
            defer { readIndex += 1 }
            return reading[readIndex]
        }
        condition.lock()
        defer { condition.unlock() }
        while batches.isEmpty && !finished && !cancelled { condition.wait() }
        guard !batches.isEmpty else { return nil }
        reading = batches.removeFirst()
        readIndex = 1
        condition.broadcast()
        return reading[0]
    }

    /// Hands the writer's batch over, waiting while the reader is `batchesAhead` behind.
    private func hand(finishing: Bool) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while batches.count >= Self.batchesAhead && !cancelled { condition.wait() }
        if !cancelled && !filling.isEmpty { batches.append(filling) }
        filling = []
        if finishing { finished = true }
        condition.broadcast()
        return !cancelled
    }
}
