import Backends
import CloudShare
import Foundation
import Gateway
import Glibc
import ObjectStoreServers
import Synchronization

/// A live `tiergate share move` of the scale tree's share (100,000 files by default, `MOVE_FILES`) from
/// `file://` to SeaweedFS while two servers run `tiergate serve` and write a new file every 200 ms each.
/// Prints each endpoint's pause (from the move record's time to its first commit on the destination) and
/// the files each daemon sent or fetched after following, beside the whole move and a plain `share copy`
/// of the same share in the same run.
enum MoveBench {
    static let group = BenchGroup(name: "move", summary: "live share move of the scale tree's share (MOVE_FILES, default 100,000) file:// → SeaweedFS under two editing daemons: endpoint pause, files sent again; beside share copy") { table in
        try await run(table)
    }

    static func run(_ table: BenchTable) async throws {
        let files = BenchFiles.setting("MOVE_FILES", 100_000)
        let base = ProcessInfo.processInfo.environment["SCALE_DIR"] ?? "/var/tmp/tiergate-scale"
        let tree = try ScaleBench.cachedTree(base + "/tree-\(files)", files: files)
        let scratch = BenchFiles.fresh("move")
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let (a, b, stateA, stateB) = (scratch + "/a", scratch + "/b", scratch + "/state-a", scratch + "/state-b")
        let share = "file://" + scratch + "/share"
        ScaleBench.say("copying the tree to A; A uploads it, B downloads it (not timed)")
        try BenchFiles.time("/bin/cp", ["-a", tree, a])
        try OperationsBench.twoSyncedEndpoints(share: share, a: a, b: b, stateA: stateA, stateB: stateB, names: ("move-a", "move-b"))

        let seaweed = try await RealS3Server.seaweedFS.running()
        let copied = try await seaweed.freshBucket(prefix: "copied"), moved = try await seaweed.freshBucket(prefix: "moved")
        ScaleBench.say("share copy to \(seaweed.version) (the peer)")
        let copySeconds = try BenchFiles.time(SyncBench.tiergate, ["share", "copy", share, copied])

        let logA = scratch + "/serve-a.log", logB = scratch + "/serve-b.log"
        let started = Date().timeIntervalSince1970
        let servers = [(try OperationsBench.startServe(state: stateA, metrics: "off", log: logA, pollInterval: 1), logA),
                       (try OperationsBench.startServe(state: stateB, metrics: "off", log: logB, pollInterval: 1), logB)]
        defer { for (server, log) in servers { ScaleBench.stop(server); ScaleBench.reportProblems(in: log) } }
        try ScaleBench.waitUntilIdle([stateA, stateB], since: started, timeout: 60 + Double(files) / 1000, servers: servers)

        // Both servers write a new file every 200 ms from before the move until after both followed.
        let written = Mutex([0, 0])
        let stop = Atomic<Bool>(false)
        let writer = Thread {
            var round = 0
            while !stop.load(ordering: .acquiring) {
                for (index, root) in [a, b].enumerated() {
                    try? Data("server \(index) round \(round)\n".utf8).write(to: URL(fileURLWithPath: root + "/d0/moving-\(index)-\(round)"))
                    written.withLock { $0[index] += 1 }
                }
                round += 1
                usleep(200_000)
            }
        }
        writer.start()
        sleep(2)
        ScaleBench.say("share move to \(seaweed.version) while both daemons write")
        let moveSeconds = try BenchFiles.time(SyncBench.tiergate, ["share", "move", share, moved])
        try ScaleBench.waitFor("both daemons to follow", timeout: 60, interval: 0.1, servers: servers) {
            try [logA, logB].allSatisfy { try String(contentsOfFile: $0, encoding: .utf8).contains("following it from sequence") }
        }
        sleep(3)
        stop.store(true, ordering: .releasing)
        while !writer.isFinished { usleep(10_000) }
        try ScaleBench.waitUntilIdle([stateA, stateB], since: Date().timeIntervalSince1970, timeout: 120, servers: servers)
        try ScaleBench.verify(a, holds: try BenchFiles.listing(b), like: b, what: "endpoint A after the move")

        // The pause: from the move record to each endpoint's first commit on the destination.
        let source = try await CloudShare.open(StoreLocator.open(share))
        let record = try await source.log.read(try await source.log.head())
        guard let redirect = record.movedTo else { throw BenchError("the source's log does not end with the move") }
        let destination = try await CloudShare.open(StoreLocator.open(moved))
        let after = try await destination.log.records(after: redirect.through)
        let edits = written.withLock { $0 }
        for (index, (name, log)) in [("A", logA), ("B", logB)].enumerated() {
            guard let first = after.first(where: { $0.authorName == "move-\(name.lowercased())" }) else {
                throw BenchError("endpoint \(name) never committed on the destination")
            }
            let text = try String(contentsOfFile: log, encoding: .utf8)
            let lines = text.split(separator: "\n")
            let following = lines.lastIndex { $0.contains("following it from sequence") } ?? lines.endIndex
            let passes = lines[following...].filter { $0.contains("sync success") }.map(String.init)
            let sent = passes.reduce(0) { $0 + count("uploaded", in: $1) }, fetched = passes.reduce(0) { $0 + count("downloaded", in: $1) }
            table.add("move \(ScaleBench.grouped(files)) files file:// → \(seaweed.version): endpoint \(name)'s pause", first.time - record.time, "s", peer: moveSeconds,
                      note: "move record to its first commit on the destination; peer: the whole share move (copy, freeze, tail, marker); goal ≤ 10 s")
            table.add("move \(ScaleBench.grouped(files)) files: files endpoint \(name) sent / fetched after following", Double(sent + fetched), "files",
                      note: "\(sent) sent, \(fetched) fetched, for \(edits[index]) files it wrote and \(edits[1 - index]) the other wrote during the whole run (some before the move); goal: nothing sent again")
        }
        table.add("move \(ScaleBench.grouped(files)) files: share move", moveSeconds, "s", peer: copySeconds,
                  note: "under two editing daemons; peer: share copy of the same share to the same store, idle")
    }

    /// The first number after `word` in a pass summary.
    static func count(_ word: String, in line: String) -> Int {
        guard let range = line.range(of: word + " ") else { return 0 }
        return Int(line[range.upperBound...].prefix { $0.isNumber }) ?? 0
    }
}
