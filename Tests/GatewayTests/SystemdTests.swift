import Fanotify
import Foundation
@testable import Gateway
import Glibc
import Synchronization
import Testing

/// `tiergate serve` as a systemd service: the notification protocol spoken to a fake `$NOTIFY_SOCKET`,
/// the descriptor store that keeps fanotify groups across a killed daemon, SIGHUP reloads, and the unit
/// that `tiergate install-service` writes.
@Suite(.serialized) struct SystemdTests {
    /// The repository's root (for packaging/tiergate.service).
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    // MARK: The protocol

    @Test(arguments: ["path", "abstract"])
    func theNotifierSendsItsMessageWithDescriptorsToAPathOrAnAbstractSocket(kind: String) throws {
        let scratch = Scratch()
        let name = kind == "path" ? scratch.path + "/notify" : "@tiergate-test-\(UUID().uuidString.prefix(8))"
        let systemd = try FakeSystemd(path: name)
        defer { systemd.stop() }
        let notifier = try #require(SystemdNotifier(environment: ["NOTIFY_SOCKET": name]))
        var pipeEnds: [Int32] = [0, 0]
        #expect(pipe(&pipeEnds) == 0)
        defer { close(pipeEnds[0]); close(pipeEnds[1]) }
        try notifier.send("READY=1\nSTATUS=serving")
        try notifier.store(pipeEnds[1], name: "fanotify-7")
        let messages = systemd.waitFor(2) { _ in true }
        #expect(messages.first?.text == "READY=1\nSTATUS=serving")
        let stored = try #require(messages.dropFirst().first)
        #expect(stored.fields == ["FDSTORE": "1", "FDNAME": "fanotify-7", "FDPOLL": "0"])
        #expect(stored.descriptors.count == 1)
        // The received descriptor is the pipe's write end: what goes in comes out of the read end.
        if let received = stored.descriptors.first {
            var byte: UInt8 = 42, back: UInt8 = 0
            #expect(write(received, &byte, 1) == 1)
            #expect(read(pipeEnds[0], &back, 1) == 1 && back == 42)
        }
    }

    @Test func noNotifierWithoutAUnixNotifySocket() {
        #expect(SystemdNotifier(environment: [:]) == nil)
        #expect(SystemdNotifier(environment: ["NOTIFY_SOCKET": ""]) == nil)
        #expect(SystemdNotifier(environment: ["NOTIFY_SOCKET": "vsock:2:1234"]) == nil)
    }

    @Test func theWatchdogIntervalIsHalfOfWATCHDOG_USECForThisProcessOnly() {
        #expect(SystemdNotifier.watchdogInterval(environment: ["WATCHDOG_USEC": "2000000"], pid: 10) == .seconds(1))
        #expect(SystemdNotifier.watchdogInterval(environment: ["WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "10"], pid: 10) == .seconds(1))
        #expect(SystemdNotifier.watchdogInterval(environment: ["WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "11"], pid: 10) == nil)
        #expect(SystemdNotifier.watchdogInterval(environment: ["WATCHDOG_USEC": "0"], pid: 10) == nil)
        #expect(SystemdNotifier.watchdogInterval(environment: [:], pid: 10) == nil)
    }

    @Test func passedDescriptorsAreNamedFromThreeOnAndOnlyForTheirProcess() {
        let environment = ["LISTEN_PID": "10", "LISTEN_FDS": "3", "LISTEN_FDNAMES": "fanotify-1::fanotify-4"]
        #expect(SystemdListenedDescriptors.parse(environment: environment, pid: 10) == ["fanotify-1": 3, "unknown": 4, "fanotify-4": 5])
        #expect(SystemdListenedDescriptors.parse(environment: environment, pid: 11) == [:])
        #expect(SystemdListenedDescriptors.parse(environment: ["LISTEN_PID": "10", "LISTEN_FDS": "1"], pid: 10) == ["unknown": 3])
        #expect(SystemdListenedDescriptors.parse(environment: [:], pid: 10) == [:])
    }

    // MARK: The unit

    @Test func theCheckedInUnitIsWhatInstallServiceWritesForTheStandardPaths() throws {
        let checkedIn = try String(contentsOfFile: Self.repository + "/packaging/tiergate.service", encoding: .utf8)
        let generated = try SystemdUnit().text()
        #expect(checkedIn == generated, "packaging/tiergate.service differs from SystemdUnit().text(); it should read:\n\(generated)")
    }

    @Test func installServiceWritesAUnitThatSystemdAnalyzeVerifiesForTheEndpointsOfTheStateDirectory() throws {
        let server = try ShutdownTests.Server()
        try server.cli(["endpoint", "tiering", server.endpoint, "--state-dir", server.state, "--free-space", "0"])
        let output = server.scratch.path + "/tiergate.service"
        let result = try TiergateProcess.run(["install-service", "--state-dir", server.state, "--output", output], logs: server.logs)
        #expect(result.status == 0, "\(result.output)")
        let unit = try String(contentsOfFile: output, encoding: .utf8)
        #expect(unit.contains("Environment=TIERGATE_STATE_DIR=\(server.state)\n"))
        #expect(unit.contains("ExecStart=\(try tiergateExecutable()) serve\n") || unit.contains("serve\n"), "\(unit)")
        #expect(unit.contains("ReadWritePaths=\(server.state) \(server.endpoint)\n"), "\(unit)")
        #expect(unit.contains("Type=notify\n") && unit.contains("FileDescriptorStoreMax="))
        #expect(!unit.contains("PrivateTmp=yes"), "an endpoint under /tmp needs the real /tmp")
        try Self.expectVerified(output)

        // With a FUSE mount point the service keeps the host's mount namespace, or nobody would see the mount.
        var config = try #require(try StateDirectory(path: server.state).loadConfig())
        config.endpoints[0].mountPoint = server.mountpoint
        try StateDirectory(path: server.state).saveConfig(config)
        let mounted = try TiergateProcess.run(["install-service", "--state-dir", server.state, "--output", output], logs: server.logs)
        #expect(mounted.status == 0, "\(mounted.output)")
        let mountedUnit = try String(contentsOfFile: output, encoding: .utf8)
        #expect(!mountedUnit.contains("\nProtectSystem=") && !mountedUnit.contains("\nReadWritePaths=") && !mountedUnit.contains("\nPrivateTmp="), "\(mountedUnit)")
        try Self.expectVerified(output)
    }

    @Test func installServiceRefusesAStateDirectoryWithoutEndpointsAndAnUnwritableOutput() throws {
        let scratch = Scratch()
        let empty = try TiergateProcess.run(["install-service", "--state-dir", scratch.path + "/nothing", "--output", scratch.path + "/t.service"], logs: scratch.path)
        #expect(empty.status == 1 && empty.output.contains("no endpoints registered"), "\(empty.output)")
        let server = try ShutdownTests.Server()
        let unwritable = try TiergateProcess.run(["install-service", "--state-dir", server.state, "--output", server.scratch.path + "/missing/dir/t.service"], logs: server.logs)
        #expect(unwritable.status == 1 && unwritable.output.contains("cannot write the unit to"), "\(unwritable.output)")
    }

    @Test func unitWordsAreQuotedAndEscaped() throws {
        #expect(try SystemdUnit.quoted("/srv/data", in: "x") == "/srv/data")
        #expect(try SystemdUnit.quoted("/srv/100%", in: "x") == "/srv/100%%")
        #expect(try SystemdUnit.quoted("/srv/my data", in: "x") == "\"/srv/my data\"")
        #expect(try SystemdUnit.quoted("/srv/a\"b\\c", in: "x") == "\"/srv/a\\\"b\\\\c\"")
        #expect(throws: GatewayError.self) { try SystemdUnit.quoted("/srv/a\nb", in: "x") }
    }

    /// `systemd-analyze verify` of `path` prints nothing and succeeds (the executable named must exist).
    static func expectVerified(_ path: String) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/systemd-analyze")
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/systemd-analyze") else {
            Issue.record("systemd-analyze is not installed (Debian package systemd): the unit cannot be verified")
            return
        }
        process.arguments = ["verify", path]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0 && output.isEmpty, "systemd-analyze verify: \(output)")
    }

    // MARK: The daemon

    @Test func serveReportsReadyPingsTheWatchdogAndReportsStoppingOnSIGTERM() throws {
        let server = try ShutdownTests.Server()
        let systemd = try FakeSystemd(path: server.scratch.path + "/notify")
        defer { systemd.stop() }
        let serve = try TiergateProcess(["serve", "--state-dir", server.state, "--poll-interval", "0.1"], logs: server.logs,
                                        environment: ["NOTIFY_SOCKET": systemd.socketName, "WATCHDOG_USEC": "2000000"])
        defer { if serve.process.isRunning { serve.send(SIGKILL) } }
        let ready = systemd.waitFor { $0.fields["READY"] == "1" }
        #expect(ready.count == 1, "no READY=1: \(systemd.messages.map(\.text)) \(serve.errorOutput)")
        #expect(ready.first?.fields["STATUS"] == "serving 1 endpoint")
        // Every second (half of WATCHDOG_USEC): three pings within four seconds.
        let pings = systemd.waitFor(3, timeout: 4) { $0.text == "WATCHDOG=1" }
        #expect(pings.count >= 3, "\(systemd.messages.map(\.text))")
        #expect(!systemd.messages.contains { $0.fields["STOPPING"] != nil })
        serve.send(SIGTERM)
        #expect(serve.exitStatus() == 0, "\(serve.errorOutput)")
        #expect(systemd.messages.contains { $0.fields["STOPPING"] == "1" }, "\(systemd.messages.map(\.text))")
    }

    @Test func sighupReloadsTheConfigurationAndServesANewEndpointWithoutStopping() throws {
        let server = try ShutdownTests.Server()
        let systemd = try FakeSystemd(path: server.scratch.path + "/notify")
        defer { systemd.stop() }
        let serve = try TiergateProcess(["serve", "--state-dir", server.state, "--poll-interval", "0.1"], logs: server.logs,
                                        environment: ["NOTIFY_SOCKET": systemd.socketName])
        defer { if serve.process.isRunning { serve.send(SIGKILL) } }
        #expect(systemd.waitFor { $0.fields["READY"] == "1" }.count == 1, "\(serve.errorOutput)")
        // A second endpoint, written into the human-editable configuration while the daemon holds the database.
        let second = server.scratch.path + "/second"
        try FileManager.default.createDirectory(atPath: second, withIntermediateDirectories: true)
        try Data("new\n".utf8).write(to: URL(fileURLWithPath: second + "/new.txt"))
        let share = "file://" + server.scratch.path + "/share2"
        try server.cli(["share", "create", share])
        let directory = StateDirectory(path: server.state)
        var config = try #require(try directory.loadConfig())
        config.endpoints.append(EndpointConfig(id: config.nextEndpointID, path: second, share: share, initialUpload: .merge))
        config.nextEndpointID += 1
        try directory.saveConfig(config)
        serve.send(SIGHUP)
        let again = systemd.waitFor(2) { $0.fields["READY"] == "1" }
        #expect(again.count == 2, "no READY=1 after the reload: \(systemd.messages.map(\.text)) \(serve.errorOutput)")
        #expect(again.last?.fields["STATUS"] == "serving 2 endpoints")
        #expect(systemd.messages.contains { $0.fields["RELOADING"] == "1" && $0.fields["MONOTONIC_USEC"] != nil })
        #expect(serve.waitFor("reloading configuration", inErrorOutput: true))
        #expect(serve.waitFor("endpoint.path=\(second)", inErrorOutput: true), "\(serve.errorOutput)")
        #expect(serve.process.isRunning, "the daemon stays up across the reload: \(serve.errorOutput)")
        // The new endpoint syncs: its file reaches its share.
        var synced = false
        let deadline = Date().addingTimeInterval(20)
        while !synced && Date() < deadline {
            let restored = server.scratch.path + "/restored-\(UUID().uuidString.prefix(8))"
            _ = try TiergateProcess.run(["get", share, restored], logs: server.logs)
            synced = FileManager.default.fileExists(atPath: restored + "/new.txt")
            if !synced { usleep(200_000) }
        }
        #expect(synced, "\(serve.errorOutput)")
        serve.send(SIGTERM)
        #expect(serve.exitStatus() == 0, "\(serve.errorOutput)")
    }

    /// The daemon is killed with SIGKILL (supervisor and worker) while systemd holds its fanotify group in
    /// the descriptor store: the stub stays marked, so a reader waits, and the next daemon, handed the
    /// group in `$LISTEN_FDS`, answers the reader with the stub's exact bytes, never zeros.
    @Test func aStubReadAcrossAKilledDaemonWaitsForTheNextOneAndReadsItsExactBytes() async throws {
        let (group, content) = try await tieredGroup(size: 2 << 20, seed: 91)
        guard PreContentMonitor.isSupported(at: group.root(0)) else {
            Issue.record("fanotify pre-content events are unavailable here (Linux ≥ 6.14, CAP_SYS_ADMIN, ext4/xfs/btrfs needed): the descriptor store test cannot run")
            return
        }
        group.release()
        let state = group.scratch.path + "/state0", path = group.root(0) + "/big.bin", logs = group.scratch.path
        let systemd = try FakeSystemd(path: group.scratch.path + "/notify")
        defer { systemd.stop() }
        let first = try TiergateProcess(["serve", "--state-dir", state, "--poll-interval", "0.2"], logs: logs,
                                        environment: ["NOTIFY_SOCKET": systemd.socketName])
        defer { if first.process.isRunning { first.send(SIGKILL) } }
        #expect(systemd.waitFor { $0.fields["READY"] == "1" }.count == 1, "\(first.errorOutput)")
        let stored = systemd.waitFor { $0.fields["FDSTORE"] == "1" && $0.fields["FDNAME"] == "fanotify-1" }
        guard let storedGroup = stored.first?.descriptors.first, stored.first?.descriptors.count == 1 else {
            Issue.record("no fanotify group reached the descriptor store: \(systemd.messages.map(\.text)) \(first.errorOutput)")
            return
        }
        var link = [CChar](repeating: 0, count: 256)
        _ = readlink("/proc/self/fd/\(storedGroup)", &link, 255)
        #expect(String(cString: link) == "anon_inode:[fanotify]")
        #expect(try runTiergate(["tier", path, "--state-dir", state]) == 0)
        #expect(StubFile.marker(atPath: path) == .tiered)

        first.send(SIGKILL)
        first.process.waitUntilExit()
        let reader = BlockedRead(path)
        usleep(1_000_000)
        #expect(!reader.isDone, "with the group held and nobody answering, a reader of the stub waits")

        // The next daemon, started as systemd starts it: the stored group at descriptor 3.
        let logPath = logs + "/second.log"
        let next = try Self.spawnWithPassedDescriptor(storedGroup, name: "fanotify-1", arguments: ["serve", "--state-dir", state, "--poll-interval", "0.2"],
                                                      environment: ["NOTIFY_SOCKET": systemd.socketName], log: logPath)
        defer {
            kill(next, SIGTERM)
            var status: Int32 = 0
            waitpid(next, &status, 0)
        }
        let deadline = Date().addingTimeInterval(30)
        while !reader.isDone && Date() < deadline { usleep(50_000) }
        let log = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        if !reader.isDone {
            Issue.record("the waiting reader was never answered: \(log)")
            close(storedGroup)   // lets the reader go (the kernel allows its access when the group closes)
            return
        }
        let bytes = reader.result
        let exact = bytes == content
        #expect(exact, "the stub read \(bytes?.count ?? -1) bytes, first difference at \(bytes.flatMap { got in zip(got, content).enumerated().first { $0.element.0 != $0.element.1 }?.offset } ?? -1)")
        #expect(log.contains("fanotify group taken over from the descriptor store"), "\(log)")
    }

    /// Starts `tiergate arguments…` the way systemd passes a stored descriptor: at descriptor 3, named in
    /// `$LISTEN_FDNAMES`, with `$LISTEN_PID` naming the new process (a shell sets it, then execs).
    static func spawnWithPassedDescriptor(_ descriptor: Int32, name: String, arguments: [String], environment: [String: String],
                                          log: String) throws -> pid_t {
        let output = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        defer { close(output) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, descriptor, 3)
        posix_spawn_file_actions_adddup2(&actions, output, 1)
        posix_spawn_file_actions_adddup2(&actions, output, 2)
        let script = "LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=\(name) exec \"$0\" \"$@\""
        let argv = (["/bin/sh", "-c", script, try tiergateExecutable()] + arguments).map { strdup($0) } + [nil]
        let envp = ProcessInfo.processInfo.environment.merging(environment) { $1 }.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, "/bin/sh", &actions, nil, argv, envp)
        guard result == 0 else { throw PosixErrorForTests("posix_spawn /bin/sh", result) }
        return pid
    }
}

/// A whole-file read on a thread of its own, which the test can watch wait.
final class BlockedRead: Sendable {
    private let state = Mutex<(done: Bool, bytes: [UInt8]?)>((false, nil))

    init(_ path: String) {
        Thread { [self] in
            let bytes = try? readAll(path)
            state.withLock { $0 = (true, bytes) }
        }.start()
    }

    var isDone: Bool { state.withLock { $0.done } }
    var result: [UInt8]? { state.withLock { $0.bytes } }
}
