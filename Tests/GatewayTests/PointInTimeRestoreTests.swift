import Foundation
@testable import Gateway
import Glibc
import Testing

/// `tiergate share history` and `tiergate get --at … --path …` with the real binary: files, folders, deleted
/// files and renamed folders restore as they were at a past sequence or time.
@Suite(.serialized) struct PointInTimeRestoreTests {
    /// A share with three passes of one endpoint: plan.txt in two versions, gone.txt deleted, reports/ renamed to archive/.
    final class Fixture {
        let scratch = Scratch()
        var logs: String { scratch.path + "/logs" }
        var endpoint: String { scratch.path + "/endpoint" }
        var state: String { scratch.path + "/state" }
        var share: String { "file://" + scratch.path + "/share" }
        var betweenOneAndTwo = Date()

        init() throws {
            try FileManager.default.createDirectory(atPath: logs, withIntermediateDirectories: true)
            try FileManager.default.createDirectory(atPath: endpoint + "/reports", withIntermediateDirectories: true)
            try cli(["share", "create", share])
            try write("plan.txt", "version one\n")
            try write("gone.txt", "deleted later\n")
            try write("reports/q1.txt", "first quarter\n")
            try cli(["endpoint", "add", endpoint, "--share", share, "--state-dir", state, "--server-name", "alpha"])
            try cli(["sync", "--state-dir", state])
            sleep(1)
            betweenOneAndTwo = Date()
            sleep(1)
            try write("plan.txt", "version two, longer\n")
            try cli(["sync", "--state-dir", state])
            try FileManager.default.removeItem(atPath: endpoint + "/gone.txt")
            try FileManager.default.moveItem(atPath: endpoint + "/reports", toPath: endpoint + "/archive")
            try cli(["sync", "--state-dir", state])
        }

        @discardableResult
        func cli(_ arguments: [String], expect status: Int32 = 0) throws -> String {
            try TiergateProcess.expect(status, arguments, logs: logs)
        }

        func write(_ path: String, _ text: String) throws { try Data(text.utf8).write(to: URL(fileURLWithPath: endpoint + "/" + path)) }
        func read(_ path: String) -> String? { FileManager.default.contents(atPath: path).map { String(decoding: $0, as: UTF8.self) } }
        func history(_ path: String) throws -> [ShareHistory.Version] {
            try JSONDecoder().decode([ShareHistory.Version].self, from: Data(try cli(["share", "history", share, path, "--json"]).utf8))
        }
    }

    @Test func versionsOfFilesAndFoldersRestoreAsTheyWere() throws {
        let fixture = try Fixture()
        let (scratch, share, betweenOneAndTwo) = (fixture.scratch, fixture.share, fixture.betweenOneAndTwo)
        @discardableResult
        func cli(_ arguments: [String], expect status: Int32 = 0) throws -> String { try fixture.cli(arguments, expect: status) }
        func read(_ path: String) -> String? { fixture.read(path) }
        func history(_ path: String) throws -> [ShareHistory.Version] { try fixture.history(path) }
        let plan = try history("plan.txt")
        #expect(plan.map(\.change) == ["created", "modified"] && plan.map(\.author) == ["alpha", "alpha"], "\(plan)")
        #expect(plan.map(\.size) == [12, 20])
        #expect(try history("gone.txt").map(\.change) == ["created", "deleted"])
        let q1 = try history("reports/q1.txt")
        #expect(q1.map(\.change) == ["created", "renamed to archive/q1.txt"], "\(q1)")
        #expect(try history("archive/q1.txt").map(\.change) == ["renamed from reports/q1.txt"])
        #expect(try cli(["share", "history", share, "plan.txt"]).contains("#\(plan[1].sequence)"))
        #expect(try cli(["share", "history", share, "never.txt"], expect: 1).contains("never was in the share"))

        // A file as it was after its first version.
        let one = scratch.path + "/one"
        try cli(["get", share, one, "--at", String(plan[0].sequence), "--path", "plan.txt"])
        #expect(read(one + "/plan.txt") == "version one\n")
        #expect(!FileManager.default.fileExists(atPath: one + "/gone.txt"), "only the path asked for")
        // A deleted file and a renamed folder, as of a time between the first and second pass.
        let then = scratch.path + "/then"
        let stamp = ISO8601DateFormatter().string(from: betweenOneAndTwo)
        try cli(["get", share, then, "--at", stamp])
        #expect(read(then + "/plan.txt") == "version one\n")
        #expect(read(then + "/gone.txt") == "deleted later\n")
        #expect(read(then + "/reports/q1.txt") == "first quarter\n")
        #expect(!FileManager.default.fileExists(atPath: then + "/archive"))
        // A folder at its old name, alone.
        let folder = scratch.path + "/folder"
        try cli(["get", share, folder, "--at", "#\(q1[0].sequence)", "--path", "reports"])
        #expect(read(folder + "/reports/q1.txt") == "first quarter\n" && !FileManager.default.fileExists(atPath: folder + "/plan.txt"))
        // The head is unchanged by all this.
        let now = scratch.path + "/now"
        try cli(["get", share, now])
        #expect(read(now + "/plan.txt") == "version two, longer\n" && read(now + "/archive/q1.txt") == "first quarter\n")
        #expect(!FileManager.default.fileExists(atPath: now + "/gone.txt"))

        // Bad points say what is wrong.
        #expect(try cli(["get", share, scratch.path + "/x", "--at", "99"], expect: 1).contains("there is no sequence 99"))
        #expect(try cli(["get", share, scratch.path + "/x", "--at", "yesterday"], expect: 64).contains("neither a log sequence"))
        #expect(try cli(["get", share, scratch.path + "/x", "--at", "1", "--path", "archive"], expect: 1).contains("not in the share at that point"))
    }

    @Test func restoreOnAnEndpointIsANewChangeAndNeverOverwritesUnsyncedWork() throws {
        let fixture = try Fixture()
        let (endpoint, state, share) = (fixture.endpoint, fixture.state, fixture.share)
        let first = try fixture.history("plan.txt")[0].sequence
        // A past version of a file, a deleted file and a renamed folder come back as local edits.
        #expect(try fixture.cli(["restore", endpoint + "/plan.txt", "--at", "#\(first)", "--state-dir", state]).contains("restored 1 files"))
        #expect(fixture.read(endpoint + "/plan.txt") == "version one\n")
        try fixture.cli(["restore", endpoint + "/gone.txt", "--at", String(first), "--state-dir", state])
        try fixture.cli(["restore", endpoint + "/reports", "--at", String(first), "--state-dir", state])
        #expect(fixture.read(endpoint + "/gone.txt") == "deleted later\n" && fixture.read(endpoint + "/reports/q1.txt") == "first quarter\n")
        #expect(fixture.read(endpoint + "/archive/q1.txt") == "first quarter\n", "what exists now is left alone")
        try fixture.cli(["sync", "--state-dir", state])
        let plan = try fixture.history("plan.txt")
        #expect(plan.map(\.change) == ["created", "modified", "modified"] && plan.last?.size == 12, "\(plan)")
        #expect(try fixture.history("gone.txt").map(\.change) == ["created", "deleted", "created"])
        // Restoring what is already there changes nothing.
        #expect(try fixture.cli(["restore", endpoint + "/plan.txt", "--at", String(first), "--state-dir", state]).contains("1 already as they were"))

        // Work not synced yet is never overwritten: the item is refused and named, exit status 2.
        try fixture.write("plan.txt", "unsynced edit\n")
        let refused = try fixture.cli(["restore", endpoint + "/plan.txt", "--at", String(first), "--state-dir", state], expect: 2)
        #expect(refused.contains("not restored plan.txt") && refused.contains("changes not synced yet"), "\(refused)")
        #expect(fixture.read(endpoint + "/plan.txt") == "unsynced edit\n")
        // A path outside every endpoint, and a point where the item did not exist, say so.
        #expect(try fixture.cli(["restore", fixture.scratch.path + "/elsewhere.txt", "--at", "1", "--state-dir", state], expect: 1).contains("in no endpoint"))
        #expect(try fixture.cli(["restore", endpoint + "/archive", "--at", "1", "--state-dir", state], expect: 1).contains("was not in the share at that point"))
        _ = share
    }

    /// Restoring over a stub while the daemon serves it: the stub is replaced by the past content whole
    /// (never read as zeros, never left half written), and the daemon commits it as a new version.
    @Test func restoringOverAStubUnderTheDaemonReplacesItWithThePastBytes() throws {
        let fixture = try Fixture()
        let (endpoint, state) = (fixture.endpoint, fixture.state)
        let big1 = (0..<400_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }, big2 = (0..<500_000).map { UInt8(truncatingIfNeeded: $0 &* 17 &+ 3) }
        try Data(big1).write(to: URL(fileURLWithPath: endpoint + "/big.bin"))
        try fixture.cli(["sync", "--state-dir", state])
        try Data(big2).write(to: URL(fileURLWithPath: endpoint + "/big.bin"))
        try fixture.cli(["sync", "--state-dir", state])
        let first = try fixture.history("big.bin")[0].sequence
        try fixture.cli(["endpoint", "tiering", endpoint, "--state-dir", state, "--free-space", "0"])
        let daemon = try startDaemon(state: state, log: fixture.logs + "/serve.log")
        defer { kill(daemon.processIdentifier, SIGTERM); daemon.waitUntilExit() }
        try fixture.cli(["tier", endpoint + "/big.bin", "--state-dir", state])
        #expect(StubFile.marker(atPath: endpoint + "/big.bin") == .tiered)

        #expect(try fixture.cli(["restore", endpoint + "/big.bin", "--at", String(first), "--state-dir", state]).contains("restored 1 files"))
        #expect(StubFile.marker(atPath: endpoint + "/big.bin") == nil, "a full file now, not a stub")
        let restored = FileManager.default.contents(atPath: endpoint + "/big.bin").map { [UInt8]($0) == big1 } ?? false
        #expect(restored, "the past bytes, whole")
        // The daemon commits it: the share's newest version is the restored content.
        let deadline = Date().addingTimeInterval(30)
        var versions: [ShareHistory.Version] = []
        while Date() < deadline {
            versions = try fixture.history("big.bin")
            if versions.count == 3 { break }
            usleep(200_000)
        }
        #expect(versions.map(\.change) == ["created", "modified", "modified"] && versions.last?.size == Int64(big1.count), "\(versions)")
        try fixture.cli(["get", fixture.share, fixture.scratch.path + "/head", "--path", "big.bin"])
        let head = FileManager.default.contents(atPath: fixture.scratch.path + "/head/big.bin").map { [UInt8]($0) == big1 } ?? false
        #expect(head)
    }
}
