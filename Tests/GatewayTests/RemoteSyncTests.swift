import Backends
import Foundation
import Gateway
import Glibc
import ObjectStoreServers
import Testing

/// A network backend a sync group's cloud share can live on.
enum RemoteBackend: String, CaseIterable, Sendable, CustomTestStringConvertible {
    /// moto, with every request's SigV4 signature checked against an IAM user's keys.
    case s3
    /// SeaweedFS, a real object store, in a bucket of its own (see ``RealS3Server``).
    case seaweedFS
    /// Ceph's RADOS Gateway on a one-node cluster, in a bucket of its own.
    case cephRGW
    /// The project's Azure Files emulator, with every request's SharedKey signature checked.
    case fileREST

    var testDescription: String { rawValue }

    /// The URL of a fresh, empty place for a share on this backend (its server started on first use).
    func freshShareURL() async throws -> String {
        switch self {
        case .s3: try await RemoteServers.freshS3URL()
        case .seaweedFS: try await RealS3Server.seaweedFS.running().freshBucket(prefix: "sync")
        case .cephRGW: try await RealS3Server.cephRGW.running().freshBucket(prefix: "sync")
        case .fileREST: try await RemoteServers.freshFileRESTURL()
        }
    }
}

extension SyncGroup {
    /// A sync group whose share lives on `backend`.
    convenience init(on backend: RemoteBackend, servers: Int, names: [String]? = nil) async throws {
        try await self.init(servers: servers, names: names, shareURL: try await backend.freshShareURL())
    }

    /// Proves the share's commit log is on the remote store, so a test cannot pass against some local folder.
    func expectCommitsOnTheRemoteStore(_ backend: RemoteBackend) async throws {
        #expect(url.hasPrefix(backend == .fileREST ? "filerest://" : "s3://"))
        let records = try await StoreLocator.open(url).listAll(prefix: "log/")
        #expect(!records.isEmpty, "the share at \(url) holds no commit records")
    }
}

/// The sync-group behaviours of `SyncTests` and `ConvergenceTests`, with the cloud share on S3 (moto,
/// SeaweedFS and Ceph RGW) and on FileREST instead of `file://`: what differs is every request crossing
/// HTTP with signatures checked, listings in pages, and `putIfAbsent` being a conditional PUT or a rename
/// without replace.
@Suite(.serialized) struct RemoteSyncTests {
    @Test(arguments: RemoteBackend.allCases)
    func createModifyDeleteAndRenameReachTheOtherEndpoints(on backend: RemoteBackend) async throws {
        let group = try await SyncGroup(on: backend, servers: 3)
        try await SyncTests.createModifyDeleteAndRename(group)
        try await group.expectCommitsOnTheRemoteStore(backend)
    }

    @Test(arguments: RemoteBackend.allCases)
    func concurrentEditsKeepBothVersionsWithAzureConflictNames(on backend: RemoteBackend) async throws {
        let group = try await SyncGroup(on: backend, servers: 3, names: ["alpha", "beta", "gamma"])
        try await SyncTests.concurrentEdits(group)
        try await group.expectCommitsOnTheRemoteStore(backend)
    }

    @Test(arguments: RemoteBackend.allCases)
    func aDeleteRacingAModifyKeepsTheModifiedFile(on backend: RemoteBackend) async throws {
        let group = try await SyncGroup(on: backend, servers: 2)
        try await SyncTests.deleteRacingModify(group)
        try await group.expectCommitsOnTheRemoteStore(backend)
    }

    /// 200 random creates, edits, deletes, renames and directory moves on three endpoints with syncs
    /// interleaved at random (the workload of `ConvergenceTests`, shorter); then every endpoint holds the
    /// identical tree and no item is left not syncing.
    @Test(arguments: RemoteBackend.allCases)
    func aRandomWorkloadOnThreeEndpointsConverges(on backend: RemoteBackend) async throws {
        let group = try await SyncGroup(on: backend, servers: 3)
        var random = SeededGenerator(state: backend == .s3 ? 31 : 47)
        try await ConvergenceTests.randomWorkload(group, steps: 200, using: &random)
        try await ConvergenceTests.expectConverged(group, moreItemsThan: 10)
        try await group.expectCommitsOnTheRemoteStore(backend)
    }
}
