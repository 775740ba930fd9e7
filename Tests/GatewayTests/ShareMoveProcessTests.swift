import Backends
import CloudShare
import Foundation
import Gateway
import Glibc
import ObjectStoreServers
import Synchronization
import Testing

/// Real processes: `tiergate share copy` and `tiergate share move` between stores while `tiergate serve`
/// daemons keep editing, a server that was offline following later, and a move interrupted after its
/// freeze finished by running it again.
@Suite(.serialized) struct ShareMoveProcessTests {
    /// The pass summaries a daemon logged after it followed a move (the lines after the last "following").
    static func passesAfterFollowing(_ log: String) -> [String] {
        let lines = log.split(separator: "\n").map(String.init)
        guard let last = lines.lastIndex(where: { $0.contains("following it from sequence") }) else { return [] }
        return lines[(last + 1)...].filter { $0.contains("sync success") }
    }

    /// The first number after `word` in a pass summary ("uploaded 3 (…)" → 3).
    static func count(_ word: String, in line: String) -> Int {
        guard let range = line.range(of: word + " ") else { return 0 }
        return Int(line[range.upperBound...].prefix { $0.isNumber }) ?? 0
    }

    static func config(_ group: SyncGroup, _ index: Int) -> String {
        (try? String(contentsOfFile: group.scratch.path + "/state\(index)/config.json", encoding: .utf8)) ?? ""
    }

    @Test func aLiveShareMovesFromFileToCephThenToSeaweedFSWhileItsEndpointsKeepEditing() async throws {
        let ceph = try await RealS3Server.cephRGW.running().freshBucket(prefix: "moved")
        let seaweed = try await RealS3Server.seaweedFS.running().freshBucket(prefix: "moved-again")
        let group = try await SyncGroup(servers: 3) { index, root in
            guard index == 0 else { return }
            for folder in 0..<10 {
                try! FileManager.default.createDirectory(atPath: root + "/d\(folder)", withIntermediateDirectories: true)
                for file in 0..<20 { try! Data("folder \(folder) file \(file)\n".utf8).write(to: URL(fileURLWithPath: root + "/d\(folder)/f\(file)")) }
            }
        }
        try await group.converge()
        group.release()
        let logs = group.scratch.path
        var daemons: [TiergateProcess] = []
        defer { for daemon in daemons { daemon.send(SIGTERM); _ = daemon.exitStatus() } }
        for index in 0..<2 {
            let daemon = try TiergateProcess(["serve", "--state-dir", group.scratch.path + "/state\(index)", "--poll-interval", "0.2"], logs: logs)
            daemons.append(daemon)
            #expect(daemon.waitFor("trigger=start", inErrorOutput: true), "serve \(index): \(daemon.errorOutput.suffix(1500))")
        }

        // Both servers keep writing new files while the share moves, twice.
        let written = Mutex<[Int]>([0, 0])
        let stop = Atomic<Bool>(false)
        let roots = [group.root(0), group.root(1)]
        for root in roots { try FileManager.default.createDirectory(atPath: root + "/edits", withIntermediateDirectories: true) }
        let writer = Thread {
            var round = 0
            while !stop.load(ordering: .acquiring) {
                for index in 0..<2 {
                    try? Data("server \(index) round \(round)\n".utf8).write(to: URL(fileURLWithPath: roots[index] + "/edits/s\(index)-\(round)"))
                    written.withLock { $0[index] += 1 }
                }
                round += 1
                usleep(150_000)
            }
        }
        writer.start()
        for (move, (destination, name)) in [(ceph, "Ceph RGW"), (seaweed, "SeaweedFS")].enumerated() {
            let moved = try TiergateProcess.expect(0, ["share", "move", Self.currentURL(group, 0), destination], logs: logs)
            #expect(moved.contains("moved to"), "\(moved)")
            let finished = Date()
            for (index, daemon) in daemons.enumerated() {
                let deadline = Date().addingTimeInterval(60)
                while daemon.errorOutput.components(separatedBy: "following it from sequence").count < move + 2 && Date() < deadline { usleep(20_000) }
                let followed = Self.currentURL(group, index) == destination
                #expect(followed, "server \(index) follows the move to \(name): \(daemon.errorOutput.suffix(2000))")
                #expect(!daemon.errorOutput.contains("the share's store is now"), "the follow itself opened the destination")
                print("server \(index) followed the move to \(name) \(String(format: "%.1f", Date().timeIntervalSince(finished))) s after it finished")
            }
            // The daemons wrote the next commits to the new store; the old one ends with the move.
            let old = try await CloudShare.open(try StoreLocator.open(destination == ceph ? group.url : ceph))
            let head = try await old.log.head()
            #expect(try await old.log.read(head).movedTo?.url == destination, "the old store's log ends with the move")
        }
        try await Task.sleep(for: .seconds(2))
        stop.store(true, ordering: .releasing)
        while !writer.isFinished { usleep(10_000) }

        // Both daemons converge on every file, and nothing was sent twice after they followed.
        let deadline = Date().addingTimeInterval(60)
        while group.tree(0) != group.tree(1) && Date() < deadline { usleep(200_000) }
        #expect(group.tree(0) == group.tree(1), "the daemons' trees differ after the moves")
        let edits = written.withLock { $0 }
        #expect(group.tree(0).keys.filter { $0.hasPrefix("edits/") }.count == edits[0] + edits[1], "every edit made during the moves arrived")
        for (index, daemon) in daemons.enumerated() {
            let passes = Self.passesAfterFollowing(daemon.errorOutput)
            let uploaded = passes.reduce(0) { $0 + Self.count("uploaded", in: $1) }
            let downloaded = passes.reduce(0) { $0 + Self.count("downloaded", in: $1) }
            // Each edit after the follow is uploaded by its writer and downloaded by the other (its folder's
            // upsert too); the 200 files of the share are never sent again.
            #expect(uploaded <= edits[index] + 5 && downloaded <= edits[1 - index] + 5,
                    "server \(index) sent \(uploaded) and fetched \(downloaded) files after following, for \(edits) edits")
        }

        // The server that was offline follows both moves when it comes back, and gets everything.
        let late = try TiergateProcess.expect(0, ["sync", "--state-dir", group.scratch.path + "/state2"], logs: logs)
        #expect(late.contains("sync success"), "\(late)")
        #expect(group.tree(2) == group.tree(0), "the late server's tree")
        #expect(Self.config(group, 2).contains("moved-again"), "the late server follows to SeaweedFS: \(Self.config(group, 2))")
    }

    /// The share URL a server's endpoint is configured with now.
    static func currentURL(_ group: SyncGroup, _ index: Int) -> String {
        struct Config: Decodable {
            struct Endpoint: Decodable { var share: String }
            var endpoints: [Endpoint]
        }
        let data = Data(config(group, index).utf8)
        return (try? JSONDecoder().decode(Config.self, from: data))?.endpoints.first?.share ?? ""
    }

    @Test func aMoveInterruptedAfterItsFreezeIsFinishedByRunningItAgain() async throws {
        let group = try await SyncGroup(servers: 2)
        group.write(0, "a.txt", "alpha\n")
        try await group.converge()
        group.release()
        let logs = group.scratch.path
        let destination = "file://" + group.scratch.path + "/destination"
        // The mover froze the source and was killed before it copied anything.
        let source = try await CloudShare.open(try StoreLocator.open(group.url))
        let head = try await source.log.head()
        #expect(try await source.log.tryAppendMove(ShareRedirect(url: destination, shareID: source.manifest.shareID, through: head)))

        // Endpoints refuse to go anywhere, and a local edit waits, kept.
        group.write(0, "b.txt", "bravo\n")
        let refused = try TiergateProcess.run(["sync", "--state-dir", group.scratch.path + "/state0"], logs: logs)
        #expect(refused.status != 0 && refused.output.contains("moved"), "\(refused.output)")
        #expect(Self.currentURL(group, 0) == group.url, "the endpoint stays on the source while the destination is not a complete copy")
        #expect(try await source.log.head() == head + 1, "nothing was appended after the move record")
        // Another destination is refused; the same one finishes the move.
        let other = try TiergateProcess.run(["share", "move", group.url, "file://" + group.scratch.path + "/elsewhere"], logs: logs)
        #expect(other.status != 0 && other.output.contains("already moved"), "\(other.output)")
        try TiergateProcess.expect(0, ["share", "move", group.url, destination], logs: logs)
        let again = try TiergateProcess.expect(0, ["share", "move", group.url, destination, "--json"], logs: logs)
        #expect(again.contains("\"alreadyThere\""), "a move run once more changes nothing: \(again)")

        for index in 0..<2 { try TiergateProcess.expect(0, ["sync", "--state-dir", group.scratch.path + "/state\(index)"], logs: logs) }
        try TiergateProcess.expect(0, ["sync", "--state-dir", group.scratch.path + "/state1"], logs: logs)
        #expect(group.read(1, "b.txt") == "bravo\n", "the edit made during the move reached the other server")
        #expect(Self.currentURL(group, 0) == destination && Self.currentURL(group, 1) == destination)
        // Direct cloud edits are refused on the source too.
        let put = try TiergateProcess.run(["put", group.url, group.scratch.path + "/ep0"], logs: logs)
        #expect(put.status != 0 && put.output.contains("moved"), "\(put.output)")
    }

    @Test func aCopyIsVerifiedAndARerunCopiesOnlyWhatIsMissing() async throws {
        let group = try await SyncGroup(servers: 1)
        for index in 0..<20 { group.write(0, "f\(index)", String(repeating: "content \(index) ", count: 500)) }
        try await group.sync(0)
        group.release()
        let logs = group.scratch.path
        let destination = "file://" + group.scratch.path + "/copy"
        let first = try TiergateProcess.expect(0, ["share", "copy", group.url, destination, "--json"], logs: logs)
        let report = try JSONDecoder().decode(ShareTransfer.Report.self, from: Data(first.utf8))
        #expect(report.copied == report.objects && report.through == 1, "\(first)")
        let second = try JSONDecoder().decode(ShareTransfer.Report.self, from: Data(try TiergateProcess.expect(0, ["share", "copy", group.url, destination, "--json"], logs: logs).utf8))
        #expect(second.copied == 1 && second.alreadyThere == report.objects - 1, "only share.json is written again (the log record is compared): \(second)")
        // The copy is a share with the same files.
        let restored = group.scratch.path + "/restored"
        try TiergateProcess.expect(0, ["get", destination, restored], logs: logs)
        #expect(try String(contentsOfFile: restored + "/f7", encoding: .utf8) == String(repeating: "content 7 ", count: 500))

        // A damaged pack is named and stops the copy; another share at the destination is refused.
        let packs = group.scratch.path + "/share/packs"
        let file = try #require(FileManager.default.enumerator(atPath: packs)?.allObjects.compactMap { $0 as? String }.first { $0.count > 40 })
        let pack = String(file.split(separator: "/").last!)
        let handle = try #require(FileHandle(forUpdatingAtPath: packs + "/" + file))
        try handle.seek(toOffset: 10)
        handle.write(Data([0xFF, 0xFE]))
        try handle.close()
        let damaged = try TiergateProcess.run(["share", "copy", group.url, "file://" + group.scratch.path + "/copy2"], logs: logs)
        #expect(damaged.status != 0 && damaged.output.contains(pack) && damaged.output.contains("does not match its id"), "\(damaged.output)")
        try TiergateProcess.expect(0, ["share", "create", "file://" + group.scratch.path + "/other"], logs: logs)
        let refused = try TiergateProcess.run(["share", "copy", destination, "file://" + group.scratch.path + "/other"], logs: logs)
        #expect(refused.status != 0 && refused.output.contains("holds another share"), "\(refused.output)")
    }
}

/// Real processes: endpoints whose shares name a store (`store:NAME/prefix`); pointing the name at a copy
/// moves them, and a running daemon follows without a restart, never onto another share or an incomplete copy.
@Suite(.serialized) struct NamedStoreProcessTests {
    @Test func repointingANamedStoreMovesItsEndpointsAndARunningDaemonFollows() async throws {
        let scratch = Scratch()
        let logs = scratch.path
        let (first, second, other) = ("file://" + scratch.path + "/first", "file://" + scratch.path + "/second", "file://" + scratch.path + "/other")
        try TiergateProcess.expect(0, ["share", "create", first + "/projects"], logs: logs)
        try TiergateProcess.expect(0, ["share", "create", other + "/projects"], logs: logs)
        for index in 0..<2 {
            let state = scratch.path + "/state\(index)", root = scratch.path + "/ep\(index)"
            try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
            try TiergateProcess.expect(0, ["store", "set", "main", first, "--state-dir", state], logs: logs)
            try TiergateProcess.expect(0, ["endpoint", "add", root, "--share", "store:main/projects", "--state-dir", state], logs: logs)
        }
        try Data("before\n".utf8).write(to: URL(fileURLWithPath: scratch.path + "/ep0/before.txt"))
        for index in [0, 1, 0] { try TiergateProcess.expect(0, ["sync", "--state-dir", scratch.path + "/state\(index)"], logs: logs) }
        #expect(FileManager.default.fileExists(atPath: scratch.path + "/ep1/before.txt"))
        let listed = try TiergateProcess.expect(0, ["store", "list", "--state-dir", scratch.path + "/state0"], logs: logs)
        #expect(listed.contains("main") && listed.contains(first), "\(listed)")
        let removal = try TiergateProcess.run(["store", "remove", "main", "--state-dir", scratch.path + "/state0"], logs: logs)
        #expect(removal.status != 0 && removal.output.contains("used by endpoint"), "\(removal.output)")

        let daemons = try (0..<2).map { index in
            try TiergateProcess(["serve", "--state-dir", scratch.path + "/state\(index)", "--poll-interval", "0.2"], logs: logs)
        }
        defer { for daemon in daemons { daemon.send(SIGTERM); _ = daemon.exitStatus() } }
        for daemon in daemons { #expect(daemon.waitFor("trigger=start", inErrorOutput: true), "\(daemon.errorOutput.suffix(1500))") }

        // A store holding another share, or an empty one, is refused: the daemon stays where it was.
        try TiergateProcess.expect(0, ["store", "set", "main", other, "--state-dir", scratch.path + "/state0"], logs: logs)
        #expect(daemons[0].waitFor("which is not used", inErrorOutput: true), "\(daemons[0].errorOutput.suffix(1500))")
        try Data("still here\n".utf8).write(to: URL(fileURLWithPath: scratch.path + "/ep0/still.txt"))
        #expect(daemons[1].waitFor("uploaded 0", inErrorOutput: true) || FileManager.default.fileExists(atPath: scratch.path + "/ep1/still.txt"))

        // The share copied to the second store, and the name pointed there on both servers.
        let deadline = Date().addingTimeInterval(20)
        while !FileManager.default.fileExists(atPath: scratch.path + "/ep1/still.txt") && Date() < deadline { usleep(100_000) }
        try TiergateProcess.expect(0, ["share", "copy", first + "/projects", second + "/projects"], logs: logs)
        for index in 0..<2 {
            try TiergateProcess.expect(0, ["store", "set", "main", second, "--state-dir", scratch.path + "/state\(index)"], logs: logs)
        }
        for daemon in daemons {
            #expect(daemon.waitFor("the share's store is now", inErrorOutput: true), "\(daemon.errorOutput.suffix(1500))")
        }
        try Data("after\n".utf8).write(to: URL(fileURLWithPath: scratch.path + "/ep1/after.txt"))
        let arrived = Date().addingTimeInterval(20)
        while !FileManager.default.fileExists(atPath: scratch.path + "/ep0/after.txt") && Date() < arrived { usleep(100_000) }
        #expect(try String(contentsOfFile: scratch.path + "/ep0/after.txt", encoding: .utf8) == "after\n")
        let moved = try await CloudShare.open(try StoreLocator.open(second + "/projects"))
        let old = try await CloudShare.open(try StoreLocator.open(first + "/projects"))
        #expect(try await moved.log.head() > (try await old.log.head()), "the new commit went to the second store only")
        #expect(try await moved.namespace().entries["after.txt"] != nil)
    }

    @Test func aStoreHoldingACopyThatOthersWroteToIsRefusedNotSyncedInto() async throws {
        let scratch = Scratch()
        let logs = scratch.path
        let (first, second) = ("file://" + scratch.path + "/first", "file://" + scratch.path + "/second")
        try TiergateProcess.expect(0, ["share", "create", first + "/projects"], logs: logs)
        func state(_ index: Int) -> String { scratch.path + "/state\(index)" }
        func write(_ index: Int, _ name: String) throws {
            try Data("\(name)\n".utf8).write(to: URL(fileURLWithPath: scratch.path + "/ep\(index)/" + name))
        }
        for index in 0..<2 {
            try FileManager.default.createDirectory(atPath: scratch.path + "/ep\(index)", withIntermediateDirectories: true)
            try TiergateProcess.expect(0, ["store", "set", "main", first, "--state-dir", state(index)], logs: logs)
            try TiergateProcess.expect(0, ["endpoint", "add", scratch.path + "/ep\(index)", "--share", "store:main/projects", "--state-dir", state(index)], logs: logs)
        }
        try write(0, "before.txt")
        for index in [0, 1] { try TiergateProcess.expect(0, ["sync", "--state-dir", state(index)], logs: logs) }
        try TiergateProcess.expect(0, ["share", "copy", first + "/projects", second + "/projects"], logs: logs)
        // Server 1 moves to the copy and commits there; server 0, still on the first store, commits there.
        try TiergateProcess.expect(0, ["store", "set", "main", second, "--state-dir", state(1)], logs: logs)
        try write(1, "on-second.txt")
        try TiergateProcess.expect(0, ["sync", "--state-dir", state(1)], logs: logs)
        try write(0, "on-first.txt")
        try TiergateProcess.expect(0, ["sync", "--state-dir", state(0)], logs: logs)
        // Server 0 is then pointed at the copy: the copy's record at its cursor is not the one it applied.
        try TiergateProcess.expect(0, ["store", "set", "main", second, "--state-dir", state(0)], logs: logs)
        let refused = try TiergateProcess.run(["sync", "--state-dir", state(0)], logs: logs)
        #expect(refused.status != 0 && refused.output.contains("another record"), "\(refused.output)")
        let copy = try await CloudShare.open(try StoreLocator.open(second + "/projects"))
        let names = try await copy.namespace().entries.keys.sorted()
        #expect(names == ["before.txt", "on-second.txt"], "nothing of server 0 was mixed into the copy: \(names)")
        #expect(FileManager.default.fileExists(atPath: scratch.path + "/ep0/on-first.txt"), "server 0's file stays")
    }
}
