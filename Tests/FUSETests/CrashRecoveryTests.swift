import Foundation
import Glibc
import Synchronization
import Testing
@testable import FUSE

/// A mount daemon killed with SIGKILL in the middle of writes: the mount it leaves behind is stale
/// (`ENOTCONN`), a new mount at the same place recovers it, and every byte acknowledged by fsync is there.
///
/// The daemon must be another process, so the test runs its own test binary again as the daemon: with
/// the environment variable below set, the same test function mounts and serves until it is killed.
@Suite struct CrashRecoveryTests {
    static let daemonVariable = "TIERGATE_FUSE_TEST_DAEMON"
    static let testName = "killedDaemonLeavesAStaleMountAndFsyncedDataSurvivesTheRemount"

    @Test func killedDaemonLeavesAStaleMountAndFsyncedDataSurvivesTheRemount() throws {
        if let specification = ProcessInfo.processInfo.environment[Self.daemonVariable] {
            Self.serveUntilKilled(specification)
        }
        try MountFixture.requireFUSE()
        let root = try makeTemporaryDirectory("crash")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let endpoint = root + "/endpoint"
        let mountpoint = root + "/mnt"
        let ready = root + "/ready"
        try FileManager.default.createDirectory(atPath: endpoint, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: mountpoint, withIntermediateDirectories: true)

        let daemon = try Self.spawnDaemon(endpoint: endpoint, mountpoint: mountpoint, ready: ready, log: root + "/daemon.log")
        var daemonAlive = true
        defer { if daemonAlive { kill(daemon, SIGKILL); var s: Int32 = 0; waitpid(daemon, &s, 0) } }
        try Self.waitForReadiness(of: daemon, ready: ready, log: root + "/daemon.log")

        // Acknowledged data: written and fsynced through the daemon's mount.
        let acknowledged = pattern(4 << 20, seed: 11)
        let descriptor = open(mountpoint + "/journal.bin", O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
        try #require(descriptor >= 0)
        try writeAll(descriptor, acknowledged)
        #expect(fsync(descriptor) == 0)

        // Unacknowledged data keeps flowing from another thread while the daemon dies. Through the
        // daemon the writes then fail; a file the kernel passes through keeps writing to the endpoint
        // file, so the writer also stops shortly after the kill.
        let writerError = Mutex<Int32>(0)
        let stopWriting = Atomic<Bool>(false)
        let writerDone = DispatchGroup()
        writerDone.enter()
        Thread {
            let chunk = pattern(1 << 20, seed: 99)
            while !stopWriting.load(ordering: .relaxed) {
                let count = chunk.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
                if count < 0 { writerError.withLock { $0 = errno }; break }
                usleep(1_000)
            }
            writerDone.leave()
        }.start()
        usleep(200_000)
        #expect(kill(daemon, SIGKILL) == 0)
        var exitStatus: Int32 = 0
        waitpid(daemon, &exitStatus, 0)
        daemonAlive = false
        usleep(300_000)
        stopWriting.store(true, ordering: .relaxed)
        #expect(writerDone.wait(timeout: .now() + 30) == .success, "a writer stayed blocked after the daemon died")
        #expect([0, ENOTCONN, ECONNABORTED, EIO].contains(writerError.withLock { $0 }))
        close(descriptor)

        #expect(MountPoint.isStale(mountpoint))
        let core = try PassthroughCore(endpoint: endpoint)
        let session = try MountSession.mount(core, at: mountpoint)
        defer { session.stop() }
        #expect(!MountPoint.isStale(mountpoint))
        let recovered = try readFile(mountpoint + "/journal.bin")
        #expect(recovered.count >= acknowledged.count)
        #expect(Array(recovered.prefix(acknowledged.count)) == acknowledged)
    }

    /// The daemon side: mount, announce readiness, serve until killed (or orphaned).
    static func serveUntilKilled(_ specification: String) -> Never {
        let fields = specification.split(separator: "\n").map(String.init)
        guard fields.count == 4, let parent = pid_t(fields[3]) else {
            FileHandle.standardError.write(Data("bad daemon specification\n".utf8))
            exit(2)
        }
        do {
            let core = try PassthroughCore(endpoint: fields[0])
            _ = try MountSession.mount(core, at: fields[1])
            try writeFile(fields[2], [1])
        } catch {
            FileHandle.standardError.write(Data("daemon failed: \(error)\n".utf8))
            exit(3)
        }
        while getppid() == parent { usleep(100_000) }
        exit(0)
    }

    static func spawnDaemon(endpoint: String, mountpoint: String, ready: String, log: String) throws -> pid_t {
        let executable = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        let arguments = [executable, "--testing-library", "swift-testing", "--filter", testName]
        var environment = ProcessInfo.processInfo.environment
        environment[daemonVariable] = [endpoint, mountpoint, ready, String(getpid())].joined(separator: "\n")
        var argv = arguments.map { strdup($0) } + [nil]
        var envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { argv.forEach { free($0) }; envp.forEach { free($0) } }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var pid: pid_t = 0
        let result = posix_spawn(&pid, arguments[0], &actions, nil, &argv, &envp)
        guard result == 0 else { throw Errno(result) }
        return pid
    }

    static func waitForReadiness(of daemon: pid_t, ready: String, log: String) throws {
        for _ in 0..<600 {
            if access(ready, F_OK) == 0 { return }
            var exitStatus: Int32 = 0
            if waitpid(daemon, &exitStatus, WNOHANG) == daemon {
                let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
                throw MountUnavailable(description: "the daemon process exited before mounting:\n\(output)")
            }
            usleep(100_000)
        }
        throw MountUnavailable(description: "the daemon process did not mount within 60 s")
    }
}
