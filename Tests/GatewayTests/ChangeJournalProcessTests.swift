import Backends
import CloudShare
import Foundation
import Gateway
import Glibc
import Testing

/// Real processes: two `tiergate serve` daemons on one share. After its first pass a daemon looks only at
/// what its watcher reported changed (the change journal), not at the whole tree; every kind of change
/// must still reach the other server, and a pass must cost what changed. Both watchers are tried: the
/// fanotify filesystem mark (the default here: the tests run as root) and inotify watches.
@Suite(.serialized) struct ChangeJournalProcessTests {
    static let folders = 40
    static let filesPerFolder = 50

    /// Two servers with the same 2,000 files, synced, then both serving.
    final class Pair {
        let group: SyncGroup
        var daemons: [TiergateProcess] = []

        init(journal: ChangeJournal.Source = .automatic, beforeServing: ((SyncGroup) throws -> Void)? = nil) async throws {
            group = try await SyncGroup(servers: 2) { index, root in
                guard index == 0 else { return }
                for folder in 0..<ChangeJournalProcessTests.folders {
                    let directory = root + String(format: "/d%02d", folder)
                    try! FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
                    for file in 0..<ChangeJournalProcessTests.filesPerFolder {
                        try! Data("folder \(folder) file \(file)\n".utf8).write(to: URL(fileURLWithPath: directory + String(format: "/f%03d", file)))
                    }
                }
            }
            try await group.converge()
            group.release()
            try beforeServing?(group)
            for index in 0..<2 {
                let daemon = try TiergateProcess(["serve", "--state-dir", group.scratch.path + "/state\(index)", "--poll-interval", "0.2",
                                                  "--change-journal", journal.rawValue], logs: group.scratch.path)
                daemons.append(daemon)
                guard daemon.waitFor("trigger=start", inErrorOutput: true) else {
                    throw GatewayError("serve \(index) did not finish its first pass: \(daemon.errorOutput.suffix(2000))")
                }
            }
        }

        deinit {
            for daemon in daemons {
                daemon.send(SIGTERM)
                _ = daemon.exitStatus()
            }
        }

        /// Waits until both endpoints hold the same tree; returns the differences left after `timeout`.
        func converged(timeout: Double = 30) -> [String] {
            let deadline = Date().addingTimeInterval(timeout)
            var differences: [String] = []
            repeat {
                let a = group.tree(0), b = group.tree(1)
                differences = Set(a.keys).union(b.keys).filter { a[$0] != b[$0] }.sorted()
                if differences.isEmpty { return [] }
                usleep(200_000)
            } while Date() < deadline
            return differences
        }

        /// How many passes a daemon made so far (`status --json`: every pass, with or without work).
        func passCount(_ index: Int) throws -> Int {
            let output = try TiergateProcess.expect(0, ["status", "--state-dir", group.scratch.path + "/state\(index)", "--json"], logs: group.scratch.path)
            let status = try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [[String: Any]]
            let hours = (status?.first?["activity"] as? [String: Any])?["hours"] as? [[String: Any]] ?? []
            return hours.reduce(0) { $0 + ($1["passes"] as? Int ?? 0) }
        }

        /// The pass summaries a daemon logged after `start` (its first pass).
        func passes(_ index: Int) -> [String] {
            daemons[index].errorOutput.split(separator: "\n").map(String.init).filter { $0.contains("sync success") && !$0.contains("trigger=start") }
        }
    }

    /// The processes whose parent is `pid`.
    static func children(of pid: pid_t) -> [pid_t] {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        return tasks.flatMap { task in
            ((try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/children", encoding: .utf8)) ?? "").split(separator: " ").compactMap { pid_t($0) }
        }
    }

    /// The number after "examined" in a pass summary.
    static func examined(_ line: String) -> Int? {
        guard let range = line.range(of: "examined ") else { return nil }
        return Int(line[range.upperBound...].prefix { $0.isNumber })
    }

    @Test func onePassExaminesWhatChangedNotTheWholeTree() async throws {
        let pair = try await Pair()
        let before = pair.passes(1).count
        pair.group.write(1, "d07/f013", "edited on server 1\n")
        #expect(pair.converged().isEmpty, "the edit did not reach server 0")
        let passes = pair.passes(1).dropFirst(before).filter { $0.contains("uploaded 1 ") }
        #expect(passes.count == 1, "one pass of server 1 commits the edit: \(pair.passes(1))")
        let total = Self.folders * (Self.filesPerFolder + 1)
        for pass in passes {
            let count = Self.examined(pass)
            #expect(count != nil && count! <= 10, "the pass examined the whole tree (\(total) items) instead of what changed: \(pass)")
        }
    }

    @Test(arguments: [ChangeJournal.Source.fanotify, .inotify])
    func everyKindOfChangeReachesTheOtherServer(journal: ChangeJournal.Source) async throws {
        let pair = try await Pair(journal: journal)
        #expect(pair.daemons[1].errorOutput.contains("journal=\(journal == .fanotify ? "fanotify filesystem mark" : "inotify")"),
                "the daemon names its watcher: \(pair.daemons[1].errorOutput.suffix(2000))")
        let group = pair.group
        let root = group.root(1)
        let outside = group.scratch.path + "/outside"
        func shell(_ command: String) throws {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/bin/sh")
            process.arguments = ["-c", command]
            try process.run()
            process.waitUntilExit()
            guard process.terminationStatus == 0 else { throw GatewayError("`\(command)` failed") }
        }

        // A folder with its files moved into another folder: a rename, not deletes and uploads.
        try shell("mv '\(root)/d01' '\(root)/d02/inner'")
        #expect(pair.converged().isEmpty, "the moved folder")
        // The moved folder is still watched under its new name.
        group.write(1, "d02/inner/f007", "edited after the move\n")
        #expect(pair.converged().isEmpty, "an edit inside the moved folder")
        // A populated folder moved in from outside the endpoint, and folders made with files at once.
        try FileManager.default.createDirectory(atPath: outside + "/arrived/deeper", withIntermediateDirectories: true)
        for index in 0..<30 { try Data("arrived \(index)\n".utf8).write(to: URL(fileURLWithPath: outside + "/arrived/deeper/a\(index)")) }
        try shell("mv '\(outside)/arrived' '\(root)/d03/arrived' && mkdir -p '\(root)/n1/n2/n3' && echo one > '\(root)/n1/one' && echo two > '\(root)/n1/n2/two' && echo three > '\(root)/n1/n2/n3/three'")
        #expect(pair.converged().isEmpty, "folders moved in and made with their files")
        // Deletes: a folder removed, a folder moved out of the endpoint; a file renamed across folders; a mode.
        try shell("rm -rf '\(root)/d04' && mv '\(root)/d05' '\(outside)/d05' && mv '\(root)/d06/f001' '\(root)/d08/renamed' && chmod 600 '\(root)/d09/f002'")
        #expect(pair.converged().isEmpty, "deletes, a move out, a rename and a mode")
        var info = stat()
        #expect(stat(group.root(0) + "/d09/f002", &info) == 0 && info.st_mode & 0o777 == 0o600, "the mode reached server 0")
        #expect(group.tree(0)["d01"] == nil && group.tree(0)["d04"] == nil && group.tree(0)["d05"] == nil)
        #expect(group.read(0, "d03/arrived/deeper/a29") == "arrived 29\n" && group.read(0, "n1/n2/n3/three") == "three\n")

        // Every pass after the first looked at its changes only, and the folder move was one rename.
        for pass in pair.passes(1) {
            #expect(pass.contains("(changes)"), "a pass walked the whole tree: \(pass)")
        }
        let share = try await CloudShare.open(try StoreLocator.open(group.url))
        let operations = try await share.log.records(after: 0).flatMap(\.operations)
        #expect(operations.contains { $0.op == .rename && $0.from == "d01" && $0.path == "d02/inner" }, "the folder move was committed as a rename")
        #expect(!operations.contains { $0.op == .upsert && $0.path.hasPrefix("d02/inner/") && $0.path != "d02/inner/f007" }, "no file of the moved folder was uploaded again")
    }

    @Test(arguments: [ChangeJournal.Source.fanotify, .inotify])
    func anEventQueueOverflowMakesTheNextPassLookAtEverything(journal: ChangeJournal.Source) async throws {
        // The kernel sizes a watcher's event queue when the watcher is made: daemons started while the
        // limit is 16 events lose events to the first burst, and learn only that some were lost.
        let limit = "/proc/sys/fs/\(journal == .fanotify ? "fanotify" : "inotify")/max_queued_events"
        let saved = try String(contentsOfFile: limit, encoding: .utf8)
        try "16".write(toFile: limit, atomically: false, encoding: .utf8)
        let pair: Pair
        do {
            pair = try await Pair(journal: journal)
            try saved.write(toFile: limit, atomically: false, encoding: .utf8)
        } catch {
            try saved.write(toFile: limit, atomically: false, encoding: .utf8)
            throw error
        }
        // Server 1's daemon (and any worker of it) is stopped while the burst is written: its queue overflows.
        let daemon = pair.daemons[1].process.processIdentifier
        let processes = [daemon] + Self.children(of: daemon)
        for pid in processes { kill(pid, SIGSTOP) }
        for index in 0..<200 { pair.group.write(1, "d10/b\(index)", "burst \(index)\n") }
        for pid in processes { kill(pid, SIGCONT) }
        #expect(pair.converged().isEmpty, "files of a burst that overflowed the event queue did not reach server 0")
        #expect(pair.group.read(0, "d10/b199") == "burst 199\n")
        #expect(pair.passes(1).contains { $0.contains("(whole tree)") }, "after the overflow a pass walked the whole tree: \(pair.passes(1))")
    }

    @Test func aCloudRenameOfAFileDeletedHereKeepsTheFileEverywhere() async throws {
        let pair = try await Pair()
        // Server 1's daemon is stopped while server 0 renames a file and server 1 deletes it: when server
        // 1 resumes it applies the rename (its entry moves to the new name, where nothing is on disk)
        // and its journal names only the old path. A rename racing a delete keeps the file, as a modify
        // does: server 1 fetches it again under the new name (it once committed the new name as deleted).
        let daemon = pair.daemons[1].process.processIdentifier
        let processes = [daemon] + Self.children(of: daemon)
        for pid in processes { kill(pid, SIGSTOP) }
        let before = pair.passes(0).count
        try FileManager.default.moveItem(atPath: pair.group.root(0) + "/d11/f004", toPath: pair.group.root(0) + "/d12/moved")
        let deadline = Date().addingTimeInterval(20)
        while pair.passes(0).count == before && Date() < deadline { usleep(100_000) }
        try FileManager.default.removeItem(atPath: pair.group.root(1) + "/d11/f004")
        for pid in processes { kill(pid, SIGCONT) }
        #expect(pair.converged().isEmpty, "the servers disagree")
        #expect(pair.group.read(0, "d12/moved") == "folder 11 file 4\n" && pair.group.read(1, "d12/moved") == "folder 11 file 4\n",
                "the rename on server 0 keeps the file")
        #expect(pair.group.read(1, "d11/f004") == nil)
    }

    @Test func theFilesystemMarkIgnoresWhatHappensOutsideTheEndpoint() async throws {
        let pair = try await Pair(journal: .fanotify)
        let group = pair.group
        // Settled: no pass runs until something changes.
        var before = try pair.passCount(1)
        for _ in 0..<20 {
            usleep(500_000)
            let now = try pair.passCount(1)
            if now == before { break }
            before = now
        }
        // Busy neighbours on the same file system: files, folders, renames and deletes beside the
        // endpoint, and inside a folder moved out of it.
        let outside = group.scratch.path + "/neighbour"
        try FileManager.default.createDirectory(atPath: outside + "/sub", withIntermediateDirectories: true)
        try FileManager.default.moveItem(atPath: group.root(1) + "/d13", toPath: outside + "/d13")
        usleep(1_500_000)
        let afterMove = try pair.passCount(1)
        #expect(afterMove > before, "the folder moved out woke a pass")
        #expect(pair.converged().isEmpty && group.tree(0)["d13"] == nil, "the folder moved out is gone from server 0")
        usleep(1_000_000)
        let settled = try pair.passCount(1)
        for index in 0..<300 {
            try Data("neighbour \(index)\n".utf8).write(to: URL(fileURLWithPath: outside + "/sub/n\(index)"))
            if index % 3 == 0 { try Data("moved away \(index)\n".utf8).write(to: URL(fileURLWithPath: outside + "/d13/f\(index)")) }
        }
        try FileManager.default.moveItem(atPath: outside + "/sub", toPath: outside + "/sub2")
        try FileManager.default.removeItem(atPath: outside + "/sub2")
        // Folders deeper than a path can say (over 4,096 bytes): their place is found by their parents.
        var folder = open(outside, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        for _ in 0..<24 {
            let name = String(repeating: "n", count: 190)
            #expect(mkdirat(folder, name, 0o755) == 0)
            let next = openat(folder, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            close(folder)
            folder = next
        }
        for index in 0..<20 {
            let file = openat(folder, "f\(index)", O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
            #expect(file >= 0 && write(file, "deep\n", 5) == 5)
            close(file)
        }
        close(folder)
        usleep(2_000_000)
        #expect(try pair.passCount(1) == settled, "changes outside the endpoint woke the daemon")
        // What happens inside still arrives, also in the folder the neighbour's folder moves back into.
        try FileManager.default.moveItem(atPath: outside + "/d13", toPath: group.root(1) + "/d14/back")
        group.write(1, "d14/back/f000", "edited after it came back\n")
        #expect(pair.converged().isEmpty, "the folder moved back in")
        #expect(group.read(0, "d14/back/f000") == "edited after it came back\n" && group.read(0, "d14/back/f297") == "moved away 297\n")
        for pass in pair.passes(1) {
            #expect(pass.contains("(changes)"), "a pass walked the whole tree: \(pass)")
        }
    }

    @Test func aWatchLimitBelowTheFolderCountIsRaisedOrNotNeededAndSaidSo() async throws {
        // 41 folders, and a per-user inotify limit below what root already holds: inotify must raise it
        // (and say so); the filesystem mark needs no watch per folder at all.
        let limitPath = "/proc/sys/fs/inotify/max_user_watches"
        let saved = try String(contentsOfFile: limitPath, encoding: .utf8)
        defer { try? saved.write(toFile: limitPath, atomically: false, encoding: .utf8) }
        for journal in [ChangeJournal.Source.fanotify, .inotify] {
            try "8".write(toFile: limitPath, atomically: false, encoding: .utf8)
            let pair = try await Pair(journal: journal)
            let raised = Int((try String(contentsOfFile: limitPath, encoding: .utf8)).trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
            try saved.write(toFile: limitPath, atomically: false, encoding: .utf8)
            let log = pair.daemons[1].errorOutput
            if journal == .fanotify {
                #expect(raised == 8 && !log.contains("max_user_watches"), "the filesystem mark touched the watch limit: \(log.suffix(2000))")
            } else {
                #expect(raised > 8 && log.contains("raised fs.inotify.max_user_watches to \(raised)"), "inotify did not say it raised the limit: \(log.suffix(2000))")
            }
            pair.group.write(1, "d39/f049", "edited with \(journal.rawValue)\n")
            #expect(pair.converged().isEmpty, "the edit did not arrive (\(journal))")
            for pass in pair.passes(1) {
                #expect(pass.contains("(changes)"), "a pass walked the whole tree (\(journal)): \(pass)")
            }
        }
    }

    @Test func aFileSystemMountedInsideTheEndpointKeepsTheJournalOnInotify() async throws {
        // A filesystem mark sees one file system; the walk goes into mounts inside the endpoint.
        var mounted: String?
        let pair = try await Pair(journal: .automatic) { group in
            let point = group.root(1) + "/mnt"
            try FileManager.default.createDirectory(atPath: point, withIntermediateDirectories: true)
            guard mount("tmpfs", point, "tmpfs", 0, nil) == 0 else { throw GatewayError("mount tmpfs on \(point): errno \(errno)") }
            mounted = point
        }
        defer {
            for daemon in pair.daemons {
                daemon.send(SIGTERM)
                _ = daemon.exitStatus()
            }
            if let mounted { umount(mounted) }
        }
        let log = pair.daemons[1].errorOutput
        #expect(log.contains("journal=inotify") && log.contains("mounted inside the endpoint"), "\(log.suffix(2000))")
        #expect(pair.daemons[0].errorOutput.contains("journal=fanotify filesystem mark"))
        pair.group.write(1, "mnt/inside", "written on the mounted file system\n")
        // (Compared by reading it: FileManager's enumerator does not always descend into the mount.)
        let deadline = Date().addingTimeInterval(30)
        while pair.group.read(0, "mnt/inside") == nil && Date() < deadline { usleep(100_000) }
        #expect(pair.group.read(0, "mnt/inside") == "written on the mounted file system\n",
                "a write on the file system mounted inside the endpoint did not arrive: \(pair.daemons[1].errorOutput.suffix(2000))")
    }
}
