import Foundation
import Gateway
import Glibc
import Testing

/// SIGTERM stops `tiergate serve` and `tiergate mount` cleanly: the real binary, started and stopped many
/// times over, exits with status 0 and prints nothing of an abort. The database must be closed once,
/// after every thread that uses it has stopped, and before the process exits (whose static destructors
/// take RocksDB's timer and thread pools down).
@Suite(.serialized) struct ShutdownTests {
    static let cycles = 10

    /// A registered server with one endpoint on a file:// share, set up through the CLI.
    struct Server {
        let scratch = Scratch()
        var endpoint: String { scratch.path + "/endpoint" }
        var state: String { scratch.path + "/state" }
        var mountpoint: String { scratch.path + "/mnt" }
        var logs: String { scratch.path + "/logs" }

        init() throws {
            for directory in [endpoint, mountpoint, logs] {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            }
            try Data("some content\n".utf8).write(to: URL(fileURLWithPath: endpoint + "/file.txt"))
            let share = "file://" + scratch.path + "/share"
            try cli(["share", "create", share])
            try cli(["endpoint", "add", endpoint, "--share", share, "--state-dir", state, "--server-name", "alpha"])
            try cli(["sync", "--state-dir", state])
        }

        func cli(_ arguments: [String]) throws {
            let result = try TiergateProcess.run(arguments, logs: logs)
            guard result.status == 0 else { throw GatewayError("tiergate \(arguments.joined(separator: " ")) failed: \(result.output)") }
        }
    }

    @Test func serveExitsWithStatusZeroOnSIGTERMEveryTime() throws {
        let server = try Server()
        // With tiering on, serve also runs the fanotify monitor (where the kernel offers it) and its workers.
        try server.cli(["endpoint", "tiering", server.endpoint, "--state-dir", server.state, "--free-space", "0"])
        for cycle in 1...Self.cycles {
            let serve = try TiergateProcess(["serve", "--state-dir", server.state, "--poll-interval", "0.1"], logs: server.logs)
            let ready = serve.waitFor("watching endpoint", inErrorOutput: true)
            #expect(ready, "cycle \(cycle): serve did not start: \(serve.errorOutput)")
            usleep(UInt32(100_000 * (cycle % 4)))   // stop at different points of the loop
            serve.send(SIGTERM)
            let status = serve.exitStatus()
            let stderr = serve.errorOutput
            #expect(status == 0, "cycle \(cycle): serve ended with \(status.map(String.init) ?? "a signal"): \(stderr)")
            #expect(!abortMessages.contains { stderr.contains($0) }, "cycle \(cycle): \(stderr)")
            #expect(stderr.contains("stopped"), "cycle \(cycle): \(stderr)")
            if status != 0 { break }
        }
    }

    @Test func mountAnnouncesItselfAtOnceAndExitsWithStatusZeroOnSIGTERMEveryTime() throws {
        try requireFUSE()
        let server = try Server()
        for cycle in 1...Self.cycles {
            let mount = try TiergateProcess(["mount", server.endpoint, server.mountpoint, "--state-dir", server.state], logs: server.logs)
            // Standard output is a file here: the line must be there while the mount runs, not at exit.
            let announced = mount.waitFor("mounted endpoint")
            #expect(announced, "cycle \(cycle): no 'mounted endpoint' line while mounted; stdout: \(mount.output) stderr: \(mount.errorOutput)")
            if announced {
                #expect((try? String(contentsOfFile: server.mountpoint + "/file.txt", encoding: .utf8)) == "some content\n")
            }
            usleep(UInt32(50_000 * (cycle % 4)))
            mount.send(SIGTERM)
            let status = mount.exitStatus()
            let stderr = mount.errorOutput
            #expect(status == 0, "cycle \(cycle): mount ended with \(status.map(String.init) ?? "a signal"): \(stderr)")
            #expect(!abortMessages.contains { stderr.contains($0) }, "cycle \(cycle): \(stderr)")
            #expect(mount.output.contains("unmounted"), "cycle \(cycle): \(mount.output)")
            #expect(!isMountPoint(server.mountpoint), "cycle \(cycle): still mounted")
            if status != 0 || !announced { break }
        }
    }

    /// Whether something is mounted at `path` (by /proc/self/mountinfo).
    func isMountPoint(_ path: String) -> Bool {
        let resolved = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
        let table = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? ""
        return table.split(separator: "\n").contains { $0.split(separator: " ").dropFirst(4).first.map(String.init) == resolved }
    }

    /// Mount tests need the FUSE device and the right to mount; without them the test fails with the reason.
    func requireFUSE() throws {
        guard access("/dev/fuse", R_OK | W_OK) == 0 else {
            throw GatewayError("/dev/fuse is not usable here: the mount shutdown test cannot run")
        }
        guard geteuid() == 0 || access("/usr/bin/fusermount3", X_OK) == 0 else {
            throw GatewayError("neither root nor fusermount3: the mount shutdown test cannot mount")
        }
    }
}
