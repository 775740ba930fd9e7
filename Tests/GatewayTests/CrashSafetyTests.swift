import Foundation
@testable import Gateway
import CloudShare
import Backends
import Glibc
import Testing

/// The `tiergate` executable built next to the test bundle (scripts/test builds it first).
func tiergateExecutable() throws -> String {
    let bundleDirectory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    for candidate in [bundleDirectory, bundleDirectory.deletingLastPathComponent()] {
        let path = candidate.appendingPathComponent("tiergate").path
        if FileManager.default.isExecutableFile(atPath: path) { return path }
    }
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    let built = root.appendingPathComponent(".build/debug/tiergate").path
    if FileManager.default.isExecutableFile(atPath: built) { return built }
    throw GatewayError("the tiergate executable is not built (run `swift build` or scripts/test first)")
}

/// Runs `tiergate` with `arguments`; kills it with SIGKILL after `killAfter` seconds when given.
/// Returns the exit status, or nil when a signal ended it; standard error goes to `errorLog` when given.
func runTiergate(_ arguments: [String], killAfter: Double? = nil, errorLog: String? = nil) throws -> Int32? {
    let child = try TiergateProcess(arguments, logs: NSTemporaryDirectory())
    defer {
        unlink(child.outputPath)
        unlink(child.errorPath)
    }
    let status = child.exitStatus(timeout: killAfter ?? 600)
    if let errorLog { try? child.errorOutput.write(toFile: errorLog, atomically: true, encoding: .utf8) }
    return status
}

@Suite(.serialized) struct CrashSafetyTests {
    /// kill -9 of `tiergate sync` at random points of upload, commit and apply, many times over; after a
    /// clean final pass both endpoints hold the same tree and every write acknowledged by a completed
    /// sync is there. No file is ever half-written.
    @Test func killingSyncAtRandomPointsLosesNothing() async throws {
        let group = try await SyncGroup(servers: 2)
        group.release()   // the tiergate processes below must own the databases
        var random = SeededGenerator(state: 42)
        var versions: [String: Set<String>] = [:]     // every content ever written per path
        var acknowledged: [String: String] = [:]      // content of A's files at the last successful sync of A
        var killed = 0
        for round in 0..<25 {
            for _ in 0..<Int.random(in: 1...8, using: &random) {
                let path = "dir\(Int.random(in: 0..<3, using: &random))/file\(Int.random(in: 0..<12, using: &random)).bin"
                let content = "round \(round) " + String(repeating: "x", count: Int.random(in: 0..<200_000, using: &random))
                group.write(0, path, content)
                versions[path, default: []].insert(content)
            }
            for index in 0..<2 {
                let state = group.scratch.path + "/state\(index)"
                let snapshot = group.tree(0)
                let delay = Double.random(in: 0..<0.4, using: &random)
                let status = try runTiergate(["sync", "--state-dir", state], killAfter: delay)
                if status == nil { killed += 1 }
                if index == 0, status == 0 { acknowledged = snapshot.filter { $0.value != "<dir>" } }
            }
        }
        // Clean passes (in-process is fine now; the crashes are over).
        for _ in 0..<2 {
            for index in 0..<2 {
                let log = group.scratch.path + "/final-\(index).log"
                let status = try runTiergate(["sync", "--state-dir", group.scratch.path + "/state\(index)"], errorLog: log)
                #expect(status == 0, "final sync of endpoint \(index) failed: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
            }
        }
        #expect(killed > 5, "the test must actually kill syncs mid-way (killed \(killed))")
        let a = group.tree(0), b = group.tree(1)
        let differing = Set(a.keys).union(b.keys).filter { a[$0] != b[$0] }.sorted()
        #expect(differing.isEmpty, "endpoints differ after recovery at \(differing.prefix(10))")
        for (path, content) in b where content != "<dir>" {
            let original = path.replacingOccurrences(of: "-Server0", with: "").replacingOccurrences(of: "-Server1", with: "")
            let known = versions[original]?.contains(content) == true
            #expect(known, "\(path) holds content that was never written (torn?), \(content.count) bytes")
        }
        for (path, _) in acknowledged {
            let present = b[path] != nil
            #expect(present, "acknowledged file \(path) is missing on the other endpoint")
        }
        // The final content of each of A's files reached B.
        for (path, content) in a where content != "<dir>" {
            let arrived = b[path] == content
            #expect(arrived, "\(path) did not reach the other endpoint")
        }
    }
}

/// `tiergate put` killed while it writes packs to a `file://` share, many times over: the share holds
/// whole objects only, never a half-written file under any name, and the next put stores the tree.
@Suite(.serialized) struct ObjectWriteCrashTests {
    /// Files in `root`, at any depth, whose names are a writer's temporary names.
    static func temporaryFiles(_ root: String) -> [String] {
        let walker = FileManager.default.enumerator(atPath: root)
        var found: [String] = []
        while let path = walker?.nextObject() as? String {
            if path.split(separator: "/").last?.hasPrefix(".tg-tmp-") == true { found.append(path) }
        }
        return found
    }

    @Test func aPutKilledWhileItWritesObjectsLeavesNoPartialFile() async throws {
        let scratch = Scratch()
        let share = scratch.path + "/share", url = "file://" + share
        #expect(try runTiergate(["share", "create", url, "--pack-size", "16777216"]) == 0)
        var files: [String: [UInt8]] = [:]
        for file in 0..<6 {
            files["f\(file).bin"] = randomBytes(12_000_000, seed: UInt64(file + 1))
            scratch.write("src/f\(file).bin", files["f\(file).bin"]!)
        }
        var random = SeededGenerator(state: 5)
        for _ in 0..<4 {
            // Killed the moment a writer's file shows up in the share, or at a random point.
            let put = try TiergateProcess(["put", url, scratch.path + "/src"], logs: scratch.path)
            let deadline = Date().addingTimeInterval(Double.random(in: 0.3...2.0, using: &random))
            while put.process.isRunning && Date() < deadline && Self.temporaryFiles(share).isEmpty { usleep(500) }
            put.send(SIGKILL)
            _ = put.exitStatus()
        }
        let left = Self.temporaryFiles(share)
        #expect(left.isEmpty, "killed writers left partial files in the share: \(left)")
        #expect(try runTiergate(["put", url, scratch.path + "/src"]) == 0)
        #expect(try runTiergate(["get", url, scratch.path + "/restore"]) == 0)
        for (name, bytes) in files {
            let same = scratch.read("restore/" + name) == bytes
            #expect(same, "\(name) differs after the killed puts")
        }
    }
}

/// A running `tiergate serve` for the state directory `state`, logging to `log`; returns once it
/// has announced itself (its pid file names it), so CLI requests reach it, and, with `line`, once it
/// has also logged that line (e.g. "stubs marked for recall": stubs read before it read as holes).
func startDaemon(state: String, log: String, waitingFor line: String? = nil) throws -> Process {
    let daemon = Process()
    daemon.executableURL = URL(fileURLWithPath: try tiergateExecutable())
    daemon.arguments = ["serve", "--state-dir", state, "--poll-interval", "0.2"]
    if !FileManager.default.fileExists(atPath: log) { FileManager.default.createFile(atPath: log, contents: nil) }
    let handle = FileHandle(forWritingAtPath: log)
    let start = Int(handle?.seekToEndOfFile() ?? 0)
    func logged() -> Bool {
        guard let line else { return true }
        let text = (try? Data(contentsOf: URL(fileURLWithPath: log))) ?? Data()
        return text.count > start && String(decoding: text[start...], as: UTF8.self).contains(line)
    }
    daemon.standardOutput = handle
    daemon.standardError = handle
    try daemon.run()
    let deadline = Date().addingTimeInterval(30)
    while Date() < deadline, daemon.isRunning {
        if (try? String(contentsOfFile: state + "/serve.pid", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) == String(daemon.processIdentifier),
           logged() {
            return daemon
        }
        usleep(20_000)
    }
    if daemon.isRunning {
        kill(daemon.processIdentifier, SIGKILL)
        daemon.waitUntilExit()
    }
    throw GatewayError("the daemon did not start: \((try? String(contentsOfFile: log, encoding: .utf8))?.suffix(2000) ?? "")")
}

@Suite(.serialized) struct TieringCrashSafetyTests {
    /// `tiergate tier` and `tiergate recall` asked of a running daemon, which is killed with SIGKILL at
    /// random points and restarted, over and over: afterwards every file is either its full content or
    /// a stub that recalls to exactly the tiered bytes, and the share still holds every file unchanged.
    @Test func killingTheDaemonDuringTierAndRecallKeepsEveryFileWhole() async throws {
        let group = try await SyncGroup(servers: 1)
        _ = try group.gateways[0].setTiering("1", TieringConfig(volumeFreeSpacePercent: 0))
        var contents: [String: [UInt8]] = [:]
        for index in 0..<6 {
            let bytes = randomBytes((1 << 20) + index * 333_333, seed: UInt64(index) + 100)
            contents["f\(index).bin"] = bytes
            group.scratch.write("ep0/f\(index).bin", bytes)
        }
        try await group.sync(0)
        group.release()
        let state = group.scratch.path + "/state0"
        let log = group.scratch.path + "/serve.log"
        var daemon = try startDaemon(state: state, log: log)
        defer { if daemon.isRunning { kill(daemon.processIdentifier, SIGKILL); daemon.waitUntilExit() } }
        var random = SeededGenerator(state: 7)
        var killed = 0, answered = 0
        for round in 0..<16 {
            let request = Process()
            request.executableURL = URL(fileURLWithPath: try tiergateExecutable())
            request.arguments = [round % 2 == 0 ? "tier" : "recall", group.root(0), "--state-dir", state]
            request.standardOutput = FileHandle.nullDevice
            request.standardError = FileHandle.nullDevice
            try request.run()
            usleep(UInt32.random(in: 0..<150_000, using: &random))
            if daemon.isRunning {
                kill(daemon.processIdentifier, SIGKILL)
                killed += 1
            }
            daemon.waitUntilExit()
            request.waitUntilExit()
            if request.terminationStatus == 0 { answered += 1 }
            daemon = try startDaemon(state: state, log: log)
        }
        #expect(answered > 0, "some requests were carried out before the kill")
        #expect(killed > 5, "the test must actually kill the daemon mid-way (killed \(killed))")
        let recallLog = group.scratch.path + "/recall.log"
        #expect(try runTiergate(["recall", group.root(0), "--state-dir", state], errorLog: recallLog) == 0, "\((try? String(contentsOfFile: recallLog, encoding: .utf8)) ?? "")")
        kill(daemon.processIdentifier, SIGTERM)
        daemon.waitUntilExit()
        for (name, bytes) in contents {
            let back = try readAll(group.root(0) + "/" + name) == bytes
            #expect(back, "\(name) recalls to exactly the tiered bytes")
            #expect(StubFile.marker(atPath: group.root(0) + "/" + name) == nil)
        }
        let last = try runTiergate(["sync", "--state-dir", state])
        #expect(last == 0)
        let share = try await CloudShare.open(try StoreLocator.open(group.url))
        let other = group.scratch.path + "/check"
        _ = try await TreeExport.run(share: share, destination: other)
        for (name, bytes) in contents {
            let intact = try readAll(other + "/" + name) == bytes
            #expect(intact, "the share still holds \(name) unchanged")
        }
    }
}
