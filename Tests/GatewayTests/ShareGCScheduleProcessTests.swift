import Backends
import CloudShare
import Foundation
import Gateway
import Glibc
import Testing

/// The daemon's garbage collection schedule with real `tiergate serve` daemons: two servers on one share
/// collect it in turns (the lease keeps them apart), orphans go, sync goes on meanwhile, every version
/// still reads, and SIGTERM stops a daemon cleanly without leaving the lease held.
@Suite(.serialized) struct ShareGCScheduleProcessTests {
    /// Sets config.json's `"gc"` of the server at `state`.
    static func setSchedule(_ schedule: [String: String], state: String) throws {
        let path = state + "/config.json"
        var object = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as! [String: Any]
        object["gc"] = schedule
        try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted]).write(to: URL(fileURLWithPath: path))
    }

    @Test func daemonsCollectInTurnsWhileTheySyncAndStopCleanly() async throws {
        let scratch = Scratch()
        let logs = scratch.path + "/logs"
        try FileManager.default.createDirectory(atPath: logs, withIntermediateDirectories: true)
        let url = "file://" + scratch.path + "/share"
        @discardableResult
        func cli(_ arguments: [String], expect status: Int32 = 0) throws -> String {
            try TiergateProcess.expect(status, arguments, logs: logs)
        }
        try cli(["share", "create", url, "--pack-size", "1048576"])
        var servers: [(root: String, state: String)] = []
        for name in ["alpha", "beta"] {
            let root = scratch.path + "/" + name, state = scratch.path + "/state-" + name
            try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
            try cli(["endpoint", "add", root, "--share", url, "--state-dir", state, "--server-name", name])
            try Self.setSchedule(["interval": "2s", "grace": "0s", "safetyInterval": "1s"], state: state)
            servers.append((root, state))
        }
        var contents: [String: Set<[UInt8]>] = [:]
        for index in 0..<3 {
            let bytes = randomBytes(30_000 + index, seed: UInt64(index * 2 + 1))
            scratch.write("alpha/seed\(index).bin", bytes)
            contents["seed\(index).bin"] = [bytes]
        }
        try cli(["sync", "--state-dir", servers[0].state])
        let committed = ShareGCProcessTests.packCount(scratch.path + "/share")
        // Packs no commit names, as writers killed before their commit leave them.
        for index in 0..<60 { try await ShareGCProcessTests.orphanPack(url, [randomBytes(3_000, seed: UInt64(500 + index * 2))]) }
        #expect(ShareGCProcessTests.packCount(scratch.path + "/share") == committed + 60)

        var daemons = try servers.map { try TiergateProcess(["serve", "--state-dir", $0.state, "--poll-interval", "0.2"], logs: logs) }
        defer { for daemon in daemons { daemon.send(SIGKILL); _ = daemon.exitStatus(timeout: 10) } }
        // Sync goes on while the collectors run: files written on alpha reach beta promptly.
        var slowest = 0.0
        var round = 0
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline && (ShareGCProcessTests.packCount(scratch.path + "/share") > committed + round || round < 8) {
            let bytes = randomBytes(20_000 + round, seed: UInt64(9_000 + round * 2))
            let name = "live\(round).bin"
            scratch.write("alpha/" + name, bytes)
            contents[name] = [bytes]
            let written = Date()
            while Date().timeIntervalSince(written) < 20 && scratch.read("beta/" + name) != bytes { usleep(50_000) }
            #expect(scratch.read("beta/" + name) == bytes, "\(name) did not reach beta")
            slowest = max(slowest, Date().timeIntervalSince(written))
            round += 1
        }
        // Each live file is a commit of its own pack: every orphan is gone, every committed pack stays.
        #expect(ShareGCProcessTests.packCount(scratch.path + "/share") == committed + round, "orphans left after \(round) rounds")
        #expect(slowest < 10, "a file took \(slowest) s to reach the other server")
        let logged = daemons.map(\.errorOutput).joined()
        #expect(logged.contains("garbage collection: log head"), "\(logged.suffix(3000))")
        let deletions = logged.components(separatedBy: "\n").filter { $0.contains("garbage collection:") && !$0.contains("deleted 0 packs") }
        #expect(!deletions.isEmpty, "no run logged a deletion")
        #expect(!logged.contains("garbage collection failed"), "\(logged.suffix(3000))")

        // SIGTERM stops each daemon cleanly, whatever its collector was doing; no lease stays held.
        for index in daemons.indices {
            daemons[index].send(SIGTERM)
            let status = daemons[index].exitStatus(timeout: 20)
            #expect(status == 0, "\(daemons[index].errorOutput.suffix(2000))")
            #expect(!abortMessages.contains { daemons[index].errorOutput.contains($0) })
        }
        daemons = []
        let run = try cli(["share", "gc", url, "--grace", "0s", "--safety-interval", "1s"])
        #expect(run.contains("deleted:"), "\(run)")
        let problems = try await ShareGCProcessTests.everyVersionReads(url, contents: contents)
        #expect(problems.isEmpty, "\(problems)")

        // "off" turns the schedule off: orphans stay.
        for index in 0..<5 { try await ShareGCProcessTests.orphanPack(url, [randomBytes(3_000, seed: UInt64(7_000 + index * 2))]) }
        let before = ShareGCProcessTests.packCount(scratch.path + "/share")
        try Self.setSchedule(["interval": "off", "grace": "0s", "safetyInterval": "1s"], state: servers[0].state)
        let quiet = try TiergateProcess(["serve", "--state-dir", servers[0].state, "--poll-interval", "0.2"], logs: logs)
        daemons = [quiet]
        try await Task.sleep(for: .seconds(5))
        #expect(ShareGCProcessTests.packCount(scratch.path + "/share") == before)
        #expect(!quiet.errorOutput.contains("garbage collection"), "\(quiet.errorOutput)")
    }
}
