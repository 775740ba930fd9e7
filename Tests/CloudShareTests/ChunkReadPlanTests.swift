import CloudShare
import Hashing
import Testing

/// The planning of coalesced chunk reads: which ranged GETs read which chunks.
@Suite struct ChunkReadPlanTests {
    static let packA = SHA256.hash(Array("pack A".utf8)), packB = SHA256.hash(Array("pack B".utf8))

    static func chunk(_ name: Int) -> Digest32 { SHA256.hash(Array("chunk \(name)".utf8)) }

    /// Wanted chunks, one per `(pack, offset, length)`, requested in the order given.
    static func wanted(_ chunks: [(Digest32, UInt64, UInt32)]) -> [ChunkReadPlan.Wanted] {
        chunks.enumerated().map { index, chunk in
            ChunkReadPlan.Wanted(request: index, id: Self.chunk(Int(chunk.1)), location: ChunkLocation(pack: chunk.0, offset: chunk.1, length: chunk.2))
        }
    }

    static let kib: UInt64 = 1 << 10, mib: UInt64 = 1 << 20

    @Test(arguments: [ChunkReadPlan.Order.asRequested, .byLocation])
    func adjacentChunksOfOnePackAreOneRead(order: ChunkReadPlan.Order) {
        let plan = ChunkReadPlan(Self.wanted((0..<10).map { (Self.packA, UInt64($0) * 100_000, 100_000) }), order: order)
        #expect(plan.reads.count == 1)
        #expect(plan.reads.first?.range == 0..<1_000_000)
        #expect(plan.reads.first?.requests == Array(0..<10))
    }

    @Test func chunksWithinTheGapShareAReadAndChunksBeyondItDoNot() {
        let limits = ChunkReadPlan.Limits(gap: 256 * Self.kib, cap: 16 * Self.mib, wholePackShare: 1)
        // 0..<64K, then 256 KiB of gap (merged), then 256 KiB + 1 of gap (not merged).
        let chunks: [(Digest32, UInt64, UInt32)] = [(Self.packA, 0, 65536), (Self.packA, 65536 + 262_144, 65536),
                                                    (Self.packA, 2 * 65536 + 2 * 262_144 + 1, 65536)]
        for order in [ChunkReadPlan.Order.asRequested, .byLocation] {
            let plan = ChunkReadPlan(Self.wanted(chunks), order: order, limits: limits)
            let second: UInt64 = 2 * 65536 + 2 * 262_144 + 1
            let expected: [Range<UInt64>] = [0..<2 * 65536 + 262_144, second..<second + 65536]
            #expect(plan.reads.map(\.range) == expected)
        }
    }

    @Test func noReadIsLongerThanTheCap() {
        let limits = ChunkReadPlan.Limits(gap: 0, cap: 4 * Self.mib)
        let plan = ChunkReadPlan(Self.wanted((0..<16).map { (Self.packA, UInt64($0) * Self.mib, UInt32(Self.mib)) }), order: .byLocation, limits: limits)
        #expect(plan.reads.count == 4)
        #expect(plan.reads.allSatisfy { $0.range.count == 4 * Self.mib })
        #expect(plan.reads.flatMap(\.requests) == Array(0..<16))
    }

    @Test func mostOfAPackWantedIsReadWholeWhateverTheGaps() {
        // Every other 1 MiB chunk of a 16 MiB pack (7 of them): 1 MiB gaps, far over the 256 KiB gap.
        let chunks = (0..<7).map { (Self.packA, UInt64($0) * 2 * Self.mib, UInt32(Self.mib)) }
        let sparse = ChunkReadPlan(Self.wanted(chunks), order: .byLocation, packBytes: [Self.packA: 16 * Self.mib])
        #expect(sparse.reads.count == 7, "7 MiB of a 16 MiB pack is not most of it")
        let dense = ChunkReadPlan(Self.wanted(chunks + [(Self.packA, 14 * Self.mib, UInt32(Self.mib)), (Self.packA, 15 * Self.mib, UInt32(Self.mib))]), order: .byLocation,
                                  packBytes: [Self.packA: 16 * Self.mib])
        #expect(dense.reads.count == 1)
        #expect(dense.reads.first?.range == 0..<16 * Self.mib)
        // Read in request order, the gaps still split reads: that order never holds more than its reads.
        #expect(ChunkReadPlan(Self.wanted(chunks), order: .asRequested, packBytes: [Self.packA: 16 * Self.mib]).reads.count == 7)
    }

    @Test(arguments: [ChunkReadPlan.Order.asRequested, .byLocation])
    func aChunkAskedForTwiceIsReadOnce(order: ChunkReadPlan.Order) {
        let plan = ChunkReadPlan(Self.wanted([(Self.packA, 0, 1000), (Self.packA, 1000, 1000), (Self.packA, 0, 1000)]), order: order)
        #expect(plan.reads.count == 1)
        #expect(plan.reads.first?.chunks.count == 2)
        #expect(plan.reads.first?.chunks.first?.requests == [0, 2])
        #expect(plan.bytes == 2000)
    }

    @Test func chunksOfSeveralPacksAreReadPackByPack() {
        // Interleaved requests: A0 B0 A1 B1 A2 B2.
        let chunks = (0..<3).flatMap { [(Self.packA, UInt64($0) * 1000, UInt32(1000)), (Self.packB, UInt64($0) * 1000, UInt32(1000))] }
        let grouped = ChunkReadPlan(Self.wanted(chunks), order: .byLocation)
        #expect(grouped.reads.map(\.pack) == [Self.packA, Self.packB])
        #expect(grouped.reads.map(\.requests) == [[0, 2, 4], [1, 3, 5]])
        // In request order each switch of pack starts a read, so every read can be handed over in order.
        let ordered = ChunkReadPlan(Self.wanted(chunks), order: .asRequested)
        #expect(ordered.reads.count == 6)
        #expect(ordered.reads.map(\.requests) == (0..<6).map { [$0] })
    }

    @Test func aChunkBeforeTheCurrentReadStartsANewOneInRequestOrder() {
        let plan = ChunkReadPlan(Self.wanted([(Self.packA, 5000, 1000), (Self.packA, 0, 1000)]), order: .asRequested)
        #expect(plan.reads.map(\.range) == [5000..<6000, 0..<1000])
        #expect(ChunkReadPlan(Self.wanted([(Self.packA, 5000, 1000), (Self.packA, 0, 1000)]), order: .byLocation).reads.map(\.range) == [0..<6000])
    }

    @Test(arguments: [ChunkReadPlan.Order.asRequested, .byLocation])
    func nothingWantedIsNoRead(order: ChunkReadPlan.Order) {
        #expect(ChunkReadPlan([], order: order).reads.isEmpty)
    }
}
