import Foundation
import Glibc
@testable import Gateway
import Testing

/// Log compaction with the real binary: servers write a snapshot every `--snapshot-interval` commits, a new
/// endpoint starts from it and ends with the same tree, past points still restore, and `share verify` finds a
/// snapshot that differs from the log.
@Suite(.serialized) struct LogCompactionTests {
    @Test func snapshotsFollowTheIntervalAndNewEndpointsAndVerifyAgreeWithTheLog() throws {
        let setup = try TwoEndpoints(), scratch = setup.scratch
        let logs = setup.logs, alpha = setup.alpha, beta = setup.beta, folder = setup.shareFolder, share = setup.share
        func snapshots() -> [String] { ((try? FileManager.default.contentsOfDirectory(atPath: folder + "/snapshots")) ?? []).sorted() }

        try setup.cli(["share", "create", share, "--snapshot-interval", "3"])
        try setup.cli(["endpoint", "add", alpha, "--share", share, "--state-dir", scratch.path + "/state-alpha", "--server-name", "alpha"])
        for pass in 1...7 {
            try Data("pass \(pass)\n".utf8).write(to: URL(fileURLWithPath: alpha + "/file-\(pass).txt"))
            try Data("edited in pass \(pass)\n".utf8).write(to: URL(fileURLWithPath: alpha + "/edited.txt"))
            if pass == 5 { try FileManager.default.removeItem(atPath: alpha + "/file-2.txt") }
            try setup.cli(["sync", "--state-dir", scratch.path + "/state-alpha"])
        }
        #expect(snapshots() == ["00000000000000000003", "00000000000000000006"], "\(snapshots())")

        // A new endpoint starts from the newest snapshot and the log after it: the same tree as alpha.
        try setup.cli(["endpoint", "add", beta, "--share", share, "--state-dir", scratch.path + "/state-beta", "--server-name", "beta"])
        try setup.cli(["sync", "--state-dir", scratch.path + "/state-beta"])
        let alphaNames = try FileManager.default.contentsOfDirectory(atPath: alpha).filter { !$0.hasPrefix(".") }.sorted()
        let betaNames = try FileManager.default.contentsOfDirectory(atPath: beta).filter { !$0.hasPrefix(".") }.sorted()
        #expect(alphaNames == betaNames && !betaNames.contains("file-2.txt"), "\(alphaNames) vs \(betaNames)")
        for name in alphaNames {
            #expect(FileManager.default.contents(atPath: alpha + "/" + name) == FileManager.default.contents(atPath: beta + "/" + name), "\(name)")
        }
        // A point between snapshots still restores exactly.
        try setup.cli(["get", share, scratch.path + "/at4", "--at", "4"])
        #expect(FileManager.default.contents(atPath: scratch.path + "/at4/edited.txt") == Data("edited in pass 4\n".utf8))
        #expect(FileManager.default.fileExists(atPath: scratch.path + "/at4/file-2.txt") && !FileManager.default.fileExists(atPath: scratch.path + "/at4/file-5.txt"))
        #expect(try setup.cli(["share", "verify", share]).contains("result: clean"), "a clean share with snapshots")

        // A snapshot that is not the log replayed is reported (and only that one).
        let path = folder + "/snapshots/00000000000000000006"
        var snapshot = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as! [String: Any]
        var entries = snapshot["entries"] as! [String: Any]
        entries["file-2.txt"] = entries["file-1.txt"]
        snapshot["entries"] = entries
        try JSONSerialization.data(withJSONObject: snapshot).write(to: URL(fileURLWithPath: path))
        let report = try setup.cli(["share", "verify", share], expect: 1)
        #expect(report.contains("snapshot differs from the log") && report.contains("snapshots/00000000000000000006") && report.contains("file-2.txt"), "\(report)")
        #expect(!report.contains("snapshots/00000000000000000003"), "\(report)")
    }

    /// `share gc` under a retention policy deletes the log records before the newest snapshot older than
    /// every kept version, never past what a lagging server holds; afterwards every reader follows: new
    /// endpoints, `get` (head and kept points), `share history`, `share verify`, servers that keep syncing,
    /// and tiering of a file whose version's record is gone. A compaction cut short (oldest records gone,
    /// the rest and the old snapshot still there) reads the same.
    @Test func collectionDeletesTheLogBeforeTheOldestKeptVersionAndEveryReaderFollows() throws {
        let scratch = Scratch()
        let logs = scratch.path + "/logs"
        try FileManager.default.createDirectory(atPath: logs, withIntermediateDirectories: true)
        let folder = scratch.path + "/share", share = "file://" + folder
        @discardableResult
        func cli(_ arguments: [String], expect status: Int32 = 0) throws -> String {
            try TiergateProcess.expect(status, arguments, logs: logs)
        }
        func listing(_ prefix: String) -> [UInt64] {
            ((try? FileManager.default.contentsOfDirectory(atPath: folder + "/" + prefix)) ?? []).compactMap { UInt64($0) }.sorted()
        }
        func endpoint(_ name: String) throws -> (path: String, state: String) {
            let path = scratch.path + "/" + name, state = scratch.path + "/state-" + name
            if !FileManager.default.fileExists(atPath: path) {
                try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
                try cli(["endpoint", "add", path, "--share", share, "--state-dir", state, "--server-name", name])
            }
            return (path, state)
        }
        func sync(_ name: String) throws { try cli(["sync", "--state-dir", try endpoint(name).state]) }
        func tree(_ root: String) -> [String: Data] {
            var files: [String: Data] = [:]
            for case let relative as String in FileManager.default.enumerator(atPath: root)?.allObjects ?? [] where !relative.hasPrefix(".tiergate") {
                var isDirectory: ObjCBool = false
                if FileManager.default.fileExists(atPath: root + "/" + relative, isDirectory: &isDirectory), !isDirectory.boolValue {
                    files[relative] = FileManager.default.contents(atPath: root + "/" + relative)
                }
            }
            return files
        }
        struct Collection: Decodable {
            struct Compaction: Decodable { var historyBegins: UInt64; var recordsDeleted: Int; var snapshotsDeleted: Int }
            var compaction: Compaction
        }
        func collect() throws -> Collection.Compaction {
            let child = try TiergateProcess(["share", "gc", share, "--grace", "0s", "--safety-interval", "1s", "--json"], logs: logs)
            let status = child.exitStatus(timeout: 60)
            guard status == 0 else { throw GatewayError("share gc ended with \(status.map(String.init) ?? "a signal"): \(child.errorOutput)") }
            return try JSONDecoder().decode(Collection.self, from: Data(child.output.utf8)).compaction
        }

        try cli(["share", "create", share, "--snapshot-interval", "3"])
        let alpha = try endpoint("alpha").path
        func pass(_ number: Int) throws {
            try Data("pass \(number)\n".utf8).write(to: URL(fileURLWithPath: alpha + "/file-\(number).txt"))
            try Data("edited in pass \(number)\n".utf8).write(to: URL(fileURLWithPath: alpha + "/edited.txt"))
            if number == 5 { try FileManager.default.removeItem(atPath: alpha + "/file-2.txt") }
            try sync("alpha")
            if number == 2 { try sync("lagging") }    // a server that then stops at sequence 2
        }
        for number in 1...7 { try pass(number) }
        try sync("beta")
        #expect(listing("log") == Array(1...7) && listing("snapshots") == [3, 6], "\(listing("log")) \(listing("snapshots"))")
        try cli(["share", "retention", share, "--keep-within", "1s"])
        Thread.sleep(forTimeInterval: 2)

        // The lagging server holds every version from 2: nothing of the log may go.
        var compaction = try collect()
        #expect(compaction.recordsDeleted == 0 && listing("log") == Array(1...7), "held by the lagging server: \(compaction) \(listing("log"))")
        try sync("lagging")
        #expect(tree(try endpoint("lagging").path) == tree(alpha), "the lagging server catches up")

        // Every server is at 7: the history begins at snapshot 6.
        compaction = try collect()
        #expect(compaction.historyBegins == 6 && compaction.recordsDeleted == 6 && compaction.snapshotsDeleted == 1, "\(compaction)")
        #expect(listing("log") == [7] && listing("snapshots") == [6], "\(listing("log")) \(listing("snapshots"))")
        #expect(try cli(["share", "verify", share]).contains("result: clean"), "a compacted share is clean")
        let info = try cli(["share", "info", share])
        #expect(info.contains("log head:     7 (history begins at snapshot #6)"), "\(info)")

        // Readers: a new endpoint, `get` of the head and of kept points, history, a version no longer kept.
        try sync("gamma")
        #expect(tree(try endpoint("gamma").path) == tree(alpha), "a new endpoint after compaction")
        try cli(["get", share, scratch.path + "/head"])
        #expect(tree(scratch.path + "/head") == tree(alpha))
        try cli(["get", share, scratch.path + "/at6", "--at", "6"])
        #expect(FileManager.default.contents(atPath: scratch.path + "/at6/edited.txt") == Data("edited in pass 6\n".utf8))
        let old = try cli(["get", share, scratch.path + "/at4", "--at", "4"], expect: 1)
        #expect(old.contains("older than the share's history, which begins at #6"), "\(old)")
        let history = try cli(["share", "history", share, "edited.txt"])
        #expect(history.contains("#6") && history.contains("present where the share's history begins") && history.contains("#7"), "\(history)")
        #expect(!history.contains("#5"), "\(history)")

        // Servers keep syncing; a file whose version's record is gone still tiers and recalls exactly.
        try pass(8)
        try sync("beta")
        #expect(tree(try endpoint("beta").path) == tree(alpha), "a server at the compacted head keeps syncing")
        let beta = try endpoint("beta")
        try cli(["endpoint", "tiering", beta.path, "--state-dir", beta.state, "--free-space", "0"])
        do {
            let daemon = try startDaemon(state: beta.state, log: logs + "/serve-beta.log")
            defer { kill(daemon.processIdentifier, SIGTERM); daemon.waitUntilExit() }
            let tier = try TiergateProcess.run(["tier", beta.path + "/file-1.txt", "--state-dir", beta.state], logs: logs)
            #expect(tier.status == 0, "\(tier.output) \((try? String(contentsOfFile: logs + "/serve-beta.log", encoding: .utf8)) ?? "")")
            #expect(StubFile.marker(atPath: beta.path + "/file-1.txt") == .tiered, "version 1 tiers although its record is gone")
            #expect(FileManager.default.contents(atPath: beta.path + "/file-1.txt") == Data("pass 1\n".utf8), "and reads its bytes")
        }

        // A compaction cut short: the oldest record gone, the newer ones below the new snapshot and the old
        // snapshot still there. Every reader starts from the newer snapshot.
        try pass(9)
        try pass(10)
        for name in ["beta", "lagging", "gamma"] { try sync(name) }
        #expect(listing("log") == Array(7...10) && listing("snapshots") == [6, 9], "\(listing("log")) \(listing("snapshots"))")
        try FileManager.default.removeItem(atPath: folder + "/log/" + String(format: "%020d", 7))
        #expect(try cli(["share", "verify", share]).contains("result: clean"), "a compaction cut short is clean")
        try sync("delta")
        #expect(tree(try endpoint("delta").path) == tree(alpha), "a new endpoint after a compaction cut short")
        try cli(["get", share, scratch.path + "/at9", "--at", "9"])
        #expect(FileManager.default.contents(atPath: scratch.path + "/at9/edited.txt") == Data("edited in pass 9\n".utf8))
        #expect(try cli(["share", "history", share, "edited.txt"]).contains("#10"))
        try sync("delta")
        Thread.sleep(forTimeInterval: 2)    // #10 leaves the 1 s window: only the head is kept
        compaction = try collect()
        #expect(compaction.historyBegins == 9 && compaction.recordsDeleted == 2 && compaction.snapshotsDeleted == 1, "\(compaction)")
        #expect(listing("log") == [10] && listing("snapshots") == [9], "\(listing("log")) \(listing("snapshots"))")
        #expect(try cli(["share", "verify", share]).contains("result: clean"))
        try pass(11)
        for name in ["beta", "lagging", "gamma", "delta"] {
            try sync(name)
            #expect(tree(try endpoint(name).path) == tree(alpha), "\(name) after the last compaction")
        }
    }

    /// A server that went offline holding stubs of old versions: its cursor keeps their chunks, but log
    /// compaction may delete the records of those versions (the history begins after them and before the
    /// cursor). Stubs moved meanwhile still recall their exact bytes, through the mount and through the
    /// endpoint under `serve`, and so does one moved out of the endpoint (`recall` by its markers alone:
    /// its chunk list is found in the snapshot the history begins at). Never zeros.
    @Test func stubsOfVersionsWhoseRecordsWereCompactedRecallExactlyThroughTheMountAndTheEndpoint() async throws {
        guard FileManager.default.fileExists(atPath: "/dev/fuse") else {
            Issue.record("/dev/fuse is missing: the mounted cache volume cannot be tested here")
            return
        }
        let setup = try TwoEndpoints(), scratch = setup.scratch
        let logs = setup.logs, alpha = setup.alpha, beta = setup.beta, share = setup.share
        let alphaState = scratch.path + "/state-alpha", betaState = scratch.path + "/state-beta"
        try setup.cli(["share", "create", share, "--snapshot-interval", "3"])
        try setup.cli(["endpoint", "add", alpha, "--share", share, "--state-dir", alphaState, "--server-name", "alpha"])
        let viaMount = randomBytes(300_001, seed: 71), viaEndpoint = randomBytes(500_003, seed: 72), orphan = randomBytes(200_005, seed: 73)
        scratch.write("alpha/old/mount.bin", viaMount)
        scratch.write("alpha/old/endpoint.bin", viaEndpoint)
        scratch.write("alpha/old/orphan.bin", orphan)
        for pass in 1...7 {
            try Data("edited in pass \(pass)\n".utf8).write(to: URL(fileURLWithPath: alpha + "/edited.txt"))
            try setup.cli(["sync", "--state-dir", alphaState])
        }
        try setup.cli(["endpoint", "add", beta, "--share", share, "--state-dir", betaState, "--server-name", "beta"])
        try setup.cli(["sync", "--state-dir", betaState])
        try setup.cli(["endpoint", "tiering", beta, "--state-dir", betaState, "--free-space", "0"])
        do {
            let daemon = try startDaemon(state: betaState, log: logs + "/serve-beta.log")
            defer { kill(daemon.processIdentifier, SIGTERM); daemon.waitUntilExit() }
            for name in ["mount.bin", "endpoint.bin", "orphan.bin"] {
                try setup.cli(["tier", beta + "/old/" + name, "--state-dir", betaState])
                #expect(StubFile.marker(atPath: beta + "/old/" + name) == .tiered, "\(name) is a stub of version 1")
            }
        }

        // Beta is offline at #7; the versions before it leave the 1 s window and the history begins at #6.
        try setup.cli(["share", "retention", share, "--keep-within", "1s"])
        try await Task.sleep(for: .seconds(2))
        let report = try setup.cli(["share", "gc", share, "--grace", "0s", "--safety-interval", "1s"])
        let records = (try? FileManager.default.contentsOfDirectory(atPath: setup.shareFolder + "/log")) ?? []
        #expect(records == [String(format: "%020d", 7)], "the records of the stubs' version are gone: \(records)\n\(report)")
        try FileManager.default.moveItem(atPath: beta + "/old", toPath: beta + "/moved")
        try FileManager.default.createDirectory(atPath: scratch.path + "/outside", withIntermediateDirectories: true)
        try FileManager.default.moveItem(atPath: beta + "/moved/orphan.bin", toPath: scratch.path + "/outside/orphan.bin")
        let recalled = try setup.cli(["recall", scratch.path + "/outside", "--state-dir", betaState])
        #expect(FileManager.default.contents(atPath: scratch.path + "/outside/orphan.bin") == Data(orphan), "out of the endpoint: \(recalled)")
        #expect(StubFile.marker(atPath: scratch.path + "/outside/orphan.bin") == nil, "recalled whole, markers gone")
        #expect(StubFile.marker(atPath: beta + "/moved/mount.bin") == .tiered && StubFile.marker(atPath: beta + "/moved/endpoint.bin") == .tiered)

        let mountpoint = scratch.path + "/mnt"
        try FileManager.default.createDirectory(atPath: mountpoint, withIntermediateDirectories: true)
        do {
            let mount = try TiergateProcess(["mount", beta, mountpoint, "--state-dir", betaState], logs: logs)
            defer { mount.send(SIGTERM); _ = mount.exitStatus() }
            #expect(mount.waitFor("mounted endpoint"), "mounted: \(mount.errorOutput)")
            let read = try? await readStub(mountpoint + "/moved/mount.bin")
            #expect(read == viaMount, "through the mount: \(read.map { "\($0.count) bytes, \($0.filter { $0 == 0 }.count) zero" } ?? "an error") \(mount.errorOutput.suffix(600))")
        }
        do {
            let daemon = try startDaemon(state: betaState, log: logs + "/serve-beta.log", waitingFor: "stubs marked for recall")
            defer { kill(daemon.processIdentifier, SIGTERM); daemon.waitUntilExit() }
            let read = try? await readStub(beta + "/moved/endpoint.bin")
            #expect(read == viaEndpoint, "through the endpoint: \(read.map { "\($0.count) bytes, \($0.filter { $0 == 0 }.count) zero" } ?? "an error") \((try? String(contentsOfFile: logs + "/serve-beta.log", encoding: .utf8))?.suffix(600) ?? "")")
        }
    }

    /// A new endpoint takes the namespace at the head as one commit; each file it writes keeps the version
    /// of the commit that wrote its content, so the share's chunk list for it is found and it tiers (its
    /// stub then names that version). Before, every such file named the head and was refused ("its version
    /// is not in the share's log") unless the head commit had written it.
    @Test func aNewEndpointTiersTheFilesItTookFromTheNamespace() throws {
        let setup = try TwoEndpoints(), scratch = setup.scratch
        let logs = setup.logs, alpha = setup.alpha, beta = setup.beta, share = setup.share
        try setup.cli(["share", "create", share])
        try setup.cli(["endpoint", "add", alpha, "--share", share, "--state-dir", scratch.path + "/state-alpha", "--server-name", "alpha"])
        for pass in 1...3 {
            try Data("pass \(pass)\n".utf8).write(to: URL(fileURLWithPath: alpha + "/file-\(pass).txt"))
            try setup.cli(["sync", "--state-dir", scratch.path + "/state-alpha"])
        }
        let state = scratch.path + "/state-beta"
        try setup.cli(["endpoint", "add", beta, "--share", share, "--state-dir", state, "--server-name", "beta"])
        try setup.cli(["sync", "--state-dir", state])
        try setup.cli(["endpoint", "tiering", beta, "--state-dir", state, "--free-space", "0"])
        let daemon = try startDaemon(state: state, log: logs + "/serve.log")
        defer { kill(daemon.processIdentifier, SIGTERM); daemon.waitUntilExit() }
        for pass in 1...3 {
            let path = beta + "/file-\(pass).txt"
            let tier = try TiergateProcess.run(["tier", path, "--state-dir", state], logs: logs)
            #expect(tier.status == 0 && StubFile.marker(atPath: path) == .tiered, "file-\(pass).txt: \(tier.output)")
            #expect(FileManager.default.contents(atPath: path) == Data("pass \(pass)\n".utf8), "file-\(pass).txt reads its bytes")
        }
    }
}
