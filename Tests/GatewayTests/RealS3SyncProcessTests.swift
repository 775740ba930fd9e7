import Backends
import Foundation
import Gateway
import ObjectStoreServers
import Testing

/// The real `tiergate` binary syncing through real object stores (SeaweedFS and Ceph's RADOS Gateway,
/// started on loopback by the test setup), with the share in a bucket of its own. The keys reach
/// `tiergate` through the credentials file the share URL names, as they would in a user's configuration.
@Suite(.serialized) struct RealS3SyncProcessTests {
    /// Two endpoints of one share: files created on one (a small one, an empty one, and one of several
    /// chunks in several packs) reach the other through `tiergate sync`, and an edit comes back.
    @Test(arguments: RealS3Server.allCases)
    func filesCreatedOnOneEndpointReachTheOtherThroughTiergateSync(on server: RealS3Server) async throws {
        let running = try await server.running()
        let group = try await SyncGroup(servers: 2, shareURL: try await running.freshBucket(prefix: "share"))
        group.release()
        var random = SeededGenerator(state: 5)
        let large = String((0..<3_000_000).map { _ in Character(UnicodeScalar(UInt8.random(in: 97...122, using: &random))) })
        group.write(0, "docs/hello.txt", "hello from server 0")
        group.write(0, "docs/empty.txt", "")
        group.write(0, "large.txt", large)
        for index in 0..<2 {
            try TiergateProcess.expect(0, ["sync", "--state-dir", group.scratch.path + "/state\(index)"], logs: group.scratch.path)
        }
        #expect(group.tree(1) == ["docs": "<dir>", "docs/hello.txt": "hello from server 0", "docs/empty.txt": "", "large.txt": large],
                "on \(running.version); its log ends: \(running.logTail())")

        group.write(1, "docs/hello.txt", "edited on server 1")
        for index in [1, 0] {
            try TiergateProcess.expect(0, ["sync", "--state-dir", group.scratch.path + "/state\(index)"], logs: group.scratch.path)
        }
        #expect(group.read(0, "docs/hello.txt") == "edited on server 1")
        let store = try StoreLocator.open(group.url)
        #expect(try await store.listAll(prefix: "log/").count >= 2, "the commit log is not on \(running.version)")
        #expect(try await store.listAll(prefix: "packs/").count >= 2, "a 3 MB file in 1 MiB packs takes several packs")
    }

    /// Two `tiergate sync` processes racing for the same log sequence numbers, round after round, while a
    /// third server runs `tiergate serve`: the store's `If-None-Match: *` lets exactly one append win, the
    /// loser rebases and retries, and the daemon applies every commit (`CommitRaceProcessTests`).
    @Test(arguments: RealS3Server.allCases)
    func racingSyncsAppendThroughConditionalWrites(on server: RealS3Server) async throws {
        let running = try await server.running()
        let group = try await SyncGroup(servers: 3, shareURL: try await running.freshBucket(prefix: "race"))
        let lostAppends = try await CommitRaceProcessTests.racingSyncs(group)
        #expect(lostAppends > 0, "in 12 rounds of two syncs started together, no append to \(running.version) was ever lost and retried")
    }
}
