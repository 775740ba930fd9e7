import Backends
import CloudShare
import Foundation
import Gateway
import Glibc

/// Sync-group figures with real `tiergate` processes: initial upload, full download to a new endpoint,
/// change propagation between two `tiergate serve` daemons, metadata size and peak memory; `rsync -a`
/// of the same tree is the baseline for moving the bytes.
enum SyncBench {
    static let group = BenchGroup(name: "sync", summary: "initial upload, full download, A→B propagation with serve, RocksDB bytes/file, peak RSS; beside rsync -a") { table in
        try await run(table)
    }

    /// The release `tiergate` built next to this benchmark runner.
    static var tiergate: String {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("tiergate").path
    }

    static func run(_ table: BenchTable) async throws {
        guard FileManager.default.isExecutableFile(atPath: tiergate) else { throw BenchError("\(tiergate) is not built (bench/run builds it)") }
        let count = BenchFiles.setting("TIERGATE_BENCH_SYNC_FILES", 100_000)
        let root = BenchFiles.fresh("sync")
        let shareURL = "file://\(root)/share"
        _ = try await CloudShare.create(in: try StoreLocator.open(shareURL))
        let a = root + "/a", b = root + "/b"
        try FileManager.default.createDirectory(atPath: a, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: b, withIntermediateDirectories: true)
        BenchFiles.smallFiles(at: a, count: count, size: 4096)
        do {
            let gatewayA = try Gateway(directory: StateDirectory(path: root + "/state-a"), serverName: "bench-a")
            try await gatewayA.addEndpoint(path: a, shareURL: shareURL)
            let gatewayB = try Gateway(directory: StateDirectory(path: root + "/state-b"), serverName: "bench-b")
            try await gatewayB.addEndpoint(path: b, shareURL: shareURL)
        }

        BenchFiles.settle()
        let rsyncSeconds: Double? = try BenchFiles.which("rsync").map { rsync in
            let seconds = try BenchFiles.time(rsync, ["-a", a + "/", root + "/rsync-copy/"]) + Stopwatch.seconds { BenchFiles.settle() }
            try? FileManager.default.removeItem(atPath: root + "/rsync-copy")
            return seconds
        }

        let upload = try timedSync(root + "/state-a")
        let uploadRate = Double(count) / upload.seconds
        table.add("sync: initial upload of \(count) × 4 KiB", uploadRate, "files/s", peer: rsyncSeconds.map { Double(count) / $0 },
                  note: "tiergate sync to file://; peer: rsync -a to a local folder" + (rsyncSeconds.map { " (\(BenchTable.format(upload.seconds / $0))× rsync's time)" } ?? " (rsync missing)"))
        table.add("sync: peak RSS, upload of \(count) files", Double(upload.maxRSSKiB) / 1024, "MiB", note: "ru_maxrss of the tiergate process")

        let download = try timedSync(root + "/state-b")
        table.add("sync: full download of \(count) files to a new endpoint", Double(count) / download.seconds, "files/s", peer: rsyncSeconds.map { Double(count) / $0 },
                  note: "staged, one syncfs per commit, renamed into place; peer: rsync -a")
        table.add("sync: peak RSS, download of \(count) files", Double(download.maxRSSKiB) / 1024, "MiB", note: "ru_maxrss of the tiergate process")

        do {
            let state = try LocalState(path: root + "/state-b/db")
            let size = try state.compactedSize()
            table.add("sync: RocksDB on disk per file", Double(size) / Double(count), "bytes", note: "after compaction, \(count) entries")
            state.close()
        }

        let latencies = try propagation(root: root, a: a, b: b, changes: 20)
        table.add("sync: propagation A→B p50", latencies[latencies.count / 2] * 1000, "ms", note: "tiergate serve on both, file:// share, \(latencies.count) changes")
        table.add("sync: propagation A→B p95", latencies[min(latencies.count - 1, latencies.count * 95 / 100)] * 1000, "ms", note: "inotify → commit → 1 s log poll → apply")
        try? FileManager.default.removeItem(atPath: root)
    }

    /// Runs `tiergate sync` to completion; its wall time and peak RSS.
    static func timedSync(_ stateDirectory: String) throws -> (seconds: Double, maxRSSKiB: Int, started: Date) {
        let run = try timedRun(["sync", "--state-dir", stateDirectory])
        return (run.seconds, run.maxRSSKiB, run.started)
    }

    /// Runs `tiergate arguments` to completion after a `sync(2)`; its wall time (with a `sync(2)` after it),
    /// peak RSS (`ru_maxrss` from `wait4`), standard output, and when it was started. Throws with the end of
    /// its standard error when it fails.
    static func timedRun(_ arguments: [String]) throws -> (seconds: Double, maxRSSKiB: Int, output: String, started: Date) {
        let capture = NSTemporaryDirectory() + "tiergate-bench-\(getpid())"
        defer { unlink(capture + ".out"); unlink(capture + ".err") }
        BenchFiles.settle()
        let started = Date()
        var pid: pid_t = 0
        var argv = ([tiergate] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        posix_spawn_file_actions_addopen(&actions, 1, capture + ".out", O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, capture + ".err", O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        defer { posix_spawn_file_actions_destroy(&actions) }
        guard posix_spawn(&pid, tiergate, &actions, nil, &argv, environ) == 0 else { throw BenchError("cannot start \(tiergate)") }
        var status: Int32 = 0
        var usage = rusage()
        wait4(pid, &status, 0, &usage)
        BenchFiles.settle()
        let seconds = Date().timeIntervalSince(started)
        guard status == 0 else {
            let errors = ((try? String(contentsOfFile: capture + ".err", encoding: .utf8)) ?? "").split(separator: "\n").suffix(3).joined(separator: "; ")
            throw BenchError("tiergate \(arguments.joined(separator: " ")) failed (status \(status)): \(errors)")
        }
        return (seconds, usage.ru_maxrss, (try? String(contentsOfFile: capture + ".out", encoding: .utf8)) ?? "", started)
    }

    /// Starts `tiergate serve` on both endpoints, writes `changes` files on A one at a time and measures
    /// how long each takes to appear, complete, on B.
    static func propagation(root: String, a: String, b: String, changes: Int) throws -> [Double] {
        func serve(_ state: String) throws -> Process {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: tiergate)
            process.arguments = ["serve", "--state-dir", state]
            process.standardError = FileHandle(forWritingAtPath: "/dev/null")
            try process.run()
            return process
        }
        let serverA = try serve(root + "/state-a"), serverB = try serve(root + "/state-b")
        defer {
            serverA.terminate(); serverB.terminate()
            serverA.waitUntilExit(); serverB.waitUntilExit()
        }
        Thread.sleep(forTimeInterval: 3)  // both daemons finish their start pass
        var latencies: [Double] = []
        for index in 0..<changes {
            let name = "/propagation-\(index).txt"
            let content = "change \(index) at \(Date().timeIntervalSince1970)"
            let started = Date()
            try content.write(toFile: a + name, atomically: false, encoding: .utf8)
            while (try? String(contentsOfFile: b + name, encoding: .utf8)) != content {
                if Date().timeIntervalSince(started) > 30 { throw BenchError("change \(index) did not reach B within 30 s") }
                usleep(5000)
            }
            latencies.append(Date().timeIntervalSince(started))
            usleep(200_000)
        }
        return latencies.sorted()
    }
}
