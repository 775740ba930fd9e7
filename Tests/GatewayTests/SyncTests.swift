import Backends
import CloudShare
import Foundation
import Gateway
import Glibc
import Testing

/// A sync group for tests: one share (file:// unless `shareURL` names another) and N servers, each with one endpoint.
final class SyncGroup {
    let scratch = Scratch()
    let url: String
    var gateways: [Gateway] = []
    var endpoints: [EndpointConfig] = []

    init(servers: Int, names: [String]? = nil, mode: InitialUploadMode = .merge, shareURL: String? = nil, prepare: ((Int, String) -> Void)? = nil) async throws {
        url = shareURL ?? "file://" + scratch.path + "/share"
        _ = try await CloudShare.create(in: try StoreLocator.open(url), manifest: ShareManifest(chunking: try ChunkingParametersForTests.small(), packSize: 1 << 20))
        for index in 0..<servers {
            let root = scratch.path + "/ep\(index)"
            try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
            prepare?(index, root)
            let gateway = try Gateway(directory: StateDirectory(path: scratch.path + "/state\(index)"), serverName: names?[index] ?? "Server\(index)")
            endpoints.append(try await gateway.addEndpoint(path: root, shareURL: url, mode: mode))
            gateways.append(gateway)
        }
    }

    func root(_ index: Int) -> String { endpoints[index].path }

    /// Closes every server's database, so that other processes can open them.
    func release() { gateways.removeAll() }

    @discardableResult
    func sync(_ index: Int) async throws -> SyncReport {
        try await gateways[index].sync(endpoints[index])
    }

    /// Syncs every endpoint twice in turn: enough for any change to reach all of them.
    func converge() async throws {
        for _ in 0..<2 { for index in endpoints.indices { try await sync(index) } }
    }

    func write(_ index: Int, _ path: String, _ text: String) {
        let full = root(index) + "/" + path
        try! FileManager.default.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try! Data(text.utf8).write(to: URL(fileURLWithPath: full))
    }

    func read(_ index: Int, _ path: String) -> String? {
        (try? Data(contentsOf: URL(fileURLWithPath: root(index) + "/" + path))).map { String(decoding: $0, as: UTF8.self) }
    }

    /// Every synced item of an endpoint (files with content, directories marked), skipping Tiergate's folder.
    func tree(_ index: Int) -> [String: String] {
        var result: [String: String] = [:]
        let base = root(index)
        let enumerator = FileManager.default.enumerator(atPath: base)!
        while let path = enumerator.nextObject() as? String {
            if path.hasPrefix(".tiergate") { continue }
            var isDirectory: ObjCBool = false
            FileManager.default.fileExists(atPath: base + "/" + path, isDirectory: &isDirectory)
            result[path] = isDirectory.boolValue ? "<dir>" : read(index, path)
        }
        return result
    }
}

@Suite(.serialized) struct SyncTests {
    @Test func createModifyDeleteAndRenameReachTheOtherEndpoints() async throws {
        try await Self.createModifyDeleteAndRename(try await SyncGroup(servers: 3))
    }

    /// The scenarios below run on a `file://` share here and on S3 and FileREST in `RemoteSyncTests`.
    static func createModifyDeleteAndRename(_ group: SyncGroup) async throws {
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
        for index in group.endpoints.indices {
            #expect(group.tree(index) == ["papers": "<dir>", "papers/a.txt": "alpha 2", "papers/b.txt": "beta"], "endpoint \(index)")
        }
    }

    @Test func aTouchedButIdenticalFileCommitsItsNewMtimeWithoutNewBytes() async throws {
        let group = try await SyncGroup(servers: 1)
        group.write(0, "same.txt", "unchanged")
        try await group.sync(0)
        let packs = { try FileManager.default.subpathsOfDirectory(atPath: group.scratch.path + "/share/packs").count }
        let before = try packs()
        // Only the ctime moves (same mode again): nothing to commit.
        chmod(group.root(0) + "/same.txt", 0o644)
        #expect(try await group.sync(0).commits == 0)
        var times = [timespec(tv_sec: 1_000_000, tv_nsec: 0), timespec(tv_sec: 1_000_000, tv_nsec: 0)]
        #expect(utimensat(AT_FDCWD, group.root(0) + "/same.txt", &times, 0) == 0)
        let report = try await group.sync(0)
        #expect(report.commits == 1, "the new mtime is committed")
        #expect(try packs() == before, "no content is stored again")
    }

    @Test func concurrentEditsKeepBothVersionsWithAzureConflictNames() async throws {
        try await Self.concurrentEdits(try await SyncGroup(servers: 2, names: ["alpha", "beta"]))
    }

    /// Endpoint 0 (named alpha) and 1 edit one file; the newer write keeps the name.
    static func concurrentEdits(_ group: SyncGroup) async throws {
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
        for index in group.endpoints.indices {
            #expect(group.tree(index) == ["report.docx": "from beta", "report-alpha.docx": "from alpha"], "endpoint \(index)")
        }
    }

    @Test func aDeleteRacingAModifyKeepsTheModifiedFile() async throws {
        try await Self.deleteRacingModify(try await SyncGroup(servers: 2))
    }

    static func deleteRacingModify(_ group: SyncGroup) async throws {
        group.write(0, "keep.txt", "v1")
        try await group.converge()
        try FileManager.default.removeItem(atPath: group.root(0) + "/keep.txt")
        group.write(1, "keep.txt", "v2 modified")
        try await group.sync(0)
        try await group.converge()
        #expect(group.read(0, "keep.txt") == "v2 modified")
        #expect(group.read(1, "keep.txt") == "v2 modified")
    }

    @Test func hostileNamesInTheLogBecomePerItemErrors() async throws {
        let group = try await SyncGroup(servers: 1)
        let share = try await CloudShare.open(try StoreLocator.open(group.url))
        let entry = NamespaceEntry(kind: .file, fileID: NamespaceEntry.newFileID(), size: 0, mode: 0o644, mtime: 0, uid: 0, gid: 0)
        let names = ["../outside", "a/../../x", "/abs", "nul\u{0}", String(repeating: "z", count: 300), String(repeating: "d/", count: 1100) + "f"]
        _ = try await share.log.append(Commit(author: "cloud", authorName: "Cloud", operations: names.map { .upsert($0, entry) } + [.upsert("ok.txt", entry)]))
        try await group.sync(0)
        #expect(group.tree(0) == ["ok.txt": ""])
        let errors = try group.gateways[0].itemErrors().map(\.error)
        #expect(Set(errors.map(\.path)).isSuperset(of: Set(names)))
        #expect(!FileManager.default.fileExists(atPath: group.scratch.path + "/outside"))
    }

    @Test func skippedItemsAreReportedNotSynced() async throws {
        let group = try await SyncGroup(servers: 2)
        group.write(0, "Thumbs.db", "x")
        group.write(0, "draft.tmp", "x")
        group.write(0, "real.txt", "x")
        symlink("/etc/hostname", group.root(0) + "/link")
        try await group.converge()
        #expect(group.tree(1) == ["real.txt": "x"])
        let skipped = try group.gateways[0].itemErrors().map(\.error).filter { $0.kind == "skipped" }.map(\.path)
        #expect(Set(skipped) == ["Thumbs.db", "draft.tmp", "link"])
    }

    @Test func aNewEndpointOnANonEmptyShareDownloadsEverything() async throws {
        let group = try await SyncGroup(servers: 1)
        for index in 0..<50 { group.write(0, "d\(index % 5)/f\(index).txt", "content \(index)") }
        try await group.sync(0)
        let share = try await CloudShare.open(try StoreLocator.open(group.url))
        try await share.writeSnapshot(try await share.namespace())
        let late = Gateway.self
        _ = late
        let root = group.scratch.path + "/late"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        let gateway = try Gateway(directory: StateDirectory(path: group.scratch.path + "/state-late"), serverName: "late")
        let endpoint = try await gateway.addEndpoint(path: root, shareURL: group.url)
        let report = try await gateway.sync(endpoint)
        #expect(report.downloaded == 50)
        #expect(FileManager.default.contents(atPath: root + "/d3/f13.txt") == Data("content 13".utf8))
    }

    @Test func authoritativeUploadReplacesTheCloudNamespace() async throws {
        let group = try await SyncGroup(servers: 1)
        group.write(0, "old.txt", "old")
        group.write(0, "shared.txt", "cloud version")
        try await group.sync(0)
        let root = group.scratch.path + "/auth"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        try Data("local version".utf8).write(to: URL(fileURLWithPath: root + "/shared.txt"))
        let gateway = try Gateway(directory: StateDirectory(path: group.scratch.path + "/state-auth"), serverName: "auth")
        let endpoint = try await gateway.addEndpoint(path: root, shareURL: group.url, mode: .authoritative)
        _ = try await gateway.sync(endpoint)
        try await group.sync(0)
        #expect(group.tree(0) == ["shared.txt": "local version"])
    }

    @Test func overlappingEndpointsAreRefused() async throws {
        let group = try await SyncGroup(servers: 1)
        try FileManager.default.createDirectory(atPath: group.root(0) + "/inner", withIntermediateDirectories: true)
        await #expect(throws: GatewayError.self) { try await group.gateways[0].addEndpoint(path: group.root(0) + "/inner", shareURL: group.url) }
        await #expect(throws: GatewayError.self) { try await group.gateways[0].addEndpoint(path: group.scratch.path, shareURL: group.url) }
    }
}

@Suite(.serialized) struct LongLivedEngineTests {
    @Test func onePassAppliesSeveralCommitsMadeMeanwhile() async throws {
        let group = try await SyncGroup(servers: 2)
        try await group.sync(1)
        for index in 0..<4 {
            group.write(0, "p\(index).txt", "change \(index)")
            try await group.sync(0)
        }
        let report = try await group.sync(1)
        #expect(report.downloaded == 4)
        #expect(Set(group.tree(1).keys) == ["p0.txt", "p1.txt", "p2.txt", "p3.txt"])
    }
}
