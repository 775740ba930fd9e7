import Backends
import CloudShare
import Foundation
import Gateway
import Glibc
import Hashing
import Synchronization
import Testing

/// Retention with real processes: two `serve` daemons write new versions while collectors with a retention
/// window run (some killed with SIGKILL at random points), a lagging server holds stubs of old versions, and
/// a namespace-only daemon keeps up. Afterwards every stub on every server recalls its exact bytes, every
/// kept version restores byte-exact with `get --at`, and a version outside retention fails, saying so. The
/// collectors also repack sparse packs (`--repack-below`).
@Suite(.serialized) struct ShareRetentionProcessTests {
    /// A stable hash (Swift's `hashValue` changes between processes).
    static func fnv(_ text: String) -> UInt64 {
        text.utf8.reduce(UInt64(0xcbf2_9ce4_8422_2325)) { ($0 ^ UInt64($1)) &* 0x100_0000_01b3 }
    }

    /// Version `n` of `path`: a header naming both, then bytes only they determine; smaller than the
    /// smallest chunk, so one chunk.
    static func content(_ path: String, _ n: Int) -> [UInt8] {
        let seed = fnv(path) &* 31 &+ UInt64(n)
        return Array("\(path)#\(n)\n".utf8) + randomBytes(40_000 + Int(seed % 150_000), seed: seed)
    }

    /// Whether `bytes` are a version the test wrote to `path`.
    static func isWritten(_ bytes: [UInt8], path: String) -> Bool {
        guard let newline = bytes.firstIndex(of: 10), let header = String(bytes: bytes[..<newline], encoding: .utf8),
              header.hasPrefix(path + "#"), let n = Int(header.dropFirst(path.count + 1)) else { return false }
        return content(path, n) == bytes
    }

    /// Problems of the files below `root` against `namespace`: each file of it present with exactly the
    /// bytes its chunks name (SHA-256 of each), and bytes the test wrote there; no file it does not hold.
    static func compare(root: String, with namespace: Namespace, only paths: Set<String>? = nil, allowMissing: Bool = false) -> [String] {
        var problems: [String] = []
        let files = namespace.entries.filter { $0.value.kind == .file && (paths?.contains($0.key) ?? true) }
        for (path, entry) in files.sorted(by: { $0.key < $1.key }) {
            guard let data = FileManager.default.contents(atPath: root + "/" + path) else {
                if !allowMissing { problems.append("\(path): missing") }
                continue
            }
            let bytes = [UInt8](data)
            var offset = 0, same = bytes.count == Int(entry.size)
            for chunk in entry.chunks where same {
                same = offset + Int(chunk.length) <= bytes.count && SHA256.hash(Array(bytes[offset..<offset + Int(chunk.length)])) == chunk.id
                offset += Int(chunk.length)
            }
            if !same { problems.append("\(path): other bytes than version \(entry.version ?? 0)") }
            if !isWritten(bytes, path: path) { problems.append("\(path): bytes never written there") }
        }
        let present = (FileManager.default.enumerator(atPath: root)?.allObjects as? [String] ?? []).filter { relative in
            var isDirectory: ObjCBool = false
            return FileManager.default.fileExists(atPath: root + "/" + relative, isDirectory: &isDirectory) && !isDirectory.boolValue
                && !relative.hasPrefix(".tiergate")
        }
        for extra in present where files[extra] == nil && (paths == nil || !allowMissing) { problems.append("\(extra): not in the namespace") }
        return problems
    }

    /// Writes `bytes` to `path` atomically (a `.tmp` name, which is never synced, renamed into place), so
    /// a daemon never reads a half-written version.
    static func writeAtomically(_ path: String, _ bytes: [UInt8]) throws {
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let temporary = path + ".tmp"
        try Data(bytes).write(to: URL(fileURLWithPath: temporary))
        guard rename(temporary, path) == 0 else { throw GatewayError("rename \(temporary): errno \(errno)") }
    }

    /// Collectors run one after another until stopped, about half of them killed with SIGKILL at a random point.
    final class CollectorLoop: Sendable {
        struct Tally: Sendable { var finished = 0, killed = 0, refused = 0, repacked = 0, failures: [String] = [] }
        let tally = Mutex(Tally())
        let stop = Atomic<Bool>(false)
        let done = Atomic<Bool>(false)

        init(url: String, logs: String, seed: UInt64) {
            let thread = Thread { [self] in
                var random = SeededGenerator(state: seed)
                let arguments = ShareRetentionProcessTests.collect(url)
                while !stop.load(ordering: .relaxed) {
                    guard let collector = try? TiergateProcess(arguments, logs: logs) else { break }
                    if Bool.random(using: &random) {
                        // Killed once it has marked (it holds the lease then), at a random point of what follows.
                        _ = collector.waitFor("marking chunks", inErrorOutput: true, timeout: 20)
                        // At once until one kill has landed (a quick collector may end within the delay).
                        let delay = UInt32.random(in: 0...60_000, using: &random)
                        if tally.withLock({ $0.killed > 0 }) { usleep(delay) }
                        collector.send(SIGKILL)
                    }
                    let status = collector.exitStatus(timeout: 60)
                    let output = collector.output + collector.errorOutput
                    tally.withLock { tally in
                        switch status {
                        case nil: tally.killed += 1
                        case 0:
                            tally.finished += 1
                            tally.repacked += ShareRetentionProcessTests.repacked(output)
                        case 1 where output.contains("another garbage collector is running"): tally.refused += 1
                        default: tally.failures.append("status \(status.map(String.init) ?? "-"): \(output.suffix(800))")
                        }
                    }
                    usleep(UInt32.random(in: 100_000...500_000, using: &random))
                }
                done.store(true, ordering: .relaxed)
            }
            thread.start()
        }

        func finish() -> Tally {
            stop.store(true, ordering: .relaxed)
            while !done.load(ordering: .relaxed) { usleep(20_000) }
            return tally.withLock { $0 }
        }
    }

    /// A collector run with a short grace and safety interval that repacks packs used below 60 %.
    static func collect(_ url: String) -> [String] {
        ["share", "gc", url, "--grace", "0s", "--safety-interval", "1s", "--lease", "2s", "--repack-below", "0.6"]
    }

    /// The packs a run's report says it repacked.
    static func repacked(_ output: String) -> Int {
        guard let line = output.split(separator: "\n").first(where: { $0.hasPrefix("repacked:") }) else { return 0 }
        return Int(line.dropFirst("repacked:".count).trimmingCharacters(in: .whitespaces).prefix { $0.isNumber }) ?? 0
    }

    /// Real servers on one share: `tiergate` processes and the files the test wrote.
    final class Servers {
        let scratch = Scratch()
        let logs: String
        let url: String
        let store: any ObjectStore
        var random = SeededGenerator(state: UInt64(Date().timeIntervalSince1970 * 1000))
        /// The last version written of each path, and how many were.
        var last: [String: [UInt8]] = [:]
        var versionOf: [String: Int] = [:]
        /// The two writing servers.
        var writers: [(root: String, state: String)] = []
        var daemons: [TiergateProcess] = []

        /// A share (`create` adds its options), with two writing servers running `serve`.
        init(create: [String]) throws {
            logs = scratch.path + "/logs"
            try FileManager.default.createDirectory(atPath: logs, withIntermediateDirectories: true)
            url = "file://" + scratch.path + "/share"
            store = try StoreLocator.open(url)
            try cli(["share", "create", url] + create)
            writers = [try addServer("w1", namespaceOnly: false), try addServer("w2", namespaceOnly: false)]
            daemons = try writers.map { try serve($0.state) }
        }

        deinit { for daemon in daemons { daemon.send(SIGKILL); _ = daemon.exitStatus(timeout: 10) } }

        @discardableResult
        func cli(_ arguments: [String], expect status: Int32 = 0) throws -> String {
            try TiergateProcess.expect(status, arguments, logs: logs)
        }

        func addServer(_ name: String, namespaceOnly: Bool) throws -> (root: String, state: String) {
            let root = scratch.path + "/" + name, state = scratch.path + "/state-" + name
            try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
            try cli(["endpoint", "add", root, "--share", url, "--state-dir", state, "--server-name", name])
            if namespaceOnly {
                try cli(["endpoint", "tiering", root, "--state-dir", state, "--free-space", "0", "--download", "namespace-only"])
            }
            return (root, state)
        }

        func serve(_ state: String) throws -> TiergateProcess {
            try TiergateProcess(["serve", "--state-dir", state, "--poll-interval", "0.2"], logs: logs)
        }

        /// `count` edits on the writers, some of them bursts of three files in one commit.
        func writeSome(_ count: Int) throws {
            for _ in 0..<count {
                let writer = Int.random(in: 0..<2, using: &random)
                // Now and then a burst: its files share one commit, and one pack that later versions leave sparse.
                let files = Int.random(in: 0..<3, using: &random) == 0 ? Array(0..<4).shuffled(using: &random).prefix(3) : [Int.random(in: 0..<4, using: &random)]
                for file in files {
                    let path = "w\(writer + 1)/f\(file).bin"
                    versionOf[path, default: 0] += 1
                    let bytes = ShareRetentionProcessTests.content(path, versionOf[path]!)
                    try ShareRetentionProcessTests.writeAtomically(writers[writer].root + "/" + path, bytes)
                    last[path] = bytes
                }
                usleep(UInt32.random(in: 150_000...450_000, using: &random))
            }
        }

        /// Waits until the head holds every file's last version and `servers` have applied the head.
        func settle(_ servers: [String]) async throws -> UInt64 {
            let deadline = Date().addingTimeInterval(90)
            while Date() < deadline {
                let share = try await CloudShare.open(store)
                let head = try await share.namespace()
                let registrations = try await ServerRegistration.list(in: store)
                let applied = servers.allSatisfy { name in registrations.contains { $0.name == name && $0.lastAppliedSequence == head.sequence } }
                let complete = last.allSatisfy { path, bytes in head.entries[path]?.chunks.first?.id == SHA256.hash(bytes) }
                if applied && complete { return head.sequence }
                usleep(200_000)
            }
            throw GatewayError("the servers did not settle: \(try await ServerRegistration.list(in: store).map { "\($0.name)@\($0.lastAppliedSequence)" })")
        }
    }

    @Test func noChunkAKeptVersionOrAStubNeedsIsEverCollected() async throws {
        let servers = try Servers(create: ["--pack-size", "1048576"])
        defer { withExtendedLifetime(servers) {} }
        let (scratch, logs, url, store, writers) = (servers.scratch, servers.logs, servers.url, servers.store, servers.writers)
        @discardableResult
        func cli(_ arguments: [String], expect status: Int32 = 0) throws -> String { try servers.cli(arguments, expect: status) }
        func addServer(_ name: String, namespaceOnly: Bool) throws -> (root: String, state: String) { try servers.addServer(name, namespaceOnly: namespaceOnly) }
        func serve(_ state: String) throws -> TiergateProcess { try servers.serve(state) }
        func writeSome(_ count: Int) throws { try servers.writeSome(count) }
        func settle(_ names: [String]) async throws -> UInt64 { try await servers.settle(names) }
        var last: [String: [UInt8]] { servers.last }
        var random = servers.random

        // Old history, then the lagging server joins, takes stubs of everything, and is killed.
        try writeSome(10)
        _ = try await settle(["w1", "w2"])
        let lagging = try addServer("lagging", namespaceOnly: true)
        let laggingDaemon = try serve(lagging.state)
        let joined = try await settle(["w1", "w2", "lagging"])
        laggingDaemon.send(SIGKILL)
        _ = laggingDaemon.exitStatus()
        let laggingStubs = last.keys.filter { StubFile.marker(atPath: lagging.root + "/" + $0) == .tiered }
        try #require(laggingStubs.count == last.count, "the lagging server holds \(laggingStubs.count) stubs of \(last.count) files")

        // A namespace-only server that keeps up, then retention, then writers racing collectors.
        let follower = try addServer("follower", namespaceOnly: true)
        servers.daemons.append(try serve(follower.state))
        try cli(["share", "retention", url, "--keep-within", "8s"])
        let collectors = CollectorLoop(url: url, logs: logs, seed: random.next())
        try writeSome(50)
        let tally = collectors.finish()
        #expect(tally.failures.isEmpty, "\(tally.failures)")
        let counts = "collectors: \(tally.finished) finished, \(tally.killed) killed, \(tally.refused) refused"
        #expect(tally.killed > 0 && tally.finished > 0, "\(counts)")
        var repacked = tally.repacked
        let head = try await settle(["w1", "w2", "follower"])
        try await Task.sleep(for: .seconds(2.1)) // a killed collector's lease expires
        for _ in 0..<3 {
            repacked += Self.repacked(try cli(Self.collect(url)))
            try await Task.sleep(for: .seconds(1.1))
        }

        // Every stub on every server recalls its exact bytes: the lagging server's of the versions it joined at.
        let share = try await CloudShare.open(store)
        try cli(["recall", lagging.root, "--state-dir", lagging.state])
        #expect(Self.compare(root: lagging.root, with: try await share.namespace(through: joined)) == [])
        let followerStubs = last.keys.filter { StubFile.marker(atPath: follower.root + "/" + $0) == .tiered }
        #expect(!followerStubs.isEmpty, "the follower holds no stub")
        try cli(["recall", follower.root, "--state-dir", follower.state])
        #expect(Self.compare(root: follower.root, with: try await share.namespace(through: head)) == [])

        // Every kept version restores byte-exact: the lagging server holds everything from where it joined.
        let registrations = try await ServerRegistration.list(in: store)
        let heldFrom = try #require(registrations.first { $0.name == "lagging" }).oldestHeldSequence
        #expect(heldFrom == joined)
        for sequence in heldFrom...head {
            let directory = scratch.path + "/at-\(sequence)"
            try cli(["get", url, directory, "--at", String(sequence)])
            let problems = Self.compare(root: directory, with: try await share.namespace(through: sequence))
            #expect(problems.isEmpty, "#\(sequence): \(problems)")
        }

        // Versions before it, outside the window, were collected: a restore of one fails, naming the file
        // and the cause, and writes nothing of it.
        var collected: (sequence: UInt64, path: String)?
        search: for sequence in 1..<heldFrom {
            for (path, entry) in try await share.namespace(through: sequence).entries where entry.kind == .file {
                if (try? await share.readChunk(entry.chunks[0].id)) == nil {
                    collected = (sequence, path)
                    break search
                }
            }
        }
        let gone = try #require(collected, "no version before #\(heldFrom) was collected: the run proved nothing")
        let directory = scratch.path + "/gone"
        let refused = try cli(["get", url, directory, "--at", String(gone.sequence)], expect: 1)
        #expect(refused.contains("outside the share's retention") && refused.contains("cannot be restored"), "\(refused)")
        let past = try await share.namespace(through: gone.sequence)
        #expect(Self.compare(root: directory, with: past, only: Set(past.entries.keys), allowMissing: true) == [], "what was written is whole")
        let partial = (FileManager.default.enumerator(atPath: directory)?.allObjects as? [String] ?? []).filter { $0.contains(".tg-") }
        #expect(partial.isEmpty, "\(partial)")
        let onEndpoint = try cli(["restore", writers[0].root + "/" + gone.path, "--at", String(gone.sequence), "--state-dir", writers[0].state], expect: 2)
        #expect(onEndpoint.contains("outside the share's retention"), "\(onEndpoint)")
        // The file's history says which of its versions were collected; its newest one is stored.
        let history = try cli(["share", "history", url, gone.path]).split(separator: "\n")
        let inEffect = history.last { line in UInt64(line.dropFirst().prefix { $0.isNumber }).map { $0 <= gone.sequence } ?? false }
        #expect(inEffect?.contains("(collected: outside the share's retention)") == true, "\(history)")
        #expect(history.last?.contains("(collected") == false, "\(history)")

        // Released, the lagging server holds nothing: later runs keep only the window and the head.
        try cli(["share", "forget-server", url, "lagging"])
        for _ in 0..<3 {
            repacked += Self.repacked(try cli(Self.collect(url)))
            try await Task.sleep(for: .seconds(1.1))
        }
        #expect(repacked > 0, "no run repacked a pack: the run proved nothing about repacking")
        let final = try cli(["get", url, scratch.path + "/head"])
        #expect(final.contains("restored"), "\(final)")
        #expect(Self.compare(root: scratch.path + "/head", with: try await share.namespace(through: head)) == [])
        try cli(["recall", follower.root, "--state-dir", follower.state])
        #expect(Self.compare(root: follower.root, with: try await share.namespace(through: head)) == [])
        let verify = try TiergateProcess.run(["share", "verify", url, "--read-data"], logs: logs)
        #expect(verify.status == 0 && verify.output.contains("outside retention"), "\(verify.output.suffix(2000))")
    }

    /// Log compaction under racing writers and collectors killed with SIGKILL at random points: snapshots
    /// every 3 commits, a retention window of a few seconds, a lagging namespace-only server whose stubs
    /// name old versions. The history never begins past what the lagging server holds; its stubs recall
    /// their exact bytes, every version it holds restores byte-exact, and it catches up; once it has, the
    /// history moves on, a version before it is refused, a new endpoint gets the head, and `share verify`
    /// finds the share clean.
    @Test func logCompactionUnderRacingWritersAndKilledCollectorsLosesNothing() async throws {
        let servers = try Servers(create: ["--pack-size", "1048576", "--snapshot-interval", "3"])
        defer { withExtendedLifetime(servers) {} }
        let (scratch, url, store) = (servers.scratch, servers.url, servers.store)
        try servers.writeSome(8)
        _ = try await servers.settle(["w1", "w2"])
        let lagging = try servers.addServer("lagging", namespaceOnly: true)
        var laggingDaemon = try servers.serve(lagging.state)
        let joined = try await servers.settle(["w1", "w2", "lagging"])
        laggingDaemon.send(SIGKILL)
        _ = laggingDaemon.exitStatus()
        let stubs = servers.last.keys.filter { StubFile.marker(atPath: lagging.root + "/" + $0) == .tiered }
        try #require(stubs.count == servers.last.count, "the lagging server holds \(stubs.count) stubs of \(servers.last.count) files")

        try servers.cli(["share", "retention", url, "--keep-within", "4s"])
        let collectors = CollectorLoop(url: url, logs: servers.logs, seed: servers.random.next())
        try servers.writeSome(40)
        let tally = collectors.finish()
        #expect(tally.failures.isEmpty, "\(tally.failures)")
        #expect(tally.killed > 0 && tally.finished > 0, "collectors: \(tally.finished) finished, \(tally.killed) killed, \(tally.refused) refused")
        var head = try await servers.settle(["w1", "w2"])
        try await Task.sleep(for: .seconds(2.1))    // a killed collector's lease expires
        try servers.cli(Self.collect(url))

        // The lagging server holds every version from where it joined: the history begins before it.
        var share = try await CloudShare.open(store)
        let held = try await share.historyBase()
        #expect(held < joined, "the history begins at #\(held), past #\(joined) that the lagging server holds")
        try servers.cli(["recall", lagging.root, "--state-dir", lagging.state])
        #expect(Self.compare(root: lagging.root, with: try await share.namespace(through: joined)) == [], "the lagging server's stubs")
        // Every version it holds restores byte-exact.
        for sequence in joined...head {
            let directory = scratch.path + "/held-\(sequence)"
            try servers.cli(["get", url, directory, "--at", String(sequence)])
            let problems = Self.compare(root: directory, with: try await share.namespace(through: sequence))
            #expect(problems.isEmpty, "#\(sequence): \(problems)")
        }
        laggingDaemon = try servers.serve(lagging.state)
        servers.daemons.append(laggingDaemon)
        head = try await servers.settle(["w1", "w2", "lagging"])

        // Every server at the head, the window past: the history moves up to the newest snapshot before it.
        try await Task.sleep(for: .seconds(4.5))
        for _ in 0..<2 {
            try servers.cli(Self.collect(url))
            try await Task.sleep(for: .seconds(1.1))
        }
        share = try await CloudShare.open(store)
        let base = try await share.historyBase()
        #expect(base > held && base > joined && base < head, "the history begins at #\(base) (held at #\(held), head #\(head))")
        let oldest = try #require(try await share.log.first())
        #expect(oldest <= base + 1, "records after the snapshot #\(base) are gone: the oldest is #\(oldest)")
        let verify = try TiergateProcess.run(["share", "verify", url, "--read-data"], logs: servers.logs)
        #expect(verify.status == 0 && verify.output.contains("result: clean"), "\(verify.output.suffix(2000))")
        try servers.cli(["get", url, scratch.path + "/head", "--at", String(head)])
        #expect(Self.compare(root: scratch.path + "/head", with: try await share.namespace(through: head)) == [], "the head")
        let refused = try servers.cli(["get", url, scratch.path + "/before", "--at", String(base - 1)], expect: 1)
        #expect(refused.contains("older than the share's history"), "\(refused)")

        // The servers go on: a new endpoint gets the head, an edit reaches every server.
        let late = try servers.addServer("late", namespaceOnly: false)
        servers.daemons.append(try servers.serve(late.state))
        try servers.writeSome(3)
        head = try await servers.settle(["w1", "w2", "lagging", "late"])
        share = try await CloudShare.open(store)
        #expect(Self.compare(root: late.root, with: try await share.namespace(through: head)) == [], "the new endpoint")
        try servers.cli(["recall", lagging.root, "--state-dir", lagging.state])
        #expect(Self.compare(root: lagging.root, with: try await share.namespace(through: head)) == [], "the lagging server, caught up")
    }
}
