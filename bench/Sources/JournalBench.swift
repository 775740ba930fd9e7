import Foundation
import Gateway
import Glibc

/// The change journal's two watchers side by side (`serve --change-journal inotify`, the baseline, and
/// `fanotify`, a filesystem mark), on one ext4 loop volume made for the run (a filesystem mark sees the
/// whole volume: no other process writes there but the bench's own neighbour). Two endpoints of
/// JOURNAL_FOLDERS folders (default 10,000) of 5 files each share a `file://` share on the volume; with
/// each watcher in turn, `tiergate serve` runs on both and the bench measures:
///
/// 1. how long each daemon takes from its start to watching its endpoint (inotify adds a watch per
///    folder; the mark is one call), and how many inotify watches the two hold;
/// 2. propagation B → A: 10 edits on B, 1 s apart, each timed until A holds the same bytes;
/// 3. a busy neighbour on the same volume, outside both endpoints: JOURNAL_NEIGHBOUR_FILES files
///    (default 100,000) made in folders of 100 and removed again; the daemons' CPU meanwhile, and the
///    passes it woke (none may be woken: the bench fails otherwise).
enum JournalBench {
    static let group = BenchGroup(name: "journal", summary: "change journal: fanotify filesystem mark beside inotify watches (start, watches, propagation, a busy neighbour on the same volume)") { table in
        try run(table)
    }

    static let filesPerFolder = 5

    static func run(_ table: BenchTable) throws {
        let folders = BenchFiles.setting("JOURNAL_FOLDERS", 10_000)
        let neighbourFiles = BenchFiles.setting("JOURNAL_NEIGHBOUR_FILES", 100_000)
        let root = BenchFiles.fresh("journal")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let volume = try LoopVolume(image: root + "/volume.img", mountpoint: root + "/mnt", megabytes: 4096)
        defer { volume.remove() }
        let base = volume.mountpoint
        let (a, b, share) = (base + "/a", base + "/b", "file://" + base + "/share")
        let (stateA, stateB) = (base + "/state-a", base + "/state-b")
        say("making \(folders * filesPerFolder) files in \(folders) folders")
        for folder in 0..<folders {
            let directory = a + "/d\(folder)"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            for file in 0..<filesPerFolder { try write(directory + "/f\(file)", "folder \(folder) file \(file)\n") }
        }
        try OperationsBench.twoSyncedEndpoints(share: share, a: a, b: b, stateA: stateA, stateB: stateB, names: ("journal-a", "journal-b"))

        var baseline: [String: Double] = [:]
        for journal in ["inotify", "fanotify"] {
            say("\(journal): starting tiergate serve on A and B")
            let logs = [base + "/serve-a-\(journal).log", base + "/serve-b-\(journal).log"]
            let started = Date()
            let servers = try zip([stateA, stateB], logs).map { state, log in
                try OperationsBench.startServe(state: state, metrics: "off", log: log, pollInterval: 1, more: ["--change-journal", journal])
            }
            defer { for server in servers { ScaleBench.stop(server) } }
            let pairs = Array(zip(servers, logs))
            // 1. From the start to watching the endpoint, and the watches held.
            var ready: [Double] = []
            for log in logs {
                try ScaleBench.waitFor("\(log) to say it watches its endpoint", timeout: 120, interval: 0.005, servers: pairs) {
                    contents(log).contains("watching endpoint")
                }
                ready.append(Date().timeIntervalSince(started))
            }
            for log in logs where !contents(log).contains("journal=\(journal)") {
                throw BenchError("\(log) does not name the \(journal) journal: \(contents(log).suffix(600))")
            }
            try ScaleBench.waitUntilIdle([stateA, stateB], since: started.timeIntervalSince1970, timeout: 300, servers: pairs)
            let watches = servers.reduce(0) { $0 + inotifyWatches(ProcessTree(root: $1.processIdentifier)) }
            let slowest = ready.max()!
            table.add("\(journal): start → watching, slower daemon", slowest, "s", peer: baseline["ready"],
                      note: "\(folders) folders; A \(BenchTable.format(ready[0])) s, B \(BenchTable.format(ready[1])) s; \(watches) inotify watches held by A + B")

            // 2. Propagation B → A.
            var latencies: [Double] = []
            for edit in 0..<10 {
                let path = "d\(edit * (folders / 10))/f0"
                let text = "edit \(edit) with \(journal)\n"
                let edited = Date()
                try write(b + "/" + path, text)
                try ScaleBench.waitFor("edit \(edit) to reach A", timeout: 60, interval: 0.005, servers: pairs) {
                    contents(a + "/" + path) == text
                }
                latencies.append(Date().timeIntervalSince(edited))
                usleep(1_000_000)
            }
            latencies.sort()
            let p50 = latencies[latencies.count / 2], worst = latencies.last!
            table.add("\(journal): propagation B → A p50", p50 * 1000, "ms", peer: baseline["p50"].map { $0 * 1000 },
                      note: "10 edits 1 s apart; worst \(BenchTable.format(worst * 1000)) ms; --poll-interval 1")

            // 3. A busy neighbour on the same volume.
            usleep(3_000_000)   // the last edit's passes end
            let passesBefore = try [stateA, stateB].map(passes)
            let cpuBefore = servers.map { ProcessTree(root: $0.processIdentifier).cpuSeconds() }
            let neighbour = base + "/neighbour"
            let busy = Date()
            for index in 0..<neighbourFiles {
                if index % 100 == 0 { try FileManager.default.createDirectory(atPath: neighbour + "/n\(index / 100)", withIntermediateDirectories: true) }
                try write(neighbour + "/n\(index / 100)/x\(index)", "neighbour \(index)\n")
            }
            try FileManager.default.removeItem(atPath: neighbour)
            let busySeconds = Date().timeIntervalSince(busy)
            usleep(2_000_000)
            let cpu = zip(servers, cpuBefore).reduce(0.0) { $0 + ProcessTree(root: $1.0.processIdentifier).cpuSeconds() - $1.1 }
            let woken = try zip([stateA, stateB].map(passes), passesBefore).reduce(0) { $0 + $1.0 - $1.1 }
            guard woken == 0 else { throw BenchError("\(journal): the neighbour's files woke \(woken) passes of the daemons") }
            table.add("\(journal): daemons' CPU while a neighbour makes and removes \(neighbourFiles) files", cpu, "s", peer: baseline["cpu"],
                      note: "A + B, over the neighbour's \(BenchTable.format(busySeconds)) s and 2 s after; passes woken: 0")
            if journal == "inotify" { baseline = ["ready": slowest, "p50": p50, "cpu": cpu] }
        }
    }

    /// Every pass the daemon of `state` made (`status --json`: its activity hours).
    static func passes(_ state: String) throws -> Int {
        try ScaleBench.endpointStatus(state).activity?.hours.reduce(0) { $0 + $1.passes } ?? 0
    }

    /// The inotify watches the processes of `tree` hold (`inotify wd:` lines of their descriptors' fdinfo).
    static func inotifyWatches(_ tree: ProcessTree) -> Int {
        tree.pids.reduce(0) { total, pid in
            let descriptors = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fdinfo")) ?? []
            return total + descriptors.reduce(0) { count, fd in
                let info = (try? String(contentsOfFile: "/proc/\(pid)/fdinfo/\(fd)", encoding: .utf8)) ?? ""
                return count + info.components(separatedBy: "inotify wd:").count - 1
            }
        }
    }

    static func write(_ path: String, _ text: String) throws {
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
    }

    static func contents(_ path: String) -> String {
        (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
    }

    static func say(_ line: String) {
        FileHandle.standardError.write(Data("journal: \(line)\n".utf8))
    }
}
