import Backends
import CloudShare
import Foundation
@testable import Gateway
import Glibc
import Hashing
import Synchronization
import Testing

/// Counts the GETs of pack objects a share's readers send.
final class PackGetCounter: ObjectStore {
    let base: any ObjectStore
    private let count = Mutex(0)

    init(_ base: any ObjectStore) { self.base = base }

    var packGets: Int { count.withLock { $0 } }
    var displayName: String { base.displayName }

    func get(_ key: String, range: Range<Int64>?) async throws -> [UInt8] {
        if key.hasPrefix("packs/") { count.withLock { $0 += 1 } }
        return try await base.get(key, range: range)
    }
    func put(_ key: String, bytes: [UInt8]) async throws { try await base.put(key, bytes: bytes) }
    func putIfAbsent(_ key: String, bytes: [UInt8]) async throws { try await base.putIfAbsent(key, bytes: bytes) }
    func head(_ key: String) async throws -> ObjectInfo { try await base.head(key) }
    func list(prefix: String, startAfter: String?, limit: Int) async throws -> ListPage {
        try await base.list(prefix: prefix, startAfter: startAfter, limit: limit)
    }
    func delete(_ key: String) async throws { try await base.delete(key) }
    func removeAbandonedWrites(olderThan age: Double) async throws -> Int { try await base.removeAbandonedWrites(olderThan: age) }
}

/// Downloads, `get` and recall read a pack's chunks with few ranged GETs, not one per chunk, and write
/// exactly the bytes stored.
@Suite struct CoalescedDownloadTests {
    /// 300 small files (one chunk each) and a 2 MiB file of 64 KiB chunks, stored by migrate.
    static func smallFileShare(_ scratch: Scratch) async throws -> (LocalStore, [String: [UInt8]], chunks: Int, packs: Int) {
        var expected: [String: [UInt8]] = [:]
        for index in 0..<300 {
            let path = "d\(index % 5)/f\(index)"
            expected[path] = randomBytes(500 + index * 53 % 9000, seed: UInt64(index) + 5)
            scratch.write("src/" + path, expected[path]!)
        }
        expected["large"] = randomBytes(2 << 20, seed: 4)
        scratch.write("src/large", expected["large"]!)
        let store = LocalStore(root: scratch.path + "/share")
        let share = try await CloudShare.create(in: store, manifest: ShareManifest(chunking: try ChunkingParametersForTests.small()))
        // One batch whatever the machine's speed: a batch committed on time would seal a pack early.
        var options = Migration.Options()
        options.batchSeconds = 3_600
        _ = try await Migration.run(source: scratch.path + "/src", share: share, options: options)
        let namespace = try await share.namespace()
        let chunks = Set(namespace.entries.values.flatMap { $0.chunks.map(\.id) }).count
        return (store, expected, chunks, try await store.listAll(prefix: "packs/").count)
    }

    @Test func getWritesManySmallFilesWithAGETPerPackAndExactBytes() async throws {
        let scratch = Scratch()
        let (store, expected, chunks, packs) = try await Self.smallFileShare(scratch)
        #expect(chunks > 300 && packs <= 2, "\(chunks) chunks in \(packs) packs")
        let counter = PackGetCounter(store)
        let report = try await TreeExport.run(share: try await CloudShare.open(counter), destination: scratch.path + "/out")
        #expect(report.files == expected.count && report.skipped.isEmpty)
        // Each batch reads its part of a pack (up to 16 MiB a GET), twice when migrate's parallel readers
        // stored a chunk it wants more than a gap away from the others. Never one GET per chunk.
        let batches = ShareContentWriter.batches(Array(expected.values)) { Int64($0.count) }.count
        #expect(counter.packGets <= 2 * batches * packs && counter.packGets * 10 < chunks, "\(counter.packGets) pack GETs for \(chunks) chunks in \(packs) packs")
        let identical = expected.allSatisfy { scratch.read("out/" + $0.key) == $0.value }
        #expect(identical)
    }

    @Test func aSyncDownloadOfManySmallFilesReadsPacksNotChunks() async throws {
        let scratch = Scratch()
        let (store, expected, chunks, packs) = try await Self.smallFileShare(scratch)
        let counter = PackGetCounter(store)
        let share = try await CloudShare.open(counter)
        let namespace = try await share.namespace()
        let files = namespace.entries.filter { $0.value.kind == .file }.sorted { $0.key < $1.key }.enumerated().map { ($0.offset, $0.element.value) }
        let staging = try Posix.open(scratch.path, O_RDONLY | O_DIRECTORY)
        defer { close(staging) }
        var staged = 0
        for batch in ShareContentWriter.batches(files, size: { $0.1.size }) {
            for (_, result) in await SyncEngine.stage(batch, share: share, staging: staging) {
                let file = try result.get()
                staged += 1
                unlinkat(staging, file.name, 0)
            }
        }
        #expect(staged == expected.count)
        let batches = ShareContentWriter.batches(files, size: { $0.1.size }).count
        #expect(counter.packGets <= 2 * batches * packs && counter.packGets * 10 < chunks, "\(counter.packGets) pack GETs for \(chunks) chunks in \(packs) packs")
    }

    @Test func aWholeRecallReadsAdjacentChunksTogether() async throws {
        let (group, content) = try await tieredGroup(size: 3 << 20)
        let share = try await CloudShare.open(try StoreLocator.open(group.url))
        try await Tierer(share: share, state: group.gateways[0].state, endpoint: group.endpoints[0]).tier("big.bin")
        let record = try #require(try group.gateways[0].state.entry(group.endpoints[0].id, "big.bin"))
        let layout = try #require(try RecallEngine(share: share, state: group.gateways[0].state, endpoint: group.endpoints[0])
            .layout(fileID: record.fileID))
        let counter = PackGetCounter(try StoreLocator.open(group.url))
        let recaller = RecallEngine(share: try await CloudShare.open(counter), state: group.gateways[0].state, endpoint: group.endpoints[0])
        _ = try await recaller.recall("big.bin")
        var packSet: Set<Digest32> = []
        for chunk in layout { if let pack = try await share.location(of: chunk.id)?.pack { packSet.insert(pack) } }
        let packs = packSet.count
        #expect(layout.count > 3 * packs, "\(layout.count) chunks in \(packs) packs")
        #expect(counter.packGets == packs, "\(layout.count) adjacent chunks of \(packs) packs took \(counter.packGets) GETs")
        let read = try [UInt8](Data(contentsOf: URL(fileURLWithPath: group.root(0) + "/big.bin")))
        let identical = read == content
        #expect(identical)
    }

    /// The real `tiergate` against moto: a new endpoint's first sync and a `get` of 400 small files
    /// stored by `put` send a few GETs per pack (moto counts them), where one per chunk was 400.
    @Test func aSyncAndAGetFromS3SendAFewGETsPerPackNotOnePerChunk() async throws {
        let scratch = Scratch()
        let url = try await RemoteServers.freshS3URL()
        var expected: [String: [UInt8]] = [:]
        for index in 0..<400 {
            let path = "d\(index % 4)/f\(index)"
            expected[path] = randomBytes(1000 + index * 37 % 7000, seed: UInt64(index) + 9)
            scratch.write("src/" + path, expected[path]!)
        }
        // The keys moto checks signatures with, as a user of `tiergate` exports them.
        let environment = ["AWS_ACCESS_KEY_ID": String(cString: getenv("AWS_ACCESS_KEY_ID")),
                           "AWS_SECRET_ACCESS_KEY": String(cString: getenv("AWS_SECRET_ACCESS_KEY"))]
        func tiergate(_ arguments: [String]) throws {
            let run = try TiergateProcess.run(arguments, logs: scratch.path, environment: environment)
            #expect(run.status == 0, "tiergate \(arguments.first ?? ""): \(run.output)")
        }
        try tiergate(["share", "create", url])
        try tiergate(["put", url, scratch.path + "/src"])
        let packs = try await StoreLocator.open(url).listAll(prefix: "packs/").count
        func packGets() async throws -> Int { try await RemoteServers.s3RequestCounts(url)["GET packs"] ?? 0 }
        let batches = (expected.count + ShareContentWriter.batchFiles - 1) / ShareContentWriter.batchFiles
        // A batch's chunks lie where `put`'s parallel readers happened to store them: mostly one GET per
        // batch and pack, a second one when a batch also wants a chunk more than a gap away. Never one per chunk.
        let bound = 2 * batches * packs

        let state = scratch.path + "/state", endpoint = scratch.path + "/ep"
        try FileManager.default.createDirectory(atPath: endpoint, withIntermediateDirectories: true)
        try tiergate(["endpoint", "add", endpoint, "--share", url, "--state-dir", state])
        let beforeSync = try await packGets()
        try tiergate(["sync", "--state-dir", state])
        let syncGets = try await packGets() - beforeSync
        #expect(syncGets >= 1 && syncGets <= bound && syncGets * 10 < expected.count, "the first sync of 400 files in \(packs) packs sent \(syncGets) pack GETs")
        let synced = expected.allSatisfy { scratch.read("ep/" + $0.key) == $0.value }
        #expect(synced)

        let beforeGet = try await packGets()
        try tiergate(["get", url, scratch.path + "/out"])
        let getGets = try await packGets() - beforeGet
        #expect(getGets >= 1 && getGets <= bound && getGets * 10 < expected.count, "a get of 400 files in \(packs) packs sent \(getGets) pack GETs")
        let restored = expected.allSatisfy { scratch.read("out/" + $0.key) == $0.value }
        #expect(restored)
    }
}
