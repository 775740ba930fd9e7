import Backends
import CloudShare
import Foundation
import Gateway
import Glibc
import Testing

/// The share's chunk index is loaded when a pass needs it (content to store or to read), not when the
/// share is opened: a one-shot `tiergate sync` with nothing to do, or `status`, reads no index segment.
/// Counted with the real `tiergate` against moto, which counts the requests each share receives.
@Suite struct OnDemandIndexTests {
    @Test func aPassWithNothingToStoreOrReadSendsNoIndexRequest() async throws {
        let scratch = Scratch()
        let url = try await RemoteServers.freshS3URL()
        for index in 0..<40 {
            scratch.write("a/d\(index % 4)/f\(index)", randomBytes(3000 + index * 91, seed: UInt64(index) + 5))
        }
        let environment = ["AWS_ACCESS_KEY_ID": String(cString: getenv("AWS_ACCESS_KEY_ID")),
                           "AWS_SECRET_ACCESS_KEY": String(cString: getenv("AWS_SECRET_ACCESS_KEY"))]
        func tiergate(_ arguments: [String]) throws {
            let run = try TiergateProcess.run(arguments, logs: scratch.path, environment: environment)
            #expect(run.status == 0, "tiergate \(arguments.joined(separator: " ")): \(run.output)")
        }
        func indexGets() async throws -> Int { try await RemoteServers.s3RequestCounts(url)["GET index"] ?? 0 }
        let (stateA, stateB) = (scratch.path + "/state-a", scratch.path + "/state-b")
        try FileManager.default.createDirectory(atPath: scratch.path + "/b", withIntermediateDirectories: true)
        try tiergate(["share", "create", url])
        try tiergate(["endpoint", "add", scratch.path + "/a", "--share", url, "--state-dir", stateA])
        try tiergate(["sync", "--state-dir", stateA])
        try tiergate(["endpoint", "add", scratch.path + "/b", "--share", url, "--state-dir", stateB])
        let segments = try await StoreLocator.open(url).listAll(prefix: "index/").count
        let beforeDownload = try await indexGets()
        try tiergate(["sync", "--state-dir", stateB])
        #expect(scratch.read("b/d1/f5") == scratch.read("a/d1/f5"))
        // The download's batches run at once and all need the index: they share one load.
        #expect(try await indexGets() - beforeDownload == segments, "a first download reads each of the \(segments) index segments once")

        let before = try await indexGets()
        try tiergate(["sync", "--state-dir", stateA])
        try tiergate(["sync", "--state-dir", stateB])
        try tiergate(["status", "--state-dir", stateA])
        #expect(try await indexGets() == before, "passes with no change and status read no index segment")

        // An edit is stored against the index (loaded then) and reaches the other endpoint whole.
        scratch.write("a/d2/f6", randomBytes(70_000, seed: 77))
        try tiergate(["sync", "--state-dir", stateA])
        #expect(try await indexGets() > before, "a pass with content to store loads the index")
        try tiergate(["sync", "--state-dir", stateB])
        #expect(scratch.read("b/d2/f6") == randomBytes(70_000, seed: 77))
    }
}

/// A daemon whose index was loaded before another server stored a file, and that received that file as
/// a stub (no content fetched, so no index segment read), commits a new mode of the file: the mode
/// reaches the other server (nothing recalled), and the commit names the pack holding the file's
/// chunks, as every commit does.
@Suite(.serialized) struct StaleIndexCommitTests {
    @Test func aNewModeOfAStubReachesTheOtherServerAndItsCommitNamesAPackStoredSinceTheIndexWasLoaded() async throws {
        let group = try await SyncGroup(servers: 2) { index, root in
            if index == 0 { try! Data("first\n".utf8).write(to: URL(fileURLWithPath: root + "/first.txt")) }
        }
        try await group.converge()
        group.release()
        let state = { (index: Int) in group.scratch.path + "/state\(index)" }
        _ = try TiergateProcess.expect(0, ["endpoint", "tiering", group.root(1), "--free-space", "0", "--download", "namespace-only", "--state-dir", state(1)],
                                   logs: group.scratch.path)
        var daemons: [TiergateProcess] = []
        defer {
            for daemon in daemons {
                daemon.send(SIGTERM)
                _ = daemon.exitStatus()
            }
        }
        for index in 0..<2 {
            let daemon = try TiergateProcess(["serve", "--state-dir", state(index), "--poll-interval", "0.2"], logs: group.scratch.path)
            daemons.append(daemon)
            #expect(daemon.waitFor("trigger=start", inErrorOutput: true), "serve \(index): \(daemon.errorOutput.suffix(2000))")
        }
        func waitUntil(_ what: String, _ condition: () -> Bool) -> Bool {
            let deadline = Date().addingTimeInterval(30)
            while Date() < deadline {
                if condition() { return true }
                usleep(100_000)
            }
            Issue.record("timed out waiting until \(what)")
            return false
        }
        // Server 1 stores content: its daemon loads the index.
        group.write(1, "from-1.txt", "stored by server 1\n")
        guard waitUntil("server 0 has from-1.txt", { group.read(0, "from-1.txt") != nil }) else { return }
        // Server 0 stores a file; server 1 receives it as a stub.
        let content = randomBytes(200_000, seed: 41)
        try Data(content).write(to: URL(fileURLWithPath: group.root(0) + "/later.bin"))
        guard waitUntil("later.bin is a stub on server 1", { StubFile.marker(atPath: group.root(1) + "/later.bin") == .tiered }) else { return }
        // Server 1 changes its mode: a commit referencing chunks its loaded index never placed.
        #expect(chmod(group.root(1) + "/later.bin", 0o600) == 0)
        guard waitUntil("the mode reaches server 0", { (try? FileManager.default.attributesOfItem(atPath: group.root(0) + "/later.bin")[.posixPermissions] as? Int) == 0o600 }) else { return }
        #expect(FileManager.default.contents(atPath: group.root(0) + "/later.bin").map { [UInt8]($0) } == content)

        let share = try await CloudShare.open(try StoreLocator.open(group.url))
        var checked = 0
        for try await commit in share.log.reading(after: 0) {
            let named = Set(commit.packs)
            for operation in commit.operations {
                for chunk in operation.entry?.chunks ?? [] {
                    let pack = try await share.location(of: chunk.id)?.pack.hex
                    #expect(pack.map(named.contains) == true, "commit \(commit.sequence) (\(commit.authorName)) references a chunk of pack \(pack ?? "?") it does not name")
                    checked += 1
                }
            }
        }
        #expect(checked > 0)
    }
}

/// A daemon that has never loaded the share's index recalls a stub read through the endpoint: its
/// first load happens under the reader. With the index segments gone it reads the packs' trailers and
/// the exact bytes; with the packs gone the read fails with an error, never zeros; with them back the
/// same read gives the exact bytes.
@Suite(.serialized) struct FirstIndexLoadUnderARecallTests {
    @Test func aStubReadThroughAFreshDaemonIsExactOrAnErrorNeverZeros() async throws {
        let content = randomBytes(300_000, seed: 88)
        let group = try await SyncGroup(servers: 2) { index, root in
            if index == 0 { try! Data(content).write(to: URL(fileURLWithPath: root + "/cold.bin")) }
        }
        try await group.sync(0)
        group.release()
        let state = group.scratch.path + "/state1"
        _ = try TiergateProcess.expect(0, ["endpoint", "tiering", group.root(1), "--free-space", "0", "--download", "namespace-only", "--state-dir", state],
                                       logs: group.scratch.path)
        let share = String(group.url.dropFirst("file://".count))
        // The index segments are gone before the daemon ever reads them: its first load finds none.
        try FileManager.default.moveItem(atPath: share + "/index", toPath: group.scratch.path + "/index-aside")
        let daemon = try TiergateProcess(["serve", "--state-dir", state, "--poll-interval", "0.2"], logs: group.scratch.path)
        defer {
            daemon.send(SIGTERM)
            _ = daemon.exitStatus()
        }
        #expect(daemon.waitFor("trigger=start", inErrorOutput: true), "\(daemon.errorOutput.suffix(2000))")
        let path = group.root(1) + "/cold.bin"
        #expect(StubFile.marker(atPath: path) == .tiered)

        // No pack either: the read fails, and the file is still a stub.
        try FileManager.default.moveItem(atPath: share + "/packs", toPath: group.scratch.path + "/packs-aside")
        let failed = FileManager.default.contents(atPath: path)
        #expect(failed == nil, "a stub whose content is nowhere read \(failed?.count ?? 0) bytes")
        #expect(StubFile.marker(atPath: path) != nil)

        // The packs back, the segments still gone: the trailers place the chunks, and the bytes are exact.
        try FileManager.default.moveItem(atPath: group.scratch.path + "/packs-aside", toPath: share + "/packs")
        #expect(FileManager.default.contents(atPath: path).map { [UInt8]($0) } == content)
    }
}
