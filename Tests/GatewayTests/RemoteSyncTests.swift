import Backends
import Foundation
import Gateway
import Glibc
import Testing

/// A network backend a sync group's cloud share can live on.
enum RemoteBackend: String, CaseIterable, Sendable, CustomTestStringConvertible {
    /// moto, with every request's SigV4 signature checked against an IAM user's keys.
    case s3
    /// The project's Azure Files emulator, with every request's SharedKey signature checked.
    case fileREST

    var testDescription: String { rawValue }

    /// The URL of a fresh, empty place for a share on this backend (its server started on first use).
    func freshShareURL() async throws -> String {
        switch self {
        case .s3: try await RemoteServers.freshS3URL()
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
        #expect(url.hasPrefix(backend == .s3 ? "s3://" : "filerest://"))
        let records = try await StoreLocator.open(url).listAll(prefix: "log/")
        #expect(!records.isEmpty, "the share at \(url) holds no commit records")
    }
}

/// The sync-group behaviours of `SyncTests` and `ConvergenceTests`, with the cloud share on S3 and on
/// FileREST instead of `file://`: what differs is every request crossing HTTP with signatures checked,
/// listings in pages, and `putIfAbsent` being a conditional PUT or a rename without replace.
@Suite(.serialized) struct RemoteSyncTests {
    @Test(arguments: RemoteBackend.allCases)
    func createModifyDeleteAndRenameReachTheOtherEndpoints(on backend: RemoteBackend) async throws {
        let group = try await SyncGroup(on: backend, servers: 3)
        group.write(0, "docs/a.txt", "alpha")
        group.write(0, "docs/b.txt", "beta")
        group.write(0, "top.txt", "top")
        try await group.converge()
        #expect(group.read(1, "docs/a.txt") == "alpha")
        #expect(group.read(2, "top.txt") == "top")

        group.write(1, "docs/a.txt", "alpha 2")
        try FileManager.default.removeItem(atPath: group.root(1) + "/top.txt")
        try FileManager.default.moveItem(atPath: group.root(1) + "/docs", toPath: group.root(1) + "/papers")
        let renameReport = try await group.sync(1)
        #expect(renameReport.renamed == 1, "a directory rename is committed as a rename")
        try await group.converge()
        for index in 0..<3 {
            #expect(group.tree(index) == ["papers": "<dir>", "papers/a.txt": "alpha 2", "papers/b.txt": "beta"], "endpoint \(index)")
        }
        try await group.expectCommitsOnTheRemoteStore(backend)
    }

    @Test(arguments: RemoteBackend.allCases)
    func concurrentEditsKeepBothVersionsWithAzureConflictNames(on backend: RemoteBackend) async throws {
        let group = try await SyncGroup(on: backend, servers: 3, names: ["alpha", "beta", "gamma"])
        group.write(0, "report.docx", "base")
        try await group.converge()
        group.write(0, "report.docx", "from alpha")
        var old = [timespec(tv_sec: 2_000_000, tv_nsec: 0), timespec(tv_sec: 2_000_000, tv_nsec: 0)]
        utimensat(AT_FDCWD, group.root(0) + "/report.docx", &old, 0)
        group.write(1, "report.docx", "from beta")   // newer mtime: keeps the name
        try await group.sync(0)
        let report = try await group.sync(1)
        #expect(report.conflicts == 1)
        try await group.converge()
        for index in 0..<3 {
            #expect(group.tree(index) == ["report.docx": "from beta", "report-alpha.docx": "from alpha"], "endpoint \(index)")
        }
        try await group.expectCommitsOnTheRemoteStore(backend)
    }

    @Test(arguments: RemoteBackend.allCases)
    func aDeleteRacingAModifyKeepsTheModifiedFile(on backend: RemoteBackend) async throws {
        let group = try await SyncGroup(on: backend, servers: 2)
        group.write(0, "keep.txt", "v1")
        try await group.converge()
        try FileManager.default.removeItem(atPath: group.root(0) + "/keep.txt")
        group.write(1, "keep.txt", "v2 modified")
        try await group.sync(0)
        try await group.converge()
        #expect(group.read(0, "keep.txt") == "v2 modified")
        #expect(group.read(1, "keep.txt") == "v2 modified")
        try await group.expectCommitsOnTheRemoteStore(backend)
    }

    /// 200 random creates, edits, deletes, renames and directory moves on three endpoints with syncs
    /// interleaved at random (the workload of `ConvergenceTests`, shorter); then every endpoint holds the
    /// identical tree and no item is left not syncing.
    @Test(arguments: RemoteBackend.allCases)
    func aRandomWorkloadOnThreeEndpointsConverges(on backend: RemoteBackend) async throws {
        let group = try await SyncGroup(on: backend, servers: 3)
        var random = SeededGenerator(state: backend == .s3 ? 31 : 47)
        try await Self.randomWorkload(group, steps: 200, using: &random)
        for _ in 0..<3 { for index in 0..<3 { try await group.sync(index) } }
        let reference = group.tree(0)
        #expect(reference.count > 10, "the workload left a non-trivial tree")
        for index in 1..<3 {
            let tree = group.tree(index)
            #expect(tree == reference, "endpoint \(index) differs: only there \(Set(tree.keys).subtracting(reference.keys).sorted().prefix(10)), missing \(Set(reference.keys).subtracting(tree.keys).sorted().prefix(10)), content \(tree.filter { reference[$0.key] != nil && reference[$0.key] != $0.value }.keys.sorted().prefix(10))")
        }
        for index in 0..<3 {
            let errors = try group.gateways[index].itemErrors().map(\.error)
            #expect(errors.isEmpty, "endpoint \(index) has items not syncing: \(errors.prefix(5))")
        }
        try await group.expectCommitsOnTheRemoteStore(backend)
    }

    static func randomWorkload(_ group: SyncGroup, steps: Int, using random: inout SeededGenerator) async throws {
        let fm = FileManager.default
        for step in 0..<steps {
            let index = Int.random(in: 0..<group.endpoints.count, using: &random)
            let root = group.root(index)
            let tree = group.tree(index)
            let files = tree.filter { $0.value != "<dir>" }.map(\.key).sorted()
            let dirs = tree.filter { $0.value == "<dir>" }.map(\.key).sorted()
            func inRandomDirectory(_ name: String) -> String {
                let dir = (dirs + [""]).randomElement(using: &random)!
                return (dir.isEmpty ? "" : dir + "/") + name
            }
            switch Int.random(in: 0..<100, using: &random) {
            case 0..<30:
                group.write(index, inRandomDirectory("f\(step).txt"), "created \(step) on \(index)")
            case 30..<50:
                if let file = files.randomElement(using: &random) { group.write(index, file, "edited \(step) on \(index)") }
            case 50..<60:
                if let file = files.randomElement(using: &random) { try? fm.removeItem(atPath: root + "/" + file) }
            case 60..<70:
                if let file = files.randomElement(using: &random) { try? fm.moveItem(atPath: root + "/" + file, toPath: root + "/" + inRandomDirectory("r\(step).txt")) }
            case 70..<78:
                try? fm.createDirectory(atPath: root + "/" + inRandomDirectory("d\(step)"), withIntermediateDirectories: true)
            case 78..<82:
                if let dir = dirs.randomElement(using: &random) { try? fm.moveItem(atPath: root + "/" + dir, toPath: root + "/m\(step)") }
            case 82..<85:
                if let dir = dirs.randomElement(using: &random) { try? fm.removeItem(atPath: root + "/" + dir) }
            default:
                try await group.sync(index)
            }
        }
    }
}
