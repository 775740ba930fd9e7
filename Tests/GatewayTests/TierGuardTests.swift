import Backends
import CloudShare
import Foundation
@testable import Gateway
import Glibc
import Testing

/// Tiering happens only where something recalls the stub; requests the daemon cannot answer fail at
/// once with the reason, never after an hour.
@Suite(.serialized) struct TierGuardTests {
    /// Runs `tiergate` and returns its status and output, failing the test if it runs over `limit` seconds.
    static func run(_ arguments: [String], limit: Double = 20) throws -> (status: Int32?, output: String) {
        let log = NSTemporaryDirectory() + "tiergate-guard-\(UUID().uuidString).log"
        defer { unlink(log) }
        let started = Date()
        let status = try runTiergate(arguments, killAfter: limit, errorLog: log)
        #expect(Date().timeIntervalSince(started) < limit, "`tiergate \(arguments.joined(separator: " "))` did not finish within \(limit) s")
        return (status, (try? String(contentsOfFile: log, encoding: .utf8)) ?? "")
    }

    @Test func tierRefusesWhereNothingWouldRecallTheStub() async throws {
        let group = try await SyncGroup(servers: 1)
        group.write(0, "cold.txt", String(repeating: "cold data ", count: 5000))
        try await group.sync(0)
        group.release()
        let state = group.scratch.path + "/state0", file = group.root(0) + "/cold.txt"

        // No daemon at all.
        let alone = try Self.run(["tier", file, "--state-dir", state])
        #expect(alone.status != 0 && alone.output.contains("zeros"), "\(alone)")
        #expect(StubFile.marker(atPath: file) == nil)

        // A daemon, but tiering is off for the endpoint.
        let daemon = try startDaemon(state: state, log: group.scratch.path + "/serve.log")
        defer { kill(daemon.processIdentifier, SIGTERM); daemon.waitUntilExit() }
        let off = try Self.run(["tier", file, "--state-dir", state])
        #expect(off.status != 0, "\(off)")
        #expect(StubFile.marker(atPath: file) == nil, "no stub was made")
        #expect(group.read(0, "cold.txt") == String(repeating: "cold data ", count: 5000))

        // Paths the daemon has nothing for fail at once.
        let outside = try Self.run(["tier", group.scratch.path, "--state-dir", state])
        #expect(outside.status != 0 && outside.output.contains("not inside any endpoint"), "\(outside)")
        let unsynced = try Self.run(["recall", group.root(0) + "/never-synced.txt", "--state-dir", state])
        #expect(unsynced.status != 0, "\(unsynced)")
    }

    @Test func requestsFailAtOnceWhenTheDatabaseIsHeldByTheMount() async throws {
        let group = try await SyncGroup(servers: 1)
        group.write(0, "a.txt", "a")
        try await group.sync(0)
        group.release()
        let state = group.scratch.path + "/state0", mountpoint = group.scratch.path + "/mnt"
        try FileManager.default.createDirectory(atPath: mountpoint, withIntermediateDirectories: true)
        let mount = Process()
        mount.executableURL = URL(fileURLWithPath: try tiergateExecutable())
        mount.arguments = ["mount", group.root(0), mountpoint, "--state-dir", state]
        mount.standardOutput = FileHandle.nullDevice
        mount.standardError = FileHandle.nullDevice
        try mount.run()
        defer { kill(mount.processIdentifier, SIGTERM); mount.waitUntilExit() }
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline, !FileManager.default.fileExists(atPath: mountpoint + "/a.txt") { usleep(50_000) }
        #expect(FileManager.default.fileExists(atPath: mountpoint + "/a.txt"), "the mount is up")
        let recall = try Self.run(["recall", group.root(0), "--state-dir", state])
        #expect(recall.status != 0 && recall.output.contains("not `tiergate serve`"), "\(recall)")
    }

    @Test func removingAnEndpointWithStubsIsRefusedUnlessTheyAreRecalledOrKeptOnPurpose() async throws {
        let group = try await SyncGroup(servers: 1)
        let content = String(repeating: "tiered data ", count: 10_000)
        group.write(0, "t.txt", content)
        try await group.sync(0)
        _ = try await group.gateways[0].tier(group.root(0) + "/t.txt")
        #expect(StubFile.marker(atPath: group.root(0) + "/t.txt") != nil)
        #expect(throws: GatewayError.self) { try group.gateways[0].removeEndpoint(group.root(0)) }
        group.release()
        let state = group.scratch.path + "/state0"
        let refused = try Self.run(["endpoint", "remove", group.root(0), "--state-dir", state])
        #expect(refused.status != 0 && refused.output.contains("--recall"), "\(refused)")
        let removed = try Self.run(["endpoint", "remove", group.root(0), "--recall", "--state-dir", state])
        #expect(removed.status == 0, "\(removed)")
        #expect(StubFile.marker(atPath: group.root(0) + "/t.txt") == nil)
        #expect(group.read(0, "t.txt") == content)
        #expect(try Gateway(directory: StateDirectory(path: state)).config.endpoints.isEmpty)
    }

    /// Stubs left behind by `endpoint remove --keep-stubs` (no endpoint, no database record) recall with
    /// `tiergate recall` from the share their markers name: exact bytes, markers gone, times kept.
    @Test func anOrphanedStubRecallsFromTheShareItsMarkersName() async throws {
        let group = try await SyncGroup(servers: 1)
        let one = randomBytes(600_001, seed: 71), two = randomBytes(90_000, seed: 72)
        group.scratch.write("ep0/one.bin", one)
        group.scratch.write("ep0/sub/two.bin", two)
        group.write(0, "plain.txt", "never tiered")
        try await group.sync(0)
        for name in ["one.bin", "sub/two.bin"] { _ = try await group.gateways[0].tier(group.root(0) + "/" + name) }
        var before = stat()
        stat(group.root(0) + "/one.bin", &before)
        group.release()
        let state = group.scratch.path + "/state0", root = group.root(0)
        let status = try TiergateProcess.run(["status", "--state-dir", state], logs: group.scratch.path)
        #expect(status.output.contains("recall:            NONE: `tiergate serve` is not running"), "status says stubs are not recalled: \(status.output)")
        let removed = try Self.run(["endpoint", "remove", root, "--keep-stubs", "--state-dir", state])
        #expect(removed.status == 0, "\(removed)")
        #expect(StubFile.marker(atPath: root + "/one.bin") == .tiered, "the stub stays, orphaned")

        let file = try Self.run(["recall", root + "/one.bin", "--state-dir", state])
        #expect(file.status == 0, "\(file)")
        let recalled = try await readStub(root + "/one.bin") == one
        #expect(recalled, "the orphan recalls to its exact bytes")
        #expect(StubFile.marker(atPath: root + "/one.bin") == nil)
        var after = stat()
        stat(root + "/one.bin", &after)
        #expect(after.st_mtim.tv_sec == before.st_mtim.tv_sec && after.st_mtim.tv_nsec == before.st_mtim.tv_nsec, "its mtime is kept")

        let folder = try Self.run(["recall", root, "--state-dir", state])
        #expect(folder.status == 0, "\(folder)")
        let whole = try await readStub(root + "/sub/two.bin") == two
        #expect(whole && StubFile.marker(atPath: root + "/sub/two.bin") == nil)
        let nothing = try Self.run(["recall", root + "/plain.txt", "--state-dir", state])
        #expect(nothing.status != 0, "a file that is no stub is refused: \(nothing)")
    }

    /// An orphan pointed at another share (`--share`) is refused by share id: it stays a stub, never
    /// filled with another share's bytes.
    @Test func anOrphanIsNeverRecalledFromAnotherShare() async throws {
        let group = try await SyncGroup(servers: 1)
        let content = randomBytes(300_000, seed: 73)
        group.scratch.write("ep0/o.bin", content)
        try await group.sync(0)
        _ = try await group.gateways[0].tier(group.root(0) + "/o.bin")
        group.release()
        let state = group.scratch.path + "/state0", root = group.root(0)
        #expect(try Self.run(["endpoint", "remove", root, "--keep-stubs", "--state-dir", state]).status == 0)
        let other = "file://" + group.scratch.path + "/other-share"
        _ = try await CloudShare.create(in: try StoreLocator.open(other))
        let refused = try Self.run(["recall", root + "/o.bin", "--share", other, "--state-dir", state])
        #expect(refused.status != 0, "\(refused)")
        #expect(StubFile.marker(atPath: root + "/o.bin") == .tiered, "it stays a stub")
        let right = try Self.run(["recall", root + "/o.bin", "--state-dir", state])
        #expect(right.status == 0, "\(right)")
        let exact = try await readStub(root + "/o.bin") == content
        #expect(exact)
    }

    @Test func changesReportedByTheMountStopBeingPendingOnceSynced() async throws {
        let group = try await SyncGroup(servers: 1)
        group.write(0, "m.txt", "written through the mount")
        var batch = group.gateways[0].state.batch(group.endpoints[0].id)
        batch.setPending("m.txt")
        try group.gateways[0].state.commit(batch, sync: true)
        #expect(try group.gateways[0].state.pendingCount(group.endpoints[0].id) == 1)
        try await group.sync(0)
        #expect(try group.gateways[0].state.pendingCount(group.endpoints[0].id) == 0)
        #expect(await group.gateways[0].status()[0].health == "Healthy")
    }
}
