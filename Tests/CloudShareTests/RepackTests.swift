import Backends
@testable import CloudShare
import Foundation
import Hashing
import Testing

/// Repacking (`share gc --repack-below`): a pack mostly of chunks no kept version needs goes, its needed
/// chunks copied first into a new pack, whatever a writer deduplicating against it and a reader with an
/// old index do meanwhile.
@Suite struct RepackTests {
    static let safety: Double = 60

    func collector(_ store: any ObjectStore, _ clock: MovableClock) -> GarbageCollector {
        var options = GarbageCollector.Options()
        options.grace = 0
        options.safetyInterval = Self.safety
        options.repackBelow = 0.5
        options.now = clock.now
        return GarbageCollector(store: store, options: options)
    }

    @Test(arguments: [
        [GarbageCollectorTests.Step.decide, .mark, .append, .sweep],
        [GarbageCollectorTests.Step.decide, .mark, .sweep, .append],
        [GarbageCollectorTests.Step.mark, .decide, .append, .sweep],
        [GarbageCollectorTests.Step.mark, .decide, .sweep, .append],
        [GarbageCollectorTests.Step.mark, .sweep, .decide, .append],
        [GarbageCollectorTests.Step.decide, .append, .mark, .sweep],
    ])
    func aSparsePackGoesAndItsNeededChunksStayReadable(_ steps: [GarbageCollectorTests.Step]) async throws {
        let store = MemoryStore()
        let clock = MovableClock()
        let share = try await CloudShare.create(in: store, manifest: ShareManifest(packSize: 1 << 20))
        var expected: [Digest32: [UInt8]] = [:]
        func chunk(_ seed: UInt64, _ size: Int = 40_000) -> [UInt8] {
            let bytes = pseudoRandomBytes(size, seed: seed)
            expected[SHA256.hash(bytes)] = bytes
            return bytes
        }
        // One pack P holds x (kept: keep.bin stays) and four chunks whose files are overwritten next.
        let x = chunk(1)
        try await commitFiles(share, ["keep.bin": [x], "a.bin": [chunk(2)], "b.bin": [chunk(3)], "c.bin": [chunk(4)], "d.bin": [chunk(5)]])
        let sparse = try #require(try await store.listAll(prefix: "packs/").first.flatMap { Digest32(hex: $0.key.split(separator: "/").last ?? "") })
        try await commitFiles(share, ["a.bin": [chunk(6, 100)], "b.bin": [chunk(7, 100)], "c.bin": [chunk(8, 100)], "d.bin": [chunk(9, 100)]])
        try await RetentionPolicy(keepWithin: 0).save(to: store)
        clock.advance(1)
        let other = chunk(10)

        // A writer and a reader whose indexes place x in P only.
        let writer = try await CloudShare.open(store)
        let reader = try await CloudShare.open(store)
        var uploader = writer.makeUploader()
        var appended: UInt64?
        for step in steps {
            switch step {
            case .decide:
                uploader = writer.makeUploader()
                try await uploader.add(id: SHA256.hash(x), bytes: x)
                try await uploader.add(id: SHA256.hash(other), bytes: other)
            case .mark:
                let report = try await collector(store, clock).run()
                #expect(report.repacked.packs == 1 && report.repacked.copiedBytes == Int64(x.count), "\(report.repacked)")
            case .sweep:
                clock.advance(Self.safety + 1)
                _ = try await collector(store, clock).run()
            case .append:
                let log = writer.log
                do {
                    appended = try await writer.appendCommit(author: "w", authorName: "W", operations: [.upsert("x.bin", fileEntry([x, other]))],
                                                             uploader: uploader) { try await log.append($0) }
                } catch let error as ShareError where error.code == .missingChunk {
                    // Allowed: nothing committed; the next session stores the content again.
                }
            }
        }
        if appended == nil { try await commitFiles(writer, ["x.bin": [x, other]]) }
        for _ in 0..<2 {
            clock.advance(Self.safety + 1)
            _ = try await collector(store, clock).run()
        }
        #expect(try await store.listAll(prefix: PackFormat.key(sparse)).isEmpty, "the sparse pack is still there")

        // The reader's index still places x in P, which is gone: it finds the copy.
        #expect(try await reader.readChunk(SHA256.hash(x)) == x)
        // Every file of the head reads back, from a fresh index too, and `share verify` finds no damage.
        let fresh = try await CloudShare.open(store)
        for (path, entry) in try await fresh.namespace().entries {
            for ref in entry.chunks {
                let bytes = try await fresh.readChunk(ref.id)
                #expect(bytes == expected[ref.id], "\(path)")
            }
        }
        let report = try await ShareVerifier(store: store, options: .init(readDataPercent: 100)).run()
        #expect(report.isClean, "\(report.problems)")
    }

    /// A run killed after copying but before its record leaves a copy; the next run copies nothing again
    /// and records the sparse pack as plain garbage.
    @Test func aRepackKilledBeforeItsRecordIsFinishedWithoutASecondCopy() async throws {
        let store = MemoryStore()
        let clock = MovableClock()
        let share = try await CloudShare.create(in: store, manifest: ShareManifest(packSize: 1 << 20))
        let x = pseudoRandomBytes(40_000, seed: 21)
        let dropped = (0..<4).map { pseudoRandomBytes(40_000, seed: 30 + UInt64($0)) }
        try await commitFiles(share, ["keep.bin": [x], "a.bin": [dropped[0]], "b.bin": [dropped[1]], "c.bin": [dropped[2]], "d.bin": [dropped[3]]])
        try await commitFiles(share, ["a.bin": [[1]], "b.bin": [[2]], "c.bin": [[3]], "d.bin": [[4]]])
        try await RetentionPolicy(keepWithin: 0).save(to: store)
        // The copy a killed run made: x in a pack of its own, with its index segment, and no record.
        _ = try await orphanPackAgain(store, x)
        clock.advance(1)
        let packs = try await store.listAll(prefix: "packs/").count
        let report = try await collector(store, clock).run()
        #expect(report.repacked.packs == 1 && report.repacked.copiedBytes == 0 && report.repacked.newPacks == 0, "\(report.repacked)")
        #expect(try await store.listAll(prefix: "packs/").count == packs)
        clock.advance(Self.safety + 1)
        let sweep = try await collector(store, clock).run()
        #expect(sweep.deleted.packs == 1)
        #expect(try await CloudShare.open(store).readChunk(SHA256.hash(x)) == x)
        #expect(try await ShareVerifier(store: store, options: .init()).run().isClean)
    }

    /// Stores `chunk` again in a new pack although the share has it.
    func orphanPackAgain(_ store: any ObjectStore, _ chunk: [UInt8]) async throws -> [Digest32] {
        // Stored although the share has it, as a second writer racing the first would.
        let share = try await CloudShare.open(store)
        let uploader = share.makeUploader()
        try await uploader.addAgain(id: SHA256.hash(chunk), bytes: chunk)
        try await uploader.finish()
        return await uploader.packs
    }
}

/// The survey's bookkeeping of which indexed packs hold each marked chunk: a chunk one pack alone holds
/// keeps that pack; a chunk two packs hold keeps neither, unless the other one is being collected; a
/// pack known from its trailer only counts no copy.
@Suite struct SurveyTests {
    @Test func aPackIsNeededExactlyWhileItAloneKeepsAMarkedChunk() {
        let ids = (0..<6).map { SHA256.hash([UInt8($0)]) }
        let (a, b, c, unmarked) = (ids[0], ids[1], ids[2], ids[3])
        let (first, second, trailerOnly) = (ids[4], ids[5], SHA256.hash([9]))
        var marked = ChunkMark()
        marked.formUnion([c, a, b, a])    // any order; a duplicate counts once
        var survey = GarbageCollector.Survey(marked: &marked)
        #expect(marked.count == 0, "the survey took the chunks")
        let one = survey.number(first), two = survey.number(second)
        survey.add(a, heldBy: one)
        survey.add(b, heldBy: one)
        survey.add(b, heldBy: two)
        survey.add(b, heldBy: two)          // listed twice: one holder
        survey.add(unmarked, heldBy: two)   // not marked: not held
        var trailer = GarbageCollector.PackState(size: 1)
        trailer.marked = [c]
        survey.states[trailerOnly] = trailer
        survey.finish()

        #expect(survey.isMarked(a) && !survey.isMarked(unmarked))
        #expect(survey.keepsAChunkAlone(first, collecting: []) && survey.chunksKeptAlone(first, collecting: []) == 1)
        #expect(!survey.keepsAChunkAlone(second, collecting: []), "b has a copy in the first pack")
        #expect(survey.keepsAChunkAlone(second, collecting: [first]) && survey.chunksKeptAlone(second, collecting: [first]) == 1,
                "the first pack is being collected: the second alone keeps b")
        #expect(survey.chunksKeptAlone(first, collecting: [second]) == 2)
        #expect(survey.keepsAChunkAlone(trailerOnly, collecting: []), "no indexed pack holds c")
        #expect(survey.isOnlyHere(b, in: first, collecting: [second]) && !survey.isOnlyHere(b, in: first, collecting: []))
    }
}
