import Backends
import CloudShare
import Foundation
import Hashing
import Synchronization
import Testing

/// A clock the tests move forward: the collector's view of time.
final class MovableClock: Sendable {
    private let offset = Mutex<Double>(0)
    func advance(_ seconds: Double) { offset.withLock { $0 += seconds } }
    var now: @Sendable () -> Date { { Date().addingTimeInterval(self.offset.withLock { $0 }) } }
}

/// A file entry holding `chunks`.
func fileEntry(_ chunks: [[UInt8]]) -> NamespaceEntry {
    NamespaceEntry(kind: .file, fileID: NamespaceEntry.newFileID(), size: Int64(chunks.reduce(0) { $0 + $1.count }), mode: 0o644,
                   mtime: 0, uid: 0, gid: 0, chunks: chunks.map { ChunkRef(id: SHA256.hash($0), length: UInt32($0.count)) })
}

/// Stores `chunks` in packs as a writer killed before its commit leaves them: no commit names them.
func orphanPack(_ store: any ObjectStore, _ chunks: [[UInt8]]) async throws -> [Digest32] {
    let writer = try await CloudShare.open(store)
    let uploader = writer.makeUploader()
    for chunk in chunks { try await uploader.add(id: SHA256.hash(chunk), bytes: chunk) }
    try await uploader.finish()
    return await uploader.packs
}

/// Commits `files` (path → chunks) as one writer does: packs first, then the guarded append.
@discardableResult
func commitFiles(_ share: CloudShare, _ files: [String: [[UInt8]]]) async throws -> UInt64 {
    let uploader = share.makeUploader()
    var operations: [NamespaceOperation] = []
    for (path, chunks) in files.sorted(by: { $0.key < $1.key }) {
        for chunk in chunks { try await uploader.add(id: SHA256.hash(chunk), bytes: chunk) }
        operations.append(.upsert(path, fileEntry(chunks)))
    }
    let log = share.log
    return try await share.appendCommit(author: "t", authorName: "T", operations: operations, uploader: uploader) { try await log.append($0) }
}

/// Every chunk of every upsert of every commit reads back byte-exact from a freshly opened share, and
/// `share verify --read-data` finds no problem. Returns the problems as sentences (empty: all good).
func everyVersionReads(_ store: any ObjectStore, expected: [Digest32: [UInt8]]) async throws -> [String] {
    var problems: [String] = []
    let share = try await CloudShare.open(store)
    for commit in try await share.log.records(after: 0) {
        for operation in commit.operations {
            for chunk in operation.entry?.chunks ?? [] {
                do {
                    let bytes = try await share.readChunk(chunk.id)
                    if let want = expected[chunk.id], bytes != want { problems.append("\(operation.path)@\(commit.sequence): chunk \(chunk.id.hex) reads other bytes") }
                } catch {
                    problems.append("\(operation.path)@\(commit.sequence): \(error)")
                }
            }
        }
    }
    let report = try await ShareVerifier(store: store, options: .init(readDataPercent: 100)).run()
    problems += report.problems.filter { !$0.isInfo }.map { "verify: \($0.object): \($0.kind.rawValue): \($0.problem)" }
    return problems
}

@Suite struct GarbageCollectorTests {
    static let safety: Double = 60

    func collector(_ store: any ObjectStore, _ clock: MovableClock, grace: Double = 0, dryRun: Bool = false) -> GarbageCollector {
        var options = GarbageCollector.Options()
        options.grace = grace
        options.safetyInterval = Self.safety
        options.dryRun = dryRun
        options.now = clock.now
        return GarbageCollector(store: store, options: options)
    }

    /// The steps of the race between a writer reusing a chunk of an orphan pack and a collector.
    enum Step: String, CustomStringConvertible, Sendable {
        /// The writer starts an upload session and decides about content X (dedup when it may).
        case decide
        /// A collector run: records the orphan pack as pending.
        case mark
        /// A collector run after the safety interval: deletes what is still unreferenced.
        case sweep
        /// The writer appends its commit referencing X.
        case append
        var description: String { rawValue }
    }

    @Test(arguments: [
        [Step.decide, .mark, .append, .sweep],
        [Step.decide, .mark, .sweep, .append],
        [Step.mark, .decide, .append, .sweep],
        [Step.mark, .decide, .sweep, .append],
        [Step.mark, .sweep, .decide, .append],
        [Step.decide, .append, .mark, .sweep],
    ])
    func aWriterReusingAChunkOfACollectedPackNeverCommitsAMissingChunk(_ steps: [Step]) async throws {
        let store = MemoryStore()
        let clock = MovableClock()
        _ = try await CloudShare.create(in: store, manifest: ShareManifest(packSize: 1 << 20))
        let content = pseudoRandomBytes(40_000, seed: 11)
        let other = pseudoRandomBytes(30_000, seed: 12)
        let orphans = try await orphanPack(store, [content])
        #expect(orphans.count == 1)
        // The writer's index is loaded before anything else happens: it knows the orphan pack's chunk.
        let writer = try await CloudShare.open(store)
        var uploader = writer.makeUploader()
        var appended: UInt64?
        var appendError: (any Error)?
        for step in steps {
            switch step {
            case .decide:
                uploader = writer.makeUploader()
                try await uploader.add(id: SHA256.hash(content), bytes: content)
                try await uploader.add(id: SHA256.hash(other), bytes: other)
            case .mark:
                _ = try await collector(store, clock).run()
            case .sweep:
                clock.advance(Self.safety + 1)
                _ = try await collector(store, clock).run()
            case .append:
                let log = writer.log
                do {
                    appended = try await writer.appendCommit(author: "w", authorName: "W", operations: [.upsert("x.bin", fileEntry([content, other]))],
                                                             uploader: uploader) { try await log.append($0) }
                } catch let error as ShareError where error.code == .missingChunk {
                    appendError = error // allowed: nothing committed; the next session stores X again
                }
            }
        }
        if appended == nil {
            #expect(appendError != nil)
            // The retry a sync pass makes: a new session stores the content again.
            try await commitFiles(writer, ["x.bin": [content, other]])
        }
        // Later collector runs never delete what the commit needs.
        clock.advance(Self.safety + 1)
        _ = try await collector(store, clock).run()
        clock.advance(Self.safety + 1)
        _ = try await collector(store, clock).run()
        let problems = try await everyVersionReads(store, expected: [SHA256.hash(content): content, SHA256.hash(other): other])
        #expect(problems.isEmpty, "\(steps): \(problems)")
    }

    @Test func orphanPacksGoAfterGraceAndSafetyIntervalAndEveryVersionStillReads() async throws {
        let store = MemoryStore()
        let clock = MovableClock()
        let share = try await CloudShare.create(in: store, manifest: ShareManifest(packSize: 1 << 20))
        var expected: [Digest32: [UInt8]] = [:]
        func chunk(_ seed: UInt64) -> [UInt8] {
            let bytes = pseudoRandomBytes(20_000 + Int(seed) * 10, seed: seed * 2 + 1)
            expected[SHA256.hash(bytes)] = bytes
            return bytes
        }
        // Three versions of a.bin, a deleted file, and a file kept throughout: every version must stay.
        let (v1, v2, v3, gone, kept) = (chunk(1), chunk(2), chunk(3), chunk(4), chunk(5))
        try await commitFiles(share, ["a.bin": [v1], "kept.bin": [kept]])
        try await commitFiles(share, ["a.bin": [v2], "gone.bin": [gone]])
        _ = try await share.log.append(Commit(author: "t", authorName: "T", operations: [.delete("gone.bin")]))
        try await commitFiles(share, ["a.bin": [v3]])
        let orphans = try await orphanPack(store, [chunk(6), chunk(7)]) + orphanPack(store, [chunk(8)])
        let referencedPacks = try await store.listAll(prefix: "packs/").count - orphans.count

        // Young orphans are kept while the grace period runs.
        let young = try await collector(store, clock, grace: 3600).run()
        #expect(young.keptYoung.packs == orphans.count && young.markedPending.packs == 0 && young.deleted.packs == 0)

        let first = try await collector(store, clock).run()
        #expect(first.markedPending.packs == orphans.count)
        #expect(first.keptReferenced.packs == referencedPacks)
        #expect(first.deleted.packs == 0)
        #expect(try await store.listAll(prefix: "gc/pending/").count == 1)
        // Before the safety interval nothing goes.
        clock.advance(Self.safety / 2)
        let early = try await collector(store, clock).run()
        #expect(early.deleted.packs == 0 && early.awaitingDeletion.packs == orphans.count && early.markedPending.packs == 0)

        clock.advance(Self.safety)
        let second = try await collector(store, clock).run()
        #expect(second.deleted.packs == orphans.count)
        #expect(second.recordsFinished == 1)
        for pack in orphans {
            #expect(try await store.listAll(prefix: PackFormat.key(pack)).isEmpty)
            #expect(try await store.listAll(prefix: IndexSegment.key(pack)).isEmpty)
        }
        #expect(try await store.listAll(prefix: "packs/").count == referencedPacks)
        #expect(try await store.listAll(prefix: "gc/pending/").isEmpty)
        #expect(try await store.listAll(prefix: "gc/deleted/").count == 1)
        #expect(try await store.listAll(prefix: "gc/lease/").isEmpty, "the lease is released")
        let problems = try await everyVersionReads(store, expected: expected)
        #expect(problems.isEmpty, "\(problems)")
        let verify = try await ShareVerifier(store: store).run()
        #expect(!verify.problems.contains { $0.kind == .orphanPack })

        // Nothing is left to collect: a further run deletes nothing.
        clock.advance(Self.safety * 2)
        let third = try await collector(store, clock).run()
        #expect(third.deleted.packs == 0 && third.markedPending.packs == 0 && third.keptReferenced.packs == referencedPacks)
    }

    @Test func aPartlyUsedPackStaysAndItsUnusedBytesAreReported() async throws {
        let store = MemoryStore()
        let clock = MovableClock()
        let share = try await CloudShare.create(in: store, manifest: ShareManifest(packSize: 1 << 20))
        let used = pseudoRandomBytes(30_000, seed: 21), unused = pseudoRandomBytes(25_000, seed: 22)
        let uploader = share.makeUploader()
        try await uploader.add(id: SHA256.hash(used), bytes: used)
        try await uploader.add(id: SHA256.hash(unused), bytes: unused)
        let log = share.log
        _ = try await share.appendCommit(author: "t", authorName: "T", operations: [.upsert("u.bin", fileEntry([used]))], uploader: uploader) {
            try await log.append($0)
        }
        _ = try await collector(store, clock).run()
        clock.advance(Self.safety + 1)
        let report = try await collector(store, clock).run()
        #expect(report.partlyUsed.packs == 1 && report.partlyUsedUnusedBytes == Int64(unused.count))
        #expect(report.deleted.packs == 0 && report.keptReferenced.packs == 1)
        #expect(try await everyVersionReads(store, expected: [SHA256.hash(used): used]).isEmpty)
    }

    @Test func aDryRunChangesNothing() async throws {
        let store = MemoryStore()
        let clock = MovableClock()
        _ = try await CloudShare.create(in: store)
        _ = try await orphanPack(store, [pseudoRandomBytes(10_000, seed: 31)])
        let before = try await store.listAll(prefix: "")
        let report = try await collector(store, clock, dryRun: true).run()
        #expect(report.markedPending.packs == 1 && report.dryRun)
        #expect(try await store.listAll(prefix: "") == before)
    }

    @Test func aSecondCollectorIsRefusedUntilTheLeaseExpires() async throws {
        let store = MemoryStore()
        let clock = MovableClock()
        _ = try await CloudShare.create(in: store)
        _ = try await orphanPack(store, [pseudoRandomBytes(10_000, seed: 41)])
        // The lease of a running (or killed) collector, valid for ten more minutes.
        let lease = #"{"owner":"x","host":"elsewhere","pid":1,"acquired":\#(Date().timeIntervalSince1970),"expires":\#(Date().timeIntervalSince1970 + 600)}"#
        try await store.putIfAbsent("gc/lease/00000000000000000001", bytes: Array(lease.utf8))
        await #expect(throws: CollectorBusy.self) { _ = try await collector(store, clock).run() }
        #expect(try await store.listAll(prefix: "gc/pending/").isEmpty, "the refused collector wrote nothing")
        clock.advance(601)
        let report = try await collector(store, clock).run()
        #expect(report.markedPending.packs == 1)
        #expect(try await store.listAll(prefix: "gc/lease/").isEmpty, "the stale lease was taken over, then released")
    }

    /// Where a collector run stops in its deletion phase (as a kill would stop it): the operation that fails.
    enum StopPoint: String, CaseIterable, Sendable {
        case firstSegment, firstPack, secondSegment, deletedRecord, pendingRecordRemoval
    }

    @Test(arguments: StopPoint.allCases)
    func aCollectorStoppedAnywhereLeavesAStateTheNextRunFinishes(_ stop: StopPoint) async throws {
        let store = FaultInjectingStore(MemoryStore())
        let clock = MovableClock()
        let share = try await CloudShare.create(in: store, manifest: ShareManifest(packSize: 1 << 20))
        let keep = pseudoRandomBytes(15_000, seed: 51)
        try await commitFiles(share, ["keep.bin": [keep]])
        let orphans = (try await orphanPack(store, [pseudoRandomBytes(12_000, seed: 52)]) + orphanPack(store, [pseudoRandomBytes(12_000, seed: 55)]))
            .sorted { $0.hex < $1.hex }
        _ = try await collector(store, clock).run()
        clock.advance(Self.safety + 1)
        let fault: FaultInjectingStore.Fault = switch stop {
        case .firstSegment: .init(operations: ["delete"], keyPrefix: IndexSegment.key(orphans[0]), code: .unauthorized)
        case .firstPack: .init(operations: ["delete"], keyPrefix: PackFormat.key(orphans[0]), code: .unauthorized)
        case .secondSegment: .init(operations: ["delete"], keyPrefix: IndexSegment.key(orphans[1]), code: .unauthorized)
        case .deletedRecord: .init(operations: ["put"], keyPrefix: "gc/deleted/", code: .unauthorized)
        case .pendingRecordRemoval: .init(operations: ["delete"], keyPrefix: "gc/pending/", code: .unauthorized)
        }
        store.inject(fault)
        await #expect(throws: (any Error).self) { _ = try await collector(store, clock).run() }
        // Halfway (a pack whose segment is gone, a record not moved yet) is no damage to `share verify`.
        let midway = try await ShareVerifier(store: store).run()
        #expect(midway.isClean, "\(midway.problems.filter { !$0.isInfo }.map(\.problem))")
        let next = try await collector(store, clock).run()
        #expect(next.markedPending.packs == 0, "the orphans are not recorded twice")
        for pack in orphans {
            #expect(try await store.listAll(prefix: PackFormat.key(pack)).isEmpty)
            #expect(try await store.listAll(prefix: IndexSegment.key(pack)).isEmpty)
        }
        #expect(try await store.listAll(prefix: "gc/pending/").isEmpty)
        #expect(try await store.listAll(prefix: "gc/deleted/").count == 1)
        #expect(try await everyVersionReads(store, expected: [SHA256.hash(keep): keep]).isEmpty)
    }
}
