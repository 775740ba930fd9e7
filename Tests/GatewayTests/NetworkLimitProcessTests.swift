import Backends
import CloudShare
import Foundation
@testable import Gateway
import Glibc
import Testing

/// The real `tiergate` under a network limit rule in force now: sync traffic is paced, recall is not.
/// Timings are lower bounds that pacing guarantees (and upper bounds only many times wider than the work).
@Suite(.serialized) struct NetworkLimitProcessTests {
    /// Runs `tiergate arguments…` to its end: exit status, standard output then error, and seconds taken.
    static func run(_ arguments: [String]) throws -> (status: Int32?, output: String, seconds: Double) {
        let started = Date()
        let child = try TiergateProcess(arguments, logs: NSTemporaryDirectory())
        defer {
            unlink(child.outputPath)
            unlink(child.errorPath)
        }
        let status = child.exitStatus(timeout: 300)
        return (status, child.output + child.errorOutput, Date().timeIntervalSince(started))
    }

    @Test func aOneShotSyncUnderALimitRuleOrBwlimitTakesAtLeastThePacedTime() async throws {
        let group = try await SyncGroup(servers: 1)
        group.release()
        let state = group.scratch.path + "/state0"
        let add = try Self.run(["limit", "add", "--days", "all", "--start", "0", "--end", "24", "--rate", "1M", "--state-dir", state])
        #expect(add.status == 0, "\(add.output)")
        group.scratch.write("ep0/big.bin", randomBytes(6_000_000, seed: 11))
        // 6 MB of packs at 1 MB/s with 1 MB of burst: the commit after them cannot start before 5 s.
        let limited = try Self.run(["sync", "--state-dir", state])
        #expect(limited.status == 0, "\(limited.output)")
        #expect(limited.seconds >= 4.5, "6 MB synced in \(limited.seconds) s under a 1 MB/s rule")
        let status = try Self.run(["status", "--state-dir", state, "--json"])
        let parsed = try JSONSerialization.jsonObject(with: Data(status.output.utf8)) as? [[String: Any]]
        let limit = parsed?.first?["networkLimit"] as? [String: Any]
        #expect(limit?["bytesPerSecond"] as? Int == 1_000_000 && limit?["rule"] as? Int == 1, "\(status.output)")

        #expect(try Self.run(["limit", "remove", "1", "--state-dir", state]).status == 0)
        group.scratch.write("ep0/more.bin", randomBytes(3_000_000, seed: 12))
        let fixed = try Self.run(["sync", "--bwlimit", "1M", "--state-dir", state])
        #expect(fixed.status == 0, "\(fixed.output)")
        #expect(fixed.seconds >= 1.8, "3 MB synced in \(fixed.seconds) s with --bwlimit 1M")
    }

    /// The daemon's sync and its recalls use one share; under a 64 KB/s rule a 4 MB recall (over a minute
    /// if paced) still finishes at once, while a 1 MB upload written before it is still held back.
    @Test func recallThroughTheDaemonIsNotPacedWhileItsUploadsAre() async throws {
        let group = try await SyncGroup(servers: 1)
        _ = try group.gateways[0].setTiering("1", TieringConfig(volumeFreeSpacePercent: 0))
        let content = randomBytes(4_000_000, seed: 21)
        group.scratch.write("ep0/cold.bin", content)
        try await group.sync(0)
        group.release()
        let state = group.scratch.path + "/state0", cold = group.root(0) + "/cold.bin"
        #expect(try Self.run(["limit", "add", "--days", "all", "--start", "0", "--end", "24", "--rate", "64K", "--state-dir", state]).status == 0)
        let daemon = try startDaemon(state: state, log: group.scratch.path + "/serve.log")
        defer { kill(daemon.processIdentifier, SIGTERM); daemon.waitUntilExit() }
        let tier = try Self.run(["tier", cold, "--state-dir", state])
        guard tier.status == 0, StubFile.marker(atPath: cold) == .tiered else {
            Issue.record("tiering through the daemon failed: \(tier.output)")
            return
        }
        let written = Date()
        group.scratch.write("ep0/new.bin", randomBytes(1_000_000, seed: 22))
        let recall = try Self.run(["recall", cold, "--state-dir", state])
        #expect(recall.status == 0, "\(recall.output)")
        #expect(recall.seconds < 45, "a 4 MB recall took \(recall.seconds) s: paced at 64 KB/s it takes over 60 s")
        #expect(StubFile.marker(atPath: cold) == nil)
        let recalled = (try? Data(contentsOf: URL(fileURLWithPath: cold))).map { Array($0) == content } ?? false
        #expect(recalled, "the recalled file holds its content")
        // The upload of new.bin cannot have finished: 1 MB at 64 KB/s with 64 KB of burst takes 14 s.
        let share = try await CloudShare.open(try StoreLocator.open(group.url))
        let uploaded = try await share.namespace().entries["new.bin"] != nil
        if Date().timeIntervalSince(written) < 12 {
            #expect(!uploaded, "new.bin reached the share while the daemon's uploads run at 64 KB/s")
        }
        let status = try Self.run(["status", "--state-dir", state])
        #expect(status.output.contains("network limit: 64 KB/s (rule 1, every day 0–24)"), "\(status.output)")
    }
}
