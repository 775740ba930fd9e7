import Backends
import CloudShare
import Foundation
@testable import Gateway
import Glibc
import Hashing
import Testing

/// A new mode, owner or mtime of a stub converges to the other servers like a full file's, whatever
/// happens to the stub before the next pass looks at it (a recall, a touch), and the stub reads its
/// exact bytes on every server afterwards.
@Suite(.serialized) struct StubAttributeAdversaryTests {
    static func mode(_ path: String) -> UInt32? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return UInt32(info.st_mode & 0o7777)
    }

    static func mtime(_ path: String) -> Int? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return info.st_mtim.tv_sec
    }

    /// Two servers with one 400 KB file; server 1 has it as a stub (tiered by hand).
    static func groupWithStub(seed: UInt64) async throws -> (SyncGroup, [UInt8]) {
        let group = try await SyncGroup(servers: 2)
        let content = randomBytes(400_000, seed: seed)
        group.scratch.write("ep0/f.bin", content)
        try await group.converge()
        _ = try group.gateways[1].setTiering("1", TieringConfig(volumeFreeSpacePercent: 0))
        _ = try await group.gateways[1].tier(group.root(1) + "/f.bin")
        #expect(StubFile.marker(atPath: group.root(1) + "/f.bin") == .tiered)
        #expect(Self.mode(group.root(0) + "/f.bin") == 0o644)
        return (group, content)
    }

    /// Control: the new mode of a stub reaches the other server.
    @Test func aNewModeOfAStubReachesTheOtherServer() async throws {
        let (group, content) = try await Self.groupWithStub(seed: 71)
        #expect(chmod(group.root(1) + "/f.bin", 0o600) == 0)
        try await group.converge()
        #expect(Self.mode(group.root(0) + "/f.bin") == 0o600)
        #expect(try readAll(group.root(0) + "/f.bin") == content)
        _ = try await group.gateways[1].recall(group.root(1) + "/f.bin")
        #expect(try readAll(group.root(1) + "/f.bin") == content)
        #expect(Self.mode(group.root(1) + "/f.bin") == 0o600)
    }

    /// The stub is recalled (a read, `tiergate recall`) after its mode changed and before a pass looked
    /// at it: the new mode is still committed and reaches the other server.
    @Test func aNewModeOfAStubRecalledBeforeThePassStillReachesTheOtherServer() async throws {
        let (group, content) = try await Self.groupWithStub(seed: 72)
        #expect(chmod(group.root(1) + "/f.bin", 0o600) == 0)
        _ = try await group.gateways[1].recall(group.root(1) + "/f.bin")
        #expect(try readAll(group.root(1) + "/f.bin") == content)
        try await group.converge()
        #expect(Self.mode(group.root(1) + "/f.bin") == 0o600)
        #expect(Self.mode(group.root(0) + "/f.bin") == 0o600, "the mode set on server 1 is lost: server 0 keeps 0644")
        #expect(try readAll(group.root(0) + "/f.bin") == content)
    }

    /// The stub's mtime and mode change (a touch and a chmod): the pass recalls it, finds the recorded
    /// content, and must still commit the new mtime and mode, as it does for a full file.
    @Test func aTouchedAndChmoddedStubCommitsItsNewMtimeAndMode() async throws {
        let (group, content) = try await Self.groupWithStub(seed: 73)
        let path = group.root(1) + "/f.bin"
        var times = [timespec(tv_sec: 1_500_000_000, tv_nsec: 0), timespec(tv_sec: 1_500_000_000, tv_nsec: 0)]
        #expect(utimensat(AT_FDCWD, path, &times, 0) == 0)
        #expect(chmod(path, 0o600) == 0)
        try await group.converge()
        #expect(try readAll(path) == content)
        #expect(try readAll(group.root(0) + "/f.bin") == content)
        #expect(Self.mtime(group.root(0) + "/f.bin") == 1_500_000_000, "the mtime set on server 1 is lost")
        #expect(Self.mode(group.root(0) + "/f.bin") == 0o600, "the mode set on server 1 is lost")
    }

    /// Both servers hold stubs; one changes the mode: both stubs recall their exact bytes afterwards,
    /// and a later edit of the content on the first reaches the second whole.
    @Test func aNewModeBetweenTwoStubsThenRecallsAndAnEdit() async throws {
        let (group, content) = try await Self.groupWithStub(seed: 74)
        _ = try group.gateways[0].setTiering("1", TieringConfig(volumeFreeSpacePercent: 0))
        _ = try await group.gateways[0].tier(group.root(0) + "/f.bin")
        #expect(chmod(group.root(1) + "/f.bin", 0o640) == 0)
        try await group.converge()
        #expect(Self.mode(group.root(0) + "/f.bin") == 0o640)
        for index in 0..<2 {
            _ = try await group.gateways[index].recall(group.root(index) + "/f.bin")
            #expect(try readAll(group.root(index) + "/f.bin") == content, "server \(index)")
            #expect(StubFile.marker(atPath: group.root(index) + "/f.bin") == nil)
        }
        // Tiered again from the recorded version, and recalled again.
        _ = try await group.gateways[1].tier(group.root(1) + "/f.bin")
        _ = try await group.gateways[1].recall(group.root(1) + "/f.bin")
        #expect(try readAll(group.root(1) + "/f.bin") == content)
        let edited = randomBytes(400_000, seed: 75)
        group.scratch.write("ep1/f.bin", edited)
        try await group.converge()
        #expect(try readAll(group.root(0) + "/f.bin") == edited)
        #expect(Self.mode(group.root(0) + "/f.bin") == 0o640)
    }

    /// A renamed and chmodded stub: one path, the new mode, the exact bytes on both servers.
    @Test func aRenamedAndChmoddedStubConverges() async throws {
        let (group, content) = try await Self.groupWithStub(seed: 76)
        #expect(rename(group.root(1) + "/f.bin", group.root(1) + "/g.bin") == 0)
        #expect(chmod(group.root(1) + "/g.bin", 0o600) == 0)
        try await group.converge()
        #expect(!FileManager.default.fileExists(atPath: group.root(0) + "/f.bin"))
        #expect(Self.mode(group.root(0) + "/g.bin") == 0o600)
        #expect(try readAll(group.root(0) + "/g.bin") == content)
        _ = try await group.gateways[1].recall(group.root(1) + "/g.bin")
        #expect(try readAll(group.root(1) + "/g.bin") == content)
        let names = try FileManager.default.contentsOfDirectory(atPath: group.root(0)).filter { !$0.hasPrefix(".") }
        #expect(names == ["g.bin"])
    }

    /// A chmod of a stub races a content edit on the other server: both contents survive somewhere.
    @Test func aChmodOfAStubRacingAnEditOnTheOtherServerLosesNoContent() async throws {
        let (group, content) = try await Self.groupWithStub(seed: 77)
        #expect(chmod(group.root(1) + "/f.bin", 0o600) == 0)
        let edited = randomBytes(300_000, seed: 78)
        group.scratch.write("ep0/f.bin", edited)
        try await group.sync(1)     // the chmod commits first
        try await group.converge()
        for index in 0..<2 {
            let names = try FileManager.default.contentsOfDirectory(atPath: group.root(index)).filter { !$0.hasPrefix(".") }.sorted()
            var contents: [[UInt8]] = []
            for name in names {
                if StubFile.marker(atPath: group.root(index) + "/" + name) != nil { _ = try await group.gateways[index].recall(group.root(index) + "/" + name) }
                contents.append(try readAll(group.root(index) + "/" + name))
            }
            #expect(contents.contains(edited), "server \(index): the edit is lost (\(names))")
            #expect(try readAll(group.root(index) + "/f.bin") == edited, "server \(index): the newer write keeps the name")
        }
    }
}

/// A writer whose chunk index was never loaded (or loaded before a pack was marked for deletion)
/// commits a reference to a chunk whose only copy is in a pack the garbage collector marked: the
/// commit must store the chunk again, so that the sweep after the safety interval deletes nothing a
/// commit references. The reference does not come through the upload session (as a stub's chunk list,
/// or a chunk a migration found indexed earlier, does not).
@Suite struct UnloadedIndexCollectionTests {
    static let safety: Double = 60

    static func collect(_ store: any ObjectStore, now: @escaping @Sendable () -> Date) async throws -> GarbageCollector.Report {
        var options = GarbageCollector.Options()
        options.grace = 0
        options.safetyInterval = safety
        options.now = now
        return try await GarbageCollector(store: store, options: options).run()
    }

    @Test(arguments: [false, true])
    func aCommitReferencingAChunkOfAMarkedPackStoresItAgain(indexLoadedBefore: Bool) async throws {
        let store = MemoryStore()
        _ = try await CloudShare.create(in: store, manifest: ShareManifest(packSize: 1 << 20))
        let writer = try await CloudShare.open(store)
        if indexLoadedBefore { try await writer.ensureIndexLoaded() }
        // An orphan pack (a writer killed before its commit) holding X, marked by a collector.
        let x = randomBytes(30_000, seed: 91)
        let orphanWriter = try await CloudShare.open(store)
        let orphanUploader = orphanWriter.makeUploader()
        try await orphanUploader.add(id: SHA256.hash(x), bytes: x)
        try await orphanUploader.finish()
        let orphan = try #require(await orphanUploader.packs.first)
        let marked = try await Self.collect(store, now: { Date() })
        #expect(marked.markedPending.packs == 1)

        // The writer commits a file made of X without storing X through its session.
        let entry = NamespaceEntry(kind: .file, fileID: NamespaceEntry.newFileID(), size: Int64(x.count), mode: 0o644, mtime: 0, uid: 0, gid: 0,
                                   chunks: [ChunkRef(id: SHA256.hash(x), length: UInt32(x.count))])
        let log = writer.log
        let sequence = try await writer.appendCommit(author: "w", authorName: "W", operations: [.upsert("x.bin", entry)],
                                                     uploader: writer.makeUploader()) { try await log.append($0) }
        let commit = try await log.read(sequence)
        #expect(!commit.packs.isEmpty && !commit.packs.contains(orphan.hex), "the commit names \(commit.packs), orphan \(orphan.hex)")

        // The sweep after the safety interval: the file still reads from a fresh reader.
        _ = try await Self.collect(store, now: { Date().addingTimeInterval(Self.safety * 2) })
        let reader = try await CloudShare.open(store)
        #expect(try await reader.readChunk(SHA256.hash(x)) == x)
        for name in commit.packs {
            #expect(try await store.head(PackFormat.key(try #require(Digest32(hex: name)))) != nil, "a pack the commit names is gone")
        }
    }
}
