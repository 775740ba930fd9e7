import Backends
import CloudShare
import Foundation
import Hashing
import Testing

/// Reads of many chunks through ``CloudShare/readChunks(_:order:parallelReads:limits:deliver:)``: GETs
/// per pack, not per chunk, and every chunk still verified and named when it is wrong.
@Suite struct CoalescedReadTests {
    /// A share on a GET-counting store holding `count` small chunks (one small file each), stored in
    /// packs of `packSize`.
    static func share(chunks count: Int, packSize: Int = 16 << 20) async throws -> (CloudShare, FaultInjectingStore, MemoryStore, [[UInt8]], [Digest32]) {
        let memory = MemoryStore()
        let store = FaultInjectingStore(memory)
        let created = try await CloudShare.create(in: store, manifest: ShareManifest(packSize: packSize))
        let chunks = (0..<count).map { pseudoRandomBytes(2000 + $0 * 37 % 5000, seed: UInt64($0) + 11) }
        let uploader = created.makeUploader()
        for chunk in chunks { try await uploader.add(id: SHA256.hash(chunk), bytes: chunk) }
        try await uploader.finish()
        // Loaded here, so that the GETs a test counts are those of the reads.
        let share = try await CloudShare.open(store)
        try await share.ensureIndexLoaded()
        return (share, store, memory, chunks, await uploader.packs)
    }

    /// Everything `readChunks` delivers, by request index.
    static func readAll(_ share: CloudShare, _ ids: [Digest32], order: ChunkReadPlan.Order) async throws -> [Int: Result<[UInt8], any Error>] {
        var delivered: [Int: Result<[UInt8], any Error>] = [:]
        try await share.readChunks(ids, order: order) { index, chunk in
            #expect(delivered[index] == nil, "request \(index) is delivered once")
            delivered[index] = chunk.map { Array($0) }
        }
        return delivered
    }

    @Test(arguments: [ChunkReadPlan.Order.asRequested, .byLocation])
    func manySmallChunksOfOnePackCostOneGETAndReadBackIdentical(order: ChunkReadPlan.Order) async throws {
        let (share, store, _, chunks, packs) = try await Self.share(chunks: 300)
        #expect(packs.count == 1)
        let before = store.calls("get")
        let delivered = try await Self.readAll(share, chunks.map { SHA256.hash($0) }, order: order)
        #expect(store.calls("get") - before == 1, "300 adjacent chunks of one pack are one ranged GET")
        let identical = delivered.count == chunks.count && chunks.indices.allSatisfy { (try? delivered[$0]?.get()) == chunks[$0] }
        #expect(identical)
    }

    @Test func chunksOfManyPacksCostAGETPerPack() async throws {
        // ~1 MiB of chunks in 64 KiB packs: about 16 packs.
        let (share, store, _, chunks, packs) = try await Self.share(chunks: 300, packSize: 64 << 10)
        #expect(packs.count > 8)
        let ids = chunks.map { SHA256.hash($0) }
        let before = store.calls("get")
        let delivered = try await Self.readAll(share, ids.reversed() + ids, order: .byLocation)
        #expect(store.calls("get") - before == packs.count, "one GET per pack, however the requests are ordered or repeated")
        let identical = delivered.count == 2 * chunks.count
            && chunks.indices.allSatisfy { (try? delivered[chunks.count + $0]?.get()) == chunks[$0] && (try? delivered[chunks.count - 1 - $0]?.get()) == chunks[$0] }
        #expect(identical)
    }

    @Test(arguments: [ChunkReadPlan.Order.asRequested, .byLocation])
    func aCorruptChunkInsideACoalescedReadIsNamedAndItsNeighboursAreRight(order: ChunkReadPlan.Order) async throws {
        let (share, store, memory, chunks, packs) = try await Self.share(chunks: 50)
        let ids = chunks.map { SHA256.hash($0) }
        let bad = 20
        let location = try #require(try await share.location(of: ids[bad]))
        let key = PackFormat.key(packs[0])
        var pack = try await memory.get(key)
        pack[Int(location.offset) + 10] ^= 0xff
        try await memory.put(key, bytes: pack)

        let before = store.calls("get")
        let delivered = try await Self.readAll(share, ids, order: order)
        #expect(store.calls("get") - before == 1)
        for index in ids.indices where index != bad {
            #expect((try? delivered[index]?.get()) == chunks[index], "chunk \(index) shares the read with the corrupt one and is still right")
        }
        do {
            _ = try delivered[bad]?.get()
            Issue.record("the corrupt chunk was delivered as good")
        } catch let error as ShareError {
            #expect(error.code == .corrupt)
            #expect(error.object == key)
            #expect(error.cause.contains(ids[bad].hex))
        }
        // One chunk read alone gives the same error.
        await #expect(throws: ShareError.self) { _ = try await share.readChunk(ids[bad]) }
    }

    @Test func aChunkInNoPackIsNamedAndTheOthersAreRead() async throws {
        let (share, _, _, chunks, _) = try await Self.share(chunks: 10)
        let unknown = SHA256.hash(Array("never stored".utf8))
        let ids = chunks.map { SHA256.hash($0) }
        let delivered = try await Self.readAll(share, Array(ids[..<5]) + [unknown] + Array(ids[5...]), order: .asRequested)
        #expect(delivered.count == 11)
        do {
            _ = try delivered[5]?.get()
            Issue.record("a chunk in no pack was delivered")
        } catch let error as ShareError {
            #expect(error.code == .missingChunk)
            #expect(error.object == "chunk \(unknown.hex)")
        }
        #expect((try? delivered[6]?.get()) == chunks[5])
    }

    @Test func aTruncatedPackFailsOnlyTheChunksPastItsEnd() async throws {
        let (share, _, memory, chunks, packs) = try await Self.share(chunks: 20)
        let ids = chunks.map { SHA256.hash($0) }
        let cut = try #require(try await share.location(of: ids[12]))
        let key = PackFormat.key(packs[0])
        try await memory.put(key, bytes: Array(try await memory.get(key).prefix(Int(cut.offset) + 5)))
        let delivered = try await Self.readAll(share, ids, order: .byLocation)
        for index in 0..<12 { #expect((try? delivered[index]?.get()) == chunks[index]) }
        for index in 12..<20 {
            #expect(throws: ShareError.self) { _ = try delivered[index]?.get() }
        }
    }
}
