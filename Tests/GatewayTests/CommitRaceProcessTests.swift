import Backends
import CloudShare
import Foundation
import Gateway
import Glibc
import Testing

/// Real processes: two `tiergate sync` racing for the same sequence numbers on two servers while a third
/// server runs `tiergate serve`. Whoever loses a race retries with a commit that must still name the
/// packs its files need, and the daemon must apply every commit, whichever packs it names.
@Suite(.serialized) struct CommitRaceProcessTests {
    @Test func racingSyncsNeverLeaveTheDaemonBehindACommitItCannotRead() async throws {
        try await Self.racingSyncs(try await SyncGroup(servers: 3))
    }

    /// The scenario on a group of three servers (a `file://` share here; real S3 stores in
    /// `RealS3SyncProcessTests`). Returns how many appends the racers lost (and retried).
    @discardableResult
    static func racingSyncs(_ group: SyncGroup) async throws -> Int {
        group.release()
        let serveLog = group.scratch.path + "/serve.log"
        FileManager.default.createFile(atPath: serveLog, contents: nil)
        let daemon = Process()
        daemon.executableURL = URL(fileURLWithPath: try tiergateExecutable())
        daemon.arguments = ["serve", "--state-dir", group.scratch.path + "/state2", "--poll-interval", "0.2"]
        daemon.standardOutput = FileHandle(forWritingAtPath: serveLog)
        daemon.standardError = FileHandle(forWritingAtPath: serveLog)
        try daemon.run()
        defer {
            if daemon.isRunning { kill(daemon.processIdentifier, SIGKILL) }
            daemon.waitUntilExit()
        }

        var expected: [String: String] = [:]
        var lostAppends = 0
        var random = SeededGenerator(state: 11)
        for round in 0..<12 {
            for index in 0..<2 {
                // New content every time, so every commit brings a new pack.
                let content = "round \(round) server \(index) " + String((0..<60_000).map { _ in Character(UnicodeScalar(UInt8.random(in: 97...122, using: &random))) })
                group.write(index, "s\(index)/r\(round).txt", content)
                expected["s\(index)/r\(round).txt"] = content
            }
            let syncs = try (0..<2).map { index in
                try TiergateProcess(["sync", "--state-dir", group.scratch.path + "/state\(index)"], logs: group.scratch.path)
            }
            for sync in syncs {
                #expect(sync.exitStatus(timeout: 120) == 0, "a racing sync failed: \(sync.errorOutput.suffix(1500))")
            }
            for index in 0..<2 {
                let status = await (try Gateway(directory: StateDirectory(path: group.scratch.path + "/state\(index)"), readOnly: true)).status()
                lostAppends += status.first?.lastSync?.commitRetries ?? 0
            }
        }
        // Both racers finish their rounds (a loser's files reach the share in its next pass).
        for index in 0..<2 { #expect(try runTiergate(["sync", "--state-dir", group.scratch.path + "/state\(index)"]) == 0) }

        let deadline = Date().addingTimeInterval(60)
        var missing = Array(expected.keys)
        while Date() < deadline {
            missing = expected.filter { group.read(2, $0.key) != $0.value }.map(\.key).sorted()
            if missing.isEmpty { break }
            usleep(200_000)
        }
        let log = (try? String(contentsOfFile: serveLog, encoding: .utf8)) ?? ""
        #expect(missing.isEmpty, "the daemon never applied \(missing.count) files, e.g. \(missing.prefix(3)); its log ends: \(log.suffix(1500))")
        #expect(!log.contains("no known pack"), "the daemon met a commit naming too few packs: \(log.suffix(1500))")

        // Every commit names every pack holding a chunk it references.
        let share = try await CloudShare.open(try StoreLocator.open(group.url))
        for commit in try await share.log.records(after: 0) {
            let named = Set(commit.packs)
            for operation in commit.operations {
                for chunk in operation.entry?.chunks ?? [] {
                    let pack = try await share.location(of: chunk.id)?.pack.hex
                    #expect(pack.map(named.contains) == true, "commit \(commit.sequence) references a chunk of pack \(pack ?? "?") it does not name")
                }
            }
        }
        return lostAppends
    }
}
