import Foundation
import Synchronization
import Gateway
import Glibc

/// Tiergate at scale, with the real `tiergate` CLI and daemons on a tree of N files (1,000 per folder,
/// 1–4 KiB of pseudo-random content): initial upload, a pass with no change and one with 10 files changed,
/// a full and a namespace-only download to new endpoints, propagation between two `tiergate serve`
/// daemons, a burst of 1,000 new files, and the idle daemons' memory and CPU; `rsync -a` and
/// `cp -r --attributes-only` of the same tree are the baselines, in the same run.
///
/// `SCALE_FILES` is the size (default 100,000), or several (`100000,300000`) for a growth curve. The tree is
/// generated once and kept under `SCALE_DIR` (default `$SCALE_VOLUME/tiergate-scale`, else
/// `/var/tmp/tiergate-scale`); shares, endpoints, state and copies go beside it and are removed at the end.
enum ScaleBench {
    static let group = BenchGroup(name: "scale", summary: "N files (SCALE_FILES, default 100,000; a list for a growth curve): upload, no-change and 10-change passes, full and namespace-only download, serve propagation, idle daemon RSS/CPU; beside rsync -a and cp --attributes-only") { table in
        try await run(table)
    }

    /// Files changed for the incremental pass, edits timed between the daemons, files in the burst.
    static let changedFiles = 10, edits = 10, burstFiles = 1000

    /// What the growth curve compares between sizes.
    struct SizeFigures {
        var files: Int
        var noChangePass: Double
        var propagationP50: Double
        var daemonResidentMiB: Double
    }

    static func run(_ table: BenchTable) async throws {
        guard FileManager.default.isExecutableFile(atPath: SyncBench.tiergate) else { throw BenchError("\(SyncBench.tiergate) is not built (bench/run builds it)") }
        guard let rsync = BenchFiles.which("rsync") else { throw BenchError("rsync is not installed; it is this group's baseline") }
        let environment = ProcessInfo.processInfo.environment
        let setting = environment["SCALE_FILES"] ?? "100000"
        let parts = setting.split(separator: ",")
        let sizes = parts.compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }.filter { $0 >= 1000 }
        guard !sizes.isEmpty, sizes.count == parts.count else { throw BenchError("SCALE_FILES=\(setting): give one size or a comma-separated list, each at least 1000") }
        let base = try baseDirectory()
        let fileSystem = BenchFiles.fileSystem(of: base)
        say("trees and scratch in \(base), on \(fileSystem)")

        var figures: [SizeFigures] = []
        for (number, files) in sizes.enumerated() {
            if number > 0, fileSystem.hasPrefix("ext4 without a journal") {
                // Without a journal, ext4 skips every free inode deleted in the last 30 s when it allocates
                // one: the next size's copies would pay for this size's cleanup.
                say("waiting 30 s after the cleanup (ext4 without a journal skips inodes freed in the last 30 s)")
                sleep(30)
            }
            figures.append(try measure(files: files, base: base, rsync: rsync, fileSystem: fileSystem, table: table))
        }
        guard let first = figures.first else { return }
        for later in figures.dropFirst() {
            let name = "scale growth \(grouped(first.files)) → \(grouped(later.files)) files (×\(BenchTable.format(Double(later.files) / Double(first.files))))"
            table.add(name + ": pass with no change", later.noChangePass / first.noChangePass, "×",
                      note: "\(BenchTable.format(first.noChangePass)) s → \(BenchTable.format(later.noChangePass)) s")
            table.add(name + ": propagation p50", later.propagationP50 / first.propagationP50, "×",
                      note: "\(BenchTable.format(first.propagationP50 * 1000)) ms → \(BenchTable.format(later.propagationP50 * 1000)) ms")
            table.add(name + ": idle daemon RSS, A + B", later.daemonResidentMiB / first.daemonResidentMiB, "×",
                      note: "\(BenchTable.format(first.daemonResidentMiB)) MiB → \(BenchTable.format(later.daemonResidentMiB)) MiB")
        }
    }

    /// Where generated trees and scratch go (`SCALE_DIR`, else `$SCALE_VOLUME/tiergate-scale`, else
    /// `/var/tmp/tiergate-scale`), created if missing; other groups that use the scale tree share it.
    static func baseDirectory() throws -> String {
        let environment = ProcessInfo.processInfo.environment
        let base = environment["SCALE_DIR"] ?? environment["SCALE_VOLUME"].map { $0 + "/tiergate-scale" } ?? "/var/tmp/tiergate-scale"
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        return base
    }

    /// Every step at one size; adds its rows and returns what the growth curve compares.
    static func measure(files: Int, base: String, rsync: String, fileSystem: String, table: BenchTable) throws -> SizeFigures {
        let label = "scale \(grouped(files))"
        let folders = (files + 999) / 1000
        let tree = try cachedTree(base + "/tree-\(files)", files: files)
        let scratch = base + "/scratch-\(files)"
        try remove(scratch)
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer {
            // SCALE_KEEP keeps the scratch (logs, state, shares) of a run to look into.
            if ProcessInfo.processInfo.environment["SCALE_KEEP"] == nil { try? remove(scratch) }
        }
        let a = scratch + "/a", b = scratch + "/b", stubs = scratch + "/stubs"
        let stateA = scratch + "/state-a", stateB = scratch + "/state-b", stateStubs = scratch + "/state-stubs"
        let share = "file://" + scratch + "/share"

        say("copying the tree to endpoint A (not timed)")
        try BenchFiles.time("/bin/cp", ["-a", tree, a])
        let treeFiles = try BenchFiles.listing(tree)
        guard treeFiles.count == files else { throw BenchError("\(tree) holds \(treeFiles.count) files, not \(files): remove it and run again") }
        try verify(a, holds: treeFiles, like: tree, what: "the copy of the tree")
        let treeBytes = treeFiles.values.reduce(0, +)
        try OperationsBench.tiergate(["share", "create", share])

        // 1. Initial upload, beside rsync -a of the same tree to a fresh folder.
        say("rsync -a of \(grouped(files)) files to a fresh folder")
        let rsyncCopy = scratch + "/rsync-copy"
        let rsyncInitial = try timedPeer(rsync, ["-a", a + "/", rsyncCopy + "/"])
        say("tiergate endpoint add + sync of \(grouped(files)) files (rsync took \(BenchTable.format(rsyncInitial)) s)")
        let add = try Stopwatch.seconds {
            try OperationsBench.tiergate(["endpoint", "add", a, "--share", share, "--state-dir", stateA, "--server-name", "scale-a"])
        }
        let upload = try SyncBench.timedSync(stateA)
        let uploaded = try lastPass(stateA)
        guard uploaded.result == "success", uploaded.uploaded == files + folders else {
            throw BenchError("the initial upload committed \(uploaded.uploaded) items, not \(files) files and \(folders) folders: \(uploaded.result)")
        }
        let uploadSeconds = add + upload.seconds
        table.add("\(label): initial upload (endpoint add + sync)", uploadSeconds, "s", peer: rsyncInitial,
                  note: "\(grouped(treeBytes >> 20)) MiB to a file:// share; peer: rsync -a to a fresh folder; \(ratio(uploadSeconds, rsyncInitial)); on \(fileSystem)")
        table.add("\(label): initial upload rate", Double(files) / uploadSeconds, "files/s", peer: Double(files) / rsyncInitial, note: "peer: rsync -a")
        table.add("\(label): initial upload peak RSS", mebibytes(upload.maxRSSKiB), "MiB", note: "ru_maxrss of tiergate sync")

        // 2. A pass with nothing changed.
        say("uploaded in \(BenchTable.format(uploadSeconds)) s; passes with no change")
        let rsyncNoChange = try timedPeer(rsync, ["-a", "--exclude=/.tiergate", a + "/", rsyncCopy + "/"])
        let noChange = try SyncBench.timedSync(stateA)
        let idlePass = try lastPass(stateA)
        guard idlePass.result == "success", idlePass.uploaded == 0, idlePass.downloaded == 0 else {
            throw BenchError("the pass with no change did something: \(idlePass.summary)")
        }
        table.add("\(label): pass with no change", noChange.seconds, "s", peer: rsyncNoChange,
                  note: "tiergate sync; peer: rsync -a rerun; \(ratio(noChange.seconds, rsyncNoChange)); peak RSS \(BenchTable.format(mebibytes(noChange.maxRSSKiB))) MiB")

        // 3. A pass with 10 files changed (new content, new size), the same 10 for rsync.
        let changed = (0..<changedFiles).map { existingFile($0, files: files) }
        for (number, path) in changed.enumerated() {
            var noise = NoiseBytes(seed: 0xC4A9_6E00 + UInt64(number))
            try write(noise.file(), to: a + "/" + path)
        }
        say("no-change pass \(BenchTable.format(noChange.seconds)) s, rsync \(BenchTable.format(rsyncNoChange)) s; passes with \(changedFiles) files changed")
        let rsyncChanged = try timedPeer(rsync, ["-a", "--exclude=/.tiergate", a + "/", rsyncCopy + "/"])
        let changePass = try SyncBench.timedSync(stateA)
        let changeReport = try lastPass(stateA)
        guard changeReport.result == "success", changeReport.uploaded == changedFiles else {
            throw BenchError("the pass with \(changedFiles) files changed uploaded \(changeReport.uploaded): \(changeReport.summary)")
        }
        try verify(rsyncCopy, holds: try BenchFiles.listing(a), like: a, extra: changed, what: "rsync's copy")
        table.add("\(label): pass with \(changedFiles) files changed", changePass.seconds, "s", peer: rsyncChanged,
                  note: "tiergate sync; peer: rsync -a of the same change; \(ratio(changePass.seconds, rsyncChanged)); peak RSS \(BenchTable.format(mebibytes(changePass.maxRSSKiB))) MiB")

        // 4. Full download to a new endpoint (a second registered server).
        say("\(changedFiles)-change pass \(BenchTable.format(changePass.seconds)) s, rsync \(BenchTable.format(rsyncChanged)) s; full download of \(grouped(files)) files to a new endpoint")
        try FileManager.default.createDirectory(atPath: b, withIntermediateDirectories: true)
        let addB = try Stopwatch.seconds {
            try OperationsBench.tiergate(["endpoint", "add", b, "--share", share, "--state-dir", stateB, "--server-name", "scale-b"])
        }
        let firstFile = FirstFileWatch(b)
        let download = try SyncBench.timedSync(stateB)
        let downloadBegins = firstFile.stop().map { $0.timeIntervalSince(download.started) }
        let downloaded = try lastPass(stateB)
        guard downloaded.result == "success", downloaded.downloaded == files else {
            throw BenchError("the download wrote \(downloaded.downloaded) of \(files) files: \(downloaded.summary)")
        }
        let filesOfA = try BenchFiles.listing(a)
        try verify(b, holds: filesOfA, like: a, extra: changed, what: "the downloaded endpoint")
        let downloadSeconds = addB + download.seconds
        table.add("\(label): full download to a new endpoint (endpoint add + sync)", downloadSeconds, "s", peer: rsyncInitial,
                  note: "\(BenchTable.format(Double(files) / downloadSeconds)) files/s; peer: the rsync -a to a fresh folder above (\(BenchTable.format(Double(files) / rsyncInitial)) files/s); \(ratio(downloadSeconds, rsyncInitial))")
        table.add("\(label): full download peak RSS", mebibytes(download.maxRSSKiB), "MiB", note: "ru_maxrss of tiergate sync")
        if let downloadBegins {
            table.add("\(label): full download, first file in place", downloadBegins, "s", note: "from the start of tiergate sync on the new endpoint (polled every 10 ms)")
        }

        // 5. Namespace-only download: every file arrives as a stub.
        say("downloaded in \(BenchTable.format(downloadSeconds)) s; namespace-only download of \(grouped(files)) stubs")
        let attributesCopy = scratch + "/attributes-copy"
        let cpAttributes = try timedPeer("/bin/cp", ["-r", "--attributes-only", a, attributesCopy])
        try FileManager.default.createDirectory(atPath: stubs, withIntermediateDirectories: true)
        try OperationsBench.tiergate(["endpoint", "add", stubs, "--share", share, "--state-dir", stateStubs, "--server-name", "scale-stubs"])
        try OperationsBench.tiergate(["endpoint", "tiering", stubs, "--state-dir", stateStubs, "--free-space", "0", "--download", "namespace-only"])
        let firstStub = FirstFileWatch(stubs)
        let namespace = try SyncBench.timedSync(stateStubs)
        let namespaceBegins = firstStub.stop().map { $0.timeIntervalSince(namespace.started) }
        let namespaceReport = try lastPass(stateStubs)
        guard namespaceReport.result == "success", namespaceReport.stubsCreated == files, namespaceReport.downloaded == 0 else {
            throw BenchError("the namespace-only download made \(namespaceReport.stubsCreated) stubs of \(files): \(namespaceReport.summary)")
        }
        try verifyStubs(stubs, holds: filesOfA, extra: changed)
        table.add("\(label): namespace-only download", Double(files) / namespace.seconds, "stubs/s", peer: Double(files) / cpAttributes,
                  note: "endpoint tiering --download namespace-only, then sync: \(BenchTable.format(namespace.seconds)) s; peer: cp -r --attributes-only (files/s); \(ratio(namespace.seconds, cpAttributes))")
        table.add("\(label): namespace-only download peak RSS", mebibytes(namespace.maxRSSKiB), "MiB", note: "ru_maxrss of tiergate sync")
        if let namespaceBegins {
            table.add("\(label): namespace-only download, first stub in place", namespaceBegins, "s", note: "from the start of tiergate sync on the new endpoint (polled every 10 ms)")
        }

        // 6–8. Two daemons: propagation B → A, a burst of new files, then idle.
        let daemons = try serveBoth(a: a, b: b, stateA: stateA, stateB: stateB, files: files, scratch: scratch)
        let p50 = daemons.latencies[daemons.latencies.count / 2], p95 = daemons.latencies[min(daemons.latencies.count - 1, daemons.latencies.count * 95 / 100)]
        table.add("\(label): propagation B → A p50", p50 * 1000, "ms",
                  note: "\(daemons.latencies.count) edits of a file on B, 3 s apart, until A holds the same bytes; tiergate serve --poll-interval 1 on both")
        table.add("\(label): propagation B → A p95", p95 * 1000, "ms", note: "inotify debounce → commit → A's log poll → apply")
        table.add("\(label): \(grouped(burstFiles)) new files in a new folder, B → A", daemons.burst, "s",
                  note: "from the first write on B until A holds all \(burstFiles) with the same bytes (written in \(BenchTable.format(daemons.burstWrite)) s)")
        for (name, daemon) in [("A", daemons.a), ("B", daemons.b)] {
            table.add("\(label): daemon \(name) RSS, idle", mebibytes(daemon.residentKiB), "MiB", note: "VmRSS of supervisor + worker after \(grouped(files)) files settled")
            table.add("\(label): daemon \(name) RSS, peak", mebibytes(daemon.peakKiB), "MiB", note: "VmHWM of supervisor + worker, summed: start pass, propagation, burst")
            table.add("\(label): daemon \(name) CPU, idle", daemon.cpu * 100, "% of a core", note: "utime + stime of supervisor + worker over \(idleSeconds) s idle")
        }
        say("\(label) done")
        return SizeFigures(files: files, noChangePass: noChange.seconds, propagationP50: p50,
                           daemonResidentMiB: mebibytes(daemons.a.residentKiB + daemons.b.residentKiB))
    }

    /// One daemon's figures once everything settled.
    struct DaemonFigures {
        var residentKiB: Int
        var peakKiB: Int
        var cpu: Double
    }

    /// What the two daemons did: edit latencies (sorted), the burst's time and its writing time, and each
    /// daemon's figures.
    struct ServeFigures {
        var latencies: [Double]
        var burst: Double
        var burstWrite: Double
        var a: DaemonFigures
        var b: DaemonFigures
    }

    /// Starts `tiergate serve` on A and B, waits until both are idle, times edits and a burst of new files
    /// from B to A, then reads both daemons' idle memory and CPU.
    static func serveBoth(a: String, b: String, stateA: String, stateB: String, files: Int, scratch: String) throws -> ServeFigures {
        say("starting tiergate serve on A and B; waiting for both start passes")
        let logA = scratch + "/serve-a.log", logB = scratch + "/serve-b.log"
        let started = Date().timeIntervalSince1970
        let serverA = try OperationsBench.startServe(state: stateA, metrics: "off", log: logA, pollInterval: 1)
        let serverB = try OperationsBench.startServe(state: stateB, metrics: "off", log: logB, pollInterval: 1)
        let servers = [(serverA, logA), (serverB, logB)]
        defer {
            for (server, log) in servers {
                stop(server)
                reportProblems(in: log)
            }
        }
        // A start pass walks and stats every file; allow a minute plus a millisecond per file.
        let settleTimeout = 60 + Double(files) / 1000
        try waitUntilIdle([stateA, stateB], since: started, timeout: settleTimeout, servers: servers)
        let trees = [serverA, serverB].map { ProcessTree(root: $0.processIdentifier) }
        let processes = trees.map(\.pids)
        guard processes.allSatisfy({ $0.count == 2 }) else { throw BenchError("expected a supervisor and a worker per daemon, found \(processes)") }

        say("\(edits) edits on B, 3 s apart")
        var latencies: [Double] = []
        for edit in 0..<edits {
            let path = existingFile(100 + edit, files: files)
            var noise = NoiseBytes(seed: 0xED17_0000 + UInt64(edit))
            let content = noise.file()
            let clock = Date()
            try write(content, to: b + "/" + path)
            try waitFor("edit \(edit) of \(path) to reach A", timeout: 60, interval: 0.005, servers: servers) {
                FileManager.default.contents(atPath: a + "/" + path) == Data(content)
            }
            latencies.append(Date().timeIntervalSince(clock))
            let rest = 3 - Date().timeIntervalSince(clock)
            if rest > 0 { usleep(UInt32(rest * 1e6)) }
        }

        say("propagation p50 \(BenchTable.format(latencies.sorted()[latencies.count / 2] * 1000)) ms; \(grouped(burstFiles)) new files in a new folder on B")
        let burstStarted = Date()
        let folder = "burst"
        try FileManager.default.createDirectory(atPath: b + "/" + folder, withIntermediateDirectories: false)
        var expected: [String: [UInt8]] = [:]
        var noise = NoiseBytes(seed: 0xB0_2057)
        for index in 0..<burstFiles {
            let content = noise.file()
            expected["f\(index)"] = content
            try write(content, to: b + "/\(folder)/f\(index)")
        }
        let burstWrite = Date().timeIntervalSince(burstStarted)
        try waitFor("\(burstFiles) new files to reach A", timeout: 300, interval: 0.05, servers: servers) {
            guard let arrived = try? BenchFiles.listing(a + "/" + folder), arrived.count == expected.count,
                  expected.allSatisfy({ arrived[$0.key] == $0.value.count }) else { return false }
            return expected.allSatisfy { FileManager.default.contents(atPath: a + "/\(folder)/" + $0.key) == Data($0.value) }
        }
        let burst = Date().timeIntervalSince(burstStarted)

        say("the burst reached A in \(BenchTable.format(burst)) s; waiting for both daemons to settle, then \(idleSeconds) s of idle")
        try waitUntilIdle([stateA, stateB], since: burstStarted.timeIntervalSince1970, timeout: settleTimeout, servers: servers)
        try verify(a, holds: try BenchFiles.listing(b), like: b, extra: (100..<100 + edits).map { existingFile($0, files: files) },
                   what: "endpoint A after the daemons settled")
        let before = trees.map { $0.cpuSeconds() }
        sleep(UInt32(idleSeconds))
        let cpu = zip(trees, before).map { ($0.cpuSeconds() - $1) / Double(idleSeconds) }
        guard trees.map(\.pids) == processes else { throw BenchError("a daemon's worker was restarted during the run (see \(logA), \(logB))") }
        let figures = trees.indices.map { DaemonFigures(residentKiB: trees[$0].residentKiB(), peakKiB: trees[$0].peakResidentKiB(), cpu: cpu[$0]) }
        return ServeFigures(latencies: latencies.sorted(), burst: burst, burstWrite: burstWrite, a: figures[0], b: figures[1])
    }

    /// Seconds the idle daemons are watched (`SCALE_IDLE_SECONDS`, default 20).
    static var idleSeconds: Int { BenchFiles.setting("SCALE_IDLE_SECONDS", 20) }

    /// Waits until every state directory's endpoint has passed since `since` and is idle: healthy, its
    /// cursor at the share's head, nothing pending, nothing failing (as `tiergate status --json` says),
    /// and its daemon quiet.
    static func waitUntilIdle(_ states: [String], since: Double, timeout: Double, servers: [(Process, String)]) throws {
        var last: [String] = []
        do {
            try waitFor("both daemons to settle", timeout: timeout, interval: 1, servers: servers) {
                last = []
                var idle = true
                for state in states {
                    let status = try endpointStatus(state)
                    let pass = status.lastSync
                    idle = idle && (pass?.started ?? 0) >= since && pass?.result == "success" && status.health == "Healthy"
                        && status.head == status.cursor && status.pendingChanges == 0 && status.filesNotSyncing == 0
                    last.append("\(state): \(status.health), cursor \(status.cursor)/\(status.head.map(String.init) ?? "-"), \(status.pendingChanges) pending, \(status.filesNotSyncing) not syncing, last pass: \(pass?.summary ?? "none")")
                }
                guard idle else { return false }
                // A pass that has begun is not in the status until it ends (a daemon's own downloads can
                // start one, as a local change): settled also means every daemon spent under 5 % of a core
                // over 2 s.
                let trees = servers.map { ProcessTree(root: $0.0.processIdentifier) }
                let before = trees.map { $0.cpuSeconds() }
                sleep(2)
                let busy = zip(trees, before).map { ($0.cpuSeconds() - $1) / 2 }
                last.append("CPU over 2 s: \(busy.map { BenchTable.format($0 * 100) + " %" }.joined(separator: ", "))")
                return busy.allSatisfy { $0 < 0.05 }
            }
        } catch {
            throw BenchError("\(error); status: \(last.joined(separator: "; "))")
        }
    }

    /// Polls `condition` every `interval` seconds until it holds; throws after `timeout` seconds, or at once
    /// when a daemon has exited (with the end of its log).
    static func waitFor(_ what: String, timeout: Double, interval: Double, servers: [(Process, String)], _ condition: () throws -> Bool) throws {
        let started = Date()
        while try !condition() {
            for (server, log) in servers where !server.isRunning {
                let tail = ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n").suffix(5).joined(separator: "\n")
                throw BenchError("tiergate serve exited with status \(server.terminationStatus) while waiting for \(what); \(log) ends:\n\(tail)")
            }
            if Date().timeIntervalSince(started) > timeout { throw BenchError("timed out after \(Int(timeout)) s waiting for \(what)") }
            usleep(UInt32(interval * 1e6))
        }
    }

    /// The one endpoint of a state directory as `tiergate status --json` reports it.
    static func endpointStatus(_ state: String) throws -> Gateway.EndpointStatus {
        guard let output = PeerTool.output([SyncBench.tiergate, "status", "--json", "--state-dir", state]) else {
            throw BenchError("tiergate status --json --state-dir \(state) failed")
        }
        let status = try JSONDecoder().decode([Gateway.EndpointStatus].self, from: Data(output.utf8))
        guard status.count == 1 else { throw BenchError("\(state) has \(status.count) endpoints, not 1") }
        return status[0]
    }

    /// The report of the endpoint's last pass (what `tiergate sync` just did).
    static func lastPass(_ state: String) throws -> SyncReport {
        guard let pass = try endpointStatus(state).lastSync else { throw BenchError("\(state) has no pass recorded") }
        return pass
    }

    /// Stops a daemon (SIGTERM to the supervisor) and makes sure its worker went with it.
    static func stop(_ server: Process) {
        let pids = ProcessTree(root: server.processIdentifier).pids
        OperationsBench.stop(server)
        for pid in pids.dropFirst() {
            for _ in 0..<50 where kill(pid, 0) == 0 { usleep(100_000) }
            if kill(pid, 0) == 0 {
                say("worker \(pid) outlived its supervisor by 5 s; killing it")
                kill(pid, SIGKILL)
            }
        }
    }

    /// Prints a daemon's warnings and errors, so that a run that got its figures despite them says so.
    static func reportProblems(in log: String) {
        let lines = ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n")
        let problems = lines.filter { $0.contains(" warning ") || $0.contains(" error ") || $0.contains(" critical ") }
        guard !problems.isEmpty else { return }
        say("\(log): \(problems.count) warnings or errors, the first ones:")
        for line in problems.prefix(5) { FileHandle.standardError.write(Data("  \(line)\n".utf8)) }
    }

    /// The generated tree of `files` files, made once: written under a temporary name and renamed when complete.
    static func cachedTree(_ path: String, files: Int) throws -> String {
        if FileManager.default.fileExists(atPath: path) {
            say("reusing the tree \(path)")
            return path
        }
        let partial = path + ".partial"
        try remove(partial)
        try FileManager.default.createDirectory(atPath: partial, withIntermediateDirectories: true)
        say("generating \(grouped(files)) files in \(partial)")
        var noise = NoiseBytes(seed: 0x5CA1_E001)
        for index in 0..<files {
            if index % 1000 == 0 {
                guard mkdir(partial + "/d\(index / 1000)", 0o755) == 0 else { throw BenchError("mkdir \(partial)/d\(index / 1000): errno \(errno)") }
            }
            if index > 0 && index % 100_000 == 0 { say("  \(grouped(index)) files") }
            try write(noise.file(), to: partial + "/d\(index / 1000)/f\(index)")
        }
        BenchFiles.settle()
        guard rename(partial, path) == 0 else { throw BenchError("rename \(partial): errno \(errno)") }
        return path
    }

    /// The `number`th file chosen for a change: spread over the full folders of the tree.
    static func existingFile(_ number: Int, files: Int) -> String {
        let folder = number * 7919 % (files / 1000), index = folder * 1000 + number * 37 % 1000
        return "d\(folder)/f\(index)"
    }

    /// Throws unless `copy` holds exactly the files `expected` lists (path → size), and a sample of them
    /// (with `extra`) holds the same bytes as in `source`.
    static func verify(_ copy: String, holds expected: [String: Int], like source: String, extra: [String] = [], what: String) throws {
        let found = try BenchFiles.listing(copy)
        if found != expected {
            let missing = expected.keys.filter { found[$0] == nil }, unexpected = found.keys.filter { expected[$0] == nil }
            let resized = expected.keys.filter { found[$0] != nil && found[$0] != expected[$0] }
            throw BenchError("\(what) (\(copy)) holds \(found.count) files where \(expected.count) were expected: \(missing.count) missing (\(missing.prefix(3).joined(separator: ", "))), \(unexpected.count) unexpected (\(unexpected.prefix(3).joined(separator: ", "))), \(resized.count) of another size (\(resized.prefix(3).joined(separator: ", ")))")
        }
        for path in sample(of: expected) + extra {
            guard let original = FileManager.default.contents(atPath: source + "/" + path),
                  FileManager.default.contents(atPath: copy + "/" + path) == original else {
                throw BenchError("\(what): \(copy)/\(path) does not hold the bytes of \(source)/\(path)")
            }
        }
    }

    /// Throws unless `endpoint` holds a stub of every file `expected` lists, at its size, and a sample of
    /// them (with `extra`) carries the stub marker and no data.
    static func verifyStubs(_ endpoint: String, holds expected: [String: Int], extra: [String]) throws {
        let found = try BenchFiles.listing(endpoint)
        guard found == expected else { throw BenchError("the namespace-only endpoint holds \(found.count) files where \(expected.count) were expected (or their sizes differ)") }
        for path in sample(of: expected) + extra {
            let full = endpoint + "/" + path
            // No data at all: SEEK_DATA (3) finds none (ENXIO) in a stub that holds only holes.
            let stub = try StubFile.withOpened(full, writable: false) { file in
                (state: try file.state(), holdsData: lseek(file.descriptor, 0, 3 /* SEEK_DATA */) >= 0 || errno != ENXIO)
            }
            guard stub.state == .tiered else { throw BenchError("\(full) is not marked as a stub (\(StubFile.stateAttribute): \(stub.state.map(\.rawValue) ?? "none"))") }
            guard !stub.holdsData else { throw BenchError("the stub \(full) holds data") }
        }
    }

    /// 64 files of `files` to compare byte for byte, the same ones on every run.
    static func sample(of files: [String: Int]) -> [String] {
        (1000..<1064).map { existingFile($0, files: files.count) }.filter { files[$0] != nil }
    }

    /// Seconds `arguments` took, with a `sync(2)` before and after (as `SyncBench.timedSync` measures Tiergate).
    static func timedPeer(_ executable: String, _ arguments: [String]) throws -> Double {
        BenchFiles.settle()
        return try BenchFiles.time(executable, arguments) + Stopwatch.seconds { BenchFiles.settle() }
    }

    /// Writes `bytes` to `path` (created or truncated in place).
    static func write(_ bytes: [UInt8], to path: String) throws {
        var bytes = bytes
        try bytes.withUnsafeMutableBytes { try BenchFiles.writeFile(path, $0, blocks: 1) }
    }

    /// Removes a tree of any size (`rm -rf` is several times faster than `FileManager` at a million files).
    static func remove(_ path: String) throws {
        if FileManager.default.fileExists(atPath: path) { try BenchFiles.time("/bin/rm", ["-rf", path]) }
    }

    static func mebibytes(_ kibibytes: Int) -> Double { Double(kibibytes) / 1024 }

    static func ratio(_ tiergate: Double, _ peer: Double) -> String { "\(BenchTable.format(tiergate / peer))× the peer's time" }

    /// 100000 → "100,000".
    static func grouped(_ number: Int) -> String {
        var digits = String(number), groups: [Substring] = []
        while digits.count > 3 {
            groups.insert(digits.suffix(3), at: 0)
            digits.removeLast(3)
        }
        return ([Substring(digits)] + groups).joined(separator: ",")
    }

    /// A progress line on standard error, so that a run of many minutes is not silent.
    static func say(_ line: String) {
        let elapsed = Int(Date().timeIntervalSince(startTime))
        FileHandle.standardError.write(Data(String(format: "scale [%02d:%02d] ", elapsed / 60, elapsed % 60).appending(line + "\n").utf8))
    }

    static let startTime = Date()

    /// Deterministic pseudo-random bytes (xorshift64): the same tree on every machine, edits that differ from it.
    struct NoiseBytes {
        var state: UInt64

        /// Each seed gives its own stream; xorshift needs a state other than zero.
        init(seed: UInt64) {
            precondition(seed != 0)
            state = seed
        }

        mutating func next() -> UInt64 {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17
            return state
        }

        /// One file's content: 1–4 KiB.
        mutating func file() -> [UInt8] {
            var bytes = [UInt8](repeating: 0, count: 1024 + Int(next() % 3073))
            bytes.withUnsafeMutableBytes { raw in
                var offset = 0
                while offset < raw.count {
                    var word = next()
                    let count = min(8, raw.count - offset)
                    withUnsafeBytes(of: &word) { raw.baseAddress!.advanced(by: offset).copyMemory(from: $0.baseAddress!, byteCount: count) }
                    offset += count
                }
            }
            return bytes
        }
    }
}

/// When a regular file first appears below a directory: a thread looks every 10 ms (depth first, stopping
/// at the first file) until stopped.
final class FirstFileWatch: Sendable {
    private final class Shared: Sendable { let state = Mutex<(seen: Date?, stopped: Bool)>((nil, false)) }
    private let shared = Shared()

    /// Starts watching `root`.
    init(_ root: String) {
        let thread = Thread { [shared] in
            while true {
                let (seen, stopped) = shared.state.withLock { ($0.seen, $0.stopped) }
                if stopped { return }
                if seen == nil, Self.holdsAFile(root) { shared.state.withLock { $0.seen = $0.seen ?? Date() } }
                usleep(10_000)
            }
        }
        thread.start()
    }

    /// Stops watching; when the first file was seen, if it was.
    func stop() -> Date? {
        shared.state.withLock {
            $0.stopped = true
            return $0.seen
        }
    }

    /// Whether a regular file is below `directory` (names starting with "." are not looked into).
    static func holdsAFile(_ directory: String) -> Bool {
        guard let handle = opendir(directory) else { return false }
        defer { closedir(handle) }
        while let entry = readdir(handle) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name.hasPrefix(".") { continue }
            if entry.pointee.d_type == UInt8(DT_REG) { return true }
            if entry.pointee.d_type == UInt8(DT_DIR), holdsAFile(directory + "/" + name) { return true }
        }
        return false
    }
}
