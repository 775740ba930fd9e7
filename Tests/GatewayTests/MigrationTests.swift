import Backends
import CloudShare
import Foundation
import Gateway
import Glibc
import Hashing
import Synchronization
import Testing

/// `tiergate migrate` as a migration team runs it: real processes, `kill -9` mid-run, a source with
/// broken items, a daemon syncing the share meanwhile, and servers seeded with the data already.
@Suite(.serialized) struct MigrationTests {
    /// A source tree: `folders` × `files` of pseudo-random sizes, plus a few multi-chunk files.
    static func makeSource(_ root: String, folders: Int, files: Int, large: Int = 0) {
        let pool = randomBytes(64 << 10, seed: 3)
        for folder in 0..<folders {
            let directory = root + "/f\(folder)"
            try! FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            for file in 0..<files {
                // A unique first line, then a slice of random bytes: every file has its own content.
                let size = 64 + (folder * 7919 + file * 104_729) % 20_000
                let start = (folder * 31 + file * 17) % (pool.count - size)
                let content = Array("\(folder)/\(file)\n".utf8) + pool[start..<start + size]
                FileManager.default.createFile(atPath: directory + "/n\(file).dat", contents: Data(content))
            }
        }
        for index in 0..<large {
            FileManager.default.createFile(atPath: root + "/large\(index).bin", contents: Data(randomBytes(3 << 20, seed: UInt64(9_000_000 + index))))
        }
    }

    /// Every regular file under `root` (relative path → content), skipping Tiergate's own folder.
    static func files(_ root: String) -> [String: Data] {
        var result: [String: Data] = [:]
        let enumerator = FileManager.default.enumerator(atPath: root)
        while let relative = enumerator?.nextObject() as? String {
            if relative.hasPrefix(".tiergate") { enumerator?.skipDescendants(); continue }
            var info = stat()
            guard lstat(root + "/" + relative, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { continue }
            result[relative] = FileManager.default.contents(atPath: root + "/" + relative)
        }
        return result
    }

    /// The counts a migration's summary printed: (copied, changed, unchanged, deleted).
    static func counts(_ output: String) -> (copied: Int, updated: Int, unchanged: Int, deleted: Int)? {
        guard let match = output.firstMatch(of: /copied (\d+) new and (\d+) changed files.*?, (\d+) deleted, (\d+) unchanged/) else { return nil }
        return (Int(match.1)!, Int(match.2)!, Int(match.4)!, Int(match.3)!)
    }

    /// Rows of a CSV item log: (action, path, reason).
    static func logRows(_ path: String) -> [(action: String, path: String, reason: String)] {
        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").dropFirst().map { line in
            // Every field is quoted ("" inside a field is a quote).
            var fields: [String] = [], field = "", quoted = false, previous: Character = ","
            for character in line {
                if character == "\"" {
                    if quoted { quoted = false } else { if previous == "\"" { field.append("\"") }; quoted = true }
                } else if character == "," && !quoted {
                    fields.append(field)
                    field = ""
                } else {
                    field.append(character)
                }
                previous = character
            }
            fields.append(field)
            return (fields[1], fields[2], fields.count > 4 ? fields[4] : "")
        }
    }

    @Test func aMigrationKilledAtRandomPointsResumesWithoutRereadingWhatWasCommittedAndADaemonEndsIdentical() async throws {
        let scratch = Scratch()
        let source = scratch.path + "/source", url = "file://" + scratch.path + "/share"
        Self.makeSource(source, folders: 30, files: 80, large: 3)
        #expect(try runTiergate(["share", "create", url, "--pack-size", String(1 << 20)]) == 0)
        let endpoint = scratch.path + "/endpoint", serverState = scratch.path + "/server"
        try FileManager.default.createDirectory(atPath: endpoint, withIntermediateDirectories: true)
        #expect(try runTiergate(["endpoint", "add", endpoint, "--share", url, "--state-dir", serverState, "--server-name", "alpha"]) == 0)
        let daemon = try TiergateProcess(["serve", "--state-dir", serverState, "--poll-interval", "0.2"], logs: scratch.path)
        defer {
            daemon.send(SIGKILL)
            _ = daemon.exitStatus(timeout: 10)
        }

        let migrate = ["migrate", source, url, "--state-dir", scratch.path + "/migration", "--log", scratch.path + "/items.csv",
                       "--batch-files", "150", "--threads", "2", "--bwlimit", "3M"]
        var random = SeededGenerator(state: 5)
        var kills = 0
        for _ in 0..<6 {
            let committed = Set(Self.logRows(scratch.path + "/items.csv").filter { $0.action == "copied" }.map(\.path))
            let run = try TiergateProcess(migrate, logs: scratch.path)
            // Paced to 3 MB/s, a run takes about ten seconds: every kill lands mid-way, whatever the machine.
            usleep(UInt32.random(in: 300_000...1_500_000, using: &random))
            run.send(SIGKILL)
            if run.exitStatus(timeout: 30) == nil { kills += 1 }
            let now = Set(Self.logRows(scratch.path + "/items.csv").filter { $0.action == "copied" }.map(\.path))
            #expect(now.isSuperset(of: committed))
        }
        #expect(kills > 0, "no run was killed mid-way; the test proves nothing")
        let committedBefore = Self.logRows(scratch.path + "/items.csv").filter { $0.action == "copied" }
        let finish = try TiergateProcess.run(migrate, logs: scratch.path)
        #expect(finish.status == 0, "\(finish.output)")
        // What the killed runs committed is not read again: it counts as unchanged.
        let finishCounts = Self.counts(finish.output)
        #expect((finishCounts?.unchanged ?? 0) >= committedBefore.count, "a resumed run read again what was committed: \(finish.output)")
        #expect(committedBefore.count > 0, "no killed run committed anything; the test proves nothing")
        let again = try TiergateProcess.run(migrate, logs: scratch.path)
        #expect(again.status == 0)
        #expect(again.output.contains("copied 0 new and 0 changed files (0 B read"), "a rerun with nothing changed read files: \(again.output)")
        #expect(Self.counts(again.output)?.unchanged == 2_403)

        // Every file was committed exactly once across all runs, and the share holds the source.
        let rows = Self.logRows(scratch.path + "/items.csv").filter { $0.action == "copied" || $0.action == "updated" }
        let twice = Dictionary(grouping: rows, by: \.path).filter { $0.value.count > 1 }.keys
        #expect(twice.isEmpty, "committed more than once: \(twice.prefix(5))")
        let expected = Self.files(source)
        #expect(expected.count == 2_403)
        let deadline = Date().addingTimeInterval(120)
        var differing: [String] = []
        repeat {
            let got = Self.files(endpoint)
            differing = Set(expected.keys).union(got.keys).filter { expected[$0] != got[$0] }.sorted()
            if differing.isEmpty { break }
            usleep(300_000)
        } while Date() < deadline
        #expect(differing.isEmpty, "the daemon's endpoint differs from the source at \(differing.count) paths, e.g. \(differing.prefix(3)); daemon log: \(daemon.errorOutput.suffix(1500))")

        // Killed runs may leave packs nobody committed, but a resumed run never uploads a chunk the share
        // already indexes: stored bytes stay within the source plus what the killed runs had in flight.
        let share = try await CloudShare.open(try StoreLocator.open(url))
        let info = try await share.info()
        let sourceBytes = expected.values.reduce(0) { $0 + Int64($1.count) }
        #expect(info.logicalBytes == sourceBytes)
        #expect(info.storedBytes <= sourceBytes + Int64(kills) * 6 * (1 << 20) + (1 << 20), "stored \(info.storedBytes) for \(sourceBytes) after \(kills) kills")
    }

    @Test func aMigrationOfASourceWithBrokenItemsReportsEachAndARerunAfterTheFixCopiesOnlyThose() async throws {
        let scratch = Scratch()
        let source = scratch.path + "/source", url = "file://" + scratch.path + "/share"
        Self.makeSource(source, folders: 100, files: 1_000)
        // The migration runs as an unprivileged service account, so permissions apply to it.
        let binary = scratch.path + "/tiergate"
        try FileManager.default.copyItem(atPath: try tiergateExecutable(), toPath: binary)
        #expect(try runTiergate(["share", "create", url]) == 0)
        let broken = ["f3/n1.dat", "f50/n7.dat", "f99/n999.dat"]
        for path in broken { chmod(source + "/" + path, 0o000) }
        chmod(source + "/f42", 0o700)          // a folder it cannot list: none of its 1,000 files is lost or deleted
        let rawName = Array((source + "/f7/bad-").utf8) + [0xff, 0xfe] + Array(".dat".utf8)
        let fd = (rawName + [0]).withUnsafeBufferPointer { $0.withMemoryRebound(to: CChar.self) { open($0.baseAddress!, O_CREAT | O_WRONLY, 0o644) } }
        #expect(fd >= 0)
        close(fd)
        mkfifo(source + "/f8/pipe", 0o644)
        symlink("/etc/passwd", source + "/f9/link")
        // A file written all the time while the tree is copied.
        let busy = source + "/f10/busy.log"
        FileManager.default.createFile(atPath: busy, contents: Data(randomBytes(24 << 20, seed: 77)))
        let stop = Atomic<Bool>(false)
        let writer = Thread {
            let fd = open(busy, O_WRONLY)
            var byte: UInt8 = 1
            while !stop.load(ordering: .relaxed) {
                _ = pwrite(fd, &byte, 1, Int(byte) * 4096)
                byte &+= 1
            }
            close(fd)
        }
        writer.start()
        try FileManager.default.setAttributes([.posixPermissions: 0o777], ofItemAtPath: scratch.path + "/share")
        for directory in [scratch.path, scratch.path + "/share"] { chmod(directory, 0o777) }
        let shareRoot = scratch.path + "/share"
        let enumerator = FileManager.default.enumerator(atPath: shareRoot)
        while let relative = enumerator?.nextObject() as? String { chown(shareRoot + "/" + relative, 65534, 65534) }
        chown(shareRoot, 65534, 65534)

        func migrate(_ extra: [String] = []) throws -> (status: Int32, output: String) {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
            process.arguments = ["--reuid=65534", "--regid=65534", "--clear-groups", binary, "migrate", source, url,
                                 "--state-dir", scratch.path + "/migration", "--log", scratch.path + "/items.csv"] + extra
            let output = scratch.path + "/migrate-\(UUID().uuidString.prefix(6)).out"
            FileManager.default.createFile(atPath: output, contents: nil)
            process.standardOutput = FileHandle(forWritingAtPath: output)
            process.standardError = FileHandle(forWritingAtPath: output)
            try process.run()
            process.waitUntilExit()
            return (process.terminationStatus, (try? String(contentsOfFile: output, encoding: .utf8)) ?? "")
        }

        let first = try migrate()
        stop.store(true, ordering: .relaxed)
        #expect(first.status == 2, "a run with items not copied must exit 2: \(first.output.suffix(2000))")
        let rows = Self.logRows(scratch.path + "/items.csv")
        let failed = Set(rows.filter { $0.action == "failed" }.map(\.path))
        let skipped = Set(rows.filter { $0.action == "skipped" }.map(\.path))
        #expect(failed == Set(broken + ["f10/busy.log"]), "failed: \(failed.sorted())")
        #expect(skipped == ["f7/bad-\u{FFFD}\u{FFFD}.dat", "f8/pipe", "f9/link", "f42"], "skipped: \(skipped.sorted())")
        for path in broken { #expect(rows.contains { $0.path == path && $0.reason.contains("Permission denied") }, "\(path)") }
        #expect(rows.contains { $0.path == "f10/busy.log" && $0.reason.contains("changed while it was read") })
        #expect(rows.contains { $0.path == "f42" && $0.reason.contains("Permission denied") })
        #expect(Self.counts(first.output)?.copied == 100_000 - 1_000 - 3)

        // The fix: permissions, a name that can sync, the writer stopped; the rest is left alone.
        for path in broken { chmod(source + "/" + path, 0o644) }
        chmod(source + "/f42", 0o755)
        let fixedName = source + "/f7/bad-fixed.dat"
        (rawName + [0]).withUnsafeBufferPointer { $0.withMemoryRebound(to: CChar.self) { _ = rename($0.baseAddress!, fixedName) } }
        unlink(source + "/f8/pipe")
        unlink(source + "/f9/link")
        let second = try migrate()
        #expect(second.status == 0, "\(second.output.suffix(2000))")
        let counts = Self.counts(second.output)
        #expect(counts?.copied == 3 + 1 + 1 + 1_000, "only the fixed items are copied: \(second.output.suffix(600))")
        #expect(counts?.unchanged == 100_000 - 1_000 - 3, "\(second.output.suffix(600))")

        // The share holds exactly the source: every path, size and content fingerprint.
        let namespace = try await CloudShare.open(try StoreLocator.open(url)).namespace()
        let expected = Self.files(source)
        #expect(expected.count == 100_002)
        let files = namespace.entries.filter { $0.value.kind == .file }
        let differing = Set(expected.keys).union(files.keys).filter { path in
            guard let content = expected[path], let entry = files[path] else { return true }
            let fingerprint = XXH3()
            fingerprint.update([UInt8](content))
            return entry.size != Int64(content.count) || entry.fingerprint != fingerprint.digest128().description
        }
        #expect(differing.isEmpty, "the share differs from the source at \(differing.count) paths, e.g. \(differing.sorted().prefix(3))")

        // With --mirror, what the source has but cannot read is never taken for deleted.
        chmod(source + "/f42", 0o700)
        chmod(source + "/f3/n1.dat", 0o000)
        let mirrored = try migrate(["--mirror"])
        #expect(mirrored.status == 2)
        #expect(Self.counts(mirrored.output)?.deleted == 0, "\(mirrored.output.suffix(600))")
    }

    @Test func mirrorDeletesOnlyBelowTheDestination() async throws {
        let scratch = Scratch()
        let source = scratch.path + "/source", url = "file://" + scratch.path + "/share"
        Self.makeSource(source, folders: 3, files: 5)
        #expect(try runTiergate(["share", "create", url]) == 0)
        let other = scratch.path + "/other"
        Self.makeSource(other, folders: 1, files: 2)
        #expect(try TiergateProcess.run(["put", url, other, "--to", "elsewhere"], logs: scratch.path).status == 0)
        let migrate = ["migrate", source, url, "--to", "projects/a", "--mirror", "--verify", "--state-dir", scratch.path + "/state",
                       "--log", scratch.path + "/items.json"]
        let first = try TiergateProcess.run(migrate, logs: scratch.path)
        #expect(first.status == 0, "\(first.output)")
        #expect(first.output.contains("verified 15 files"), "\(first.output)")

        try FileManager.default.removeItem(atPath: source + "/f1")
        try FileManager.default.removeItem(atPath: source + "/f0/n0.dat")
        FileManager.default.createFile(atPath: source + "/f2/n9.dat", contents: Data("new".utf8))
        let run = try TiergateProcess.run(migrate, logs: scratch.path)
        #expect(run.status == 0, "\(run.output)")
        #expect(Self.counts(run.output)?.deleted == 2, "\(run.output)")

        let restored = scratch.path + "/restored"
        #expect(try TiergateProcess.run(["get", url, restored], logs: scratch.path).status == 0)
        let expected = Self.files(source), got = Self.files(restored + "/projects/a")
        #expect(Set(got.keys) == Set(expected.keys))
        #expect(Self.files(restored + "/elsewhere").count == 2, "mirror deleted outside its destination")
        let log = (try? String(contentsOfFile: scratch.path + "/items.json", encoding: .utf8)) ?? ""
        let actions = log.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(Set(actions.filter { $0["action"] as? String == "deleted" }.compactMap { $0["path"] as? String }) == ["projects/a/f1", "projects/a/f0/n0.dat"])
    }

    @Test func mirrorRefusesASourceThatIsNotTheFolderEarlierRunsCopiedOrIsEmpty() async throws {
        let scratch = Scratch()
        let source = scratch.path + "/source", url = "file://" + scratch.path + "/share"
        Self.makeSource(source, folders: 2, files: 4)
        #expect(try runTiergate(["share", "create", url]) == 0)
        let migrate = ["migrate", source, url, "--mirror", "--state-dir", scratch.path + "/state"]
        #expect(try TiergateProcess.run(migrate, logs: scratch.path).status == 0)
        // The source's mount went away: an empty folder of another device or inode stands at its path.
        #expect(rename(source, source + ".mounted") == 0)
        #expect(mkdir(source, 0o755) == 0)
        FileManager.default.createFile(atPath: source + "/stray.txt", contents: Data("x".utf8))
        let replaced = try TiergateProcess.run(migrate, logs: scratch.path)
        #expect(replaced.status == 1 && replaced.output.contains("--mirror refused"), "\(replaced.output)")
        // The same folder, emptied.
        #expect(rmdir(source) == 0 || unlink(source + "/stray.txt") == 0 && rmdir(source) == 0)
        #expect(rename(source + ".mounted", source) == 0)
        for folder in ["f0", "f1"] { try FileManager.default.removeItem(atPath: source + "/" + folder) }
        let emptied = try TiergateProcess.run(migrate, logs: scratch.path)
        #expect(emptied.status == 1 && emptied.output.contains("the source is empty"), "\(emptied.output)")
        let info = try TiergateProcess.run(["share", "info", url], logs: scratch.path)
        #expect(info.output.contains("namespace:    8 files, 2 directories"), "nothing was deleted: \(info.output)")
    }

    @Test func aFolderWhosePathInTheShareWouldBeTooLongIsSkippedAndVerifyCoversFilesCopiedByAnEarlierRun() async throws {
        let scratch = Scratch()
        let source = scratch.path + "/source", url = "file://" + scratch.path + "/share"
        Self.makeSource(source, folders: 2, files: 3)
        // 9 × 201 characters of folders: fine in the source, too long below a 500-character --to.
        var deep = source
        for level in 0..<9 { deep += "/" + String(repeating: Character(String(level)), count: 200) + "d" }
        try FileManager.default.createDirectory(atPath: deep, withIntermediateDirectories: true)
        #expect(try runTiergate(["share", "create", url]) == 0)
        let to = String(repeating: "p", count: 250) + "/" + String(repeating: "q", count: 250)
        let state = ["--state-dir", scratch.path + "/state"]
        let first = try TiergateProcess.run(["migrate", source, url, "--to", to] + state, logs: scratch.path)
        #expect(first.status == 2, "\(first.output)")
        #expect(first.output.contains("longer than 2048"), "\(first.output)")
        let restored = try TiergateProcess.run(["get", url, scratch.path + "/restored"], logs: scratch.path)
        #expect(restored.status == 0 && !restored.output.contains("not restored"), "the share holds no path its readers refuse: \(restored.output)")
        // A run without --verify, then one with: the files copied before are read back too.
        let verified = try TiergateProcess.run(["migrate", source, url, "--to", to, "--verify"] + state, logs: scratch.path)
        #expect(verified.output.contains("verified 6 files"), "\(verified.output)")
        let again = try TiergateProcess.run(["migrate", source, url, "--to", to, "--verify"] + state, logs: scratch.path)
        #expect(!again.output.contains("verified"), "verified files are not read back again: \(again.output)")
    }

    @Test func aMirrorHoldsItsDeletesBackWhenTheSourceChangesDuringTheCopy() async throws {
        let scratch = Scratch()
        let source = scratch.path + "/source", url = "file://" + scratch.path + "/share"
        Self.makeSource(source, folders: 2, files: 4)
        #expect(try runTiergate(["share", "create", url]) == 0)
        let migrate = ["migrate", source, url, "--mirror", "--state-dir", scratch.path + "/state"]
        #expect(try TiergateProcess.run(migrate, logs: scratch.path).status == 0)
        // A folder goes (as if renamed away mid-walk) while another file keeps changing during the run.
        try FileManager.default.removeItem(atPath: source + "/f1")
        let busy = source + "/f0/busy.log"
        FileManager.default.createFile(atPath: busy, contents: Data(randomBytes(24 << 20, seed: 5)))
        let stop = Atomic<Bool>(false)
        let writer = Thread {
            let fd = open(busy, O_WRONLY)
            var byte: UInt8 = 1
            while !stop.load(ordering: .relaxed) {
                _ = pwrite(fd, &byte, 1, Int(byte) * 4096)
                byte &+= 1
            }
            close(fd)
        }
        writer.start()
        let run = try TiergateProcess.run(migrate, logs: scratch.path)
        stop.store(true, ordering: .relaxed)
        #expect(run.status == 2, "\(run.output)")
        #expect(run.output.contains("deletes held back"), "\(run.output)")
        #expect(Self.counts(run.output)?.deleted == 0, "\(run.output)")
        let info = try TiergateProcess.run(["share", "info", url], logs: scratch.path)
        #expect(info.output.contains("namespace:    8 files, 2 directories"), "nothing was deleted: \(info.output)")
    }

    @Test func aShareIsCopiedIntoAnotherShareAndARerunCopiesOnlyWhatChanged() async throws {
        let scratch = Scratch()
        let source = scratch.path + "/source", from = "file://" + scratch.path + "/from", to = "file://" + scratch.path + "/to"
        Self.makeSource(source, folders: 3, files: 10, large: 1)
        for url in [from, to] { #expect(try runTiergate(["share", "create", url]) == 0) }
        let state = ["--state-dir", scratch.path + "/state"]
        #expect(try TiergateProcess.run(["migrate", source, from] + state, logs: scratch.path).status == 0)
        let copy = ["migrate", from, to, "--to", "archive", "--mirror", "--verify"] + state
        let first = try TiergateProcess.run(copy, logs: scratch.path)
        #expect(first.status == 0, "\(first.output)")
        #expect(Self.counts(first.output)?.copied == 31, "\(first.output)")
        #expect(first.output.contains("verified 31 files"), "\(first.output)")

        try FileManager.default.removeItem(atPath: source + "/f0")
        FileManager.default.createFile(atPath: source + "/f1/n0.dat", contents: Data("edited".utf8))
        #expect(try TiergateProcess.run(["migrate", source, from, "--mirror"] + state, logs: scratch.path).status == 0)
        let second = try TiergateProcess.run(copy, logs: scratch.path)
        #expect(second.status == 0, "\(second.output)")
        let counts = Self.counts(second.output)
        #expect(counts?.updated == 1 && counts?.deleted == 1 && counts?.unchanged == 20, "\(second.output)")
        #expect(second.output.contains("B new after dedup"), "\(second.output)")

        let restored = scratch.path + "/restored"
        #expect(try TiergateProcess.run(["get", to, restored], logs: scratch.path).status == 0)
        let expected = Self.files(source), got = Self.files(restored + "/archive")
        #expect(Set(got.keys) == Set(expected.keys))
        #expect(expected.allSatisfy { got[$0.key] == $0.value })
        #expect(try TiergateProcess.run(["migrate", to, to] + state, logs: scratch.path).output.contains("the same share"))
    }

    @Test func aServerSeededWithTheDataJoinsWithoutDownloadingIt() async throws {
        let scratch = Scratch()
        let source = scratch.path + "/source", url = "file://" + scratch.path + "/share"
        Self.makeSource(source, folders: 4, files: 25)
        #expect(try runTiergate(["share", "create", url]) == 0)
        #expect(try TiergateProcess.run(["migrate", source, url, "--state-dir", scratch.path + "/migration"], logs: scratch.path).status == 0)
        // The server's disk was restored from a backup: same bytes; one file differs, one is missing.
        let endpoint = scratch.path + "/endpoint"
        let copy = Process()
        copy.executableURL = URL(fileURLWithPath: "/bin/cp")
        copy.arguments = ["-a", source, endpoint]
        try copy.run()
        copy.waitUntilExit()
        let differs = endpoint + "/f1/n3.dat"
        var bytes = [UInt8](FileManager.default.contents(atPath: differs)!)
        bytes[0] ^= 0xff
        FileManager.default.createFile(atPath: differs, contents: Data(bytes))
        // Older than the share's version, which therefore keeps the name.
        var times = [timespec(tv_sec: 1_000_000_000, tv_nsec: 0), timespec(tv_sec: 1_000_000_000, tv_nsec: 0)]
        #expect(utimensat(AT_FDCWD, differs, &times, 0) == 0)
        try FileManager.default.removeItem(atPath: endpoint + "/f2/n4.dat")

        let state = scratch.path + "/server"
        #expect(try runTiergate(["endpoint", "add", endpoint, "--share", url, "--state-dir", state, "--server-name", "beta"]) == 0)
        // With every pack out of reach, what is already here still joins: it is never downloaded.
        let packs = scratch.path + "/share/packs"
        #expect(rename(packs, packs + ".away") == 0)
        let seeded = try TiergateProcess.run(["sync", "--state-dir", state], logs: scratch.path)
        #expect(seeded.status == 0, "\(seeded.output)")
        #expect(seeded.output.contains("98 already here (adopted)"), "\(seeded.output)")
        #expect(seeded.output.contains("2 items not syncing"), "only the missing and the differing file need the share's bytes: \(seeded.output)")
        #expect(rename(packs + ".away", packs) == 0)
        // The missing file and the differing one are downloaded (the local edit is kept as a conflict copy).
        let sync = try TiergateProcess.run(["sync", "--state-dir", state], logs: scratch.path)
        #expect(sync.status == 0, "\(sync.output)")
        #expect(sync.output.contains("downloaded 2 "), "\(sync.output)")
        #expect(sync.output.contains("1 conflicts"), "\(sync.output)")
        let expected = Self.files(source)
        for (path, content) in expected { #expect(FileManager.default.contents(atPath: endpoint + "/" + path) == content, "\(path)") }
        #expect(Self.files(endpoint).count == expected.count + 1, "the local edit is kept beside the share's version")
    }
}
