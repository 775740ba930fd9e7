import Fanotify
import Foundation
@testable import Gateway
import Glibc
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
}
