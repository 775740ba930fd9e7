import ArgumentParser
import Foundation
import Gateway
import Glibc

struct InstallServiceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "install-service",
        abstract: "Write the systemd unit that runs `tiergate serve` for this server's endpoints (hardened: only the state directory and the endpoints are writable)."
    )
    @OptionGroup var state: StateOptions
    @Option(help: "Where to write the unit.") var output: String = SystemdUnit.standardOutput
    @Option(help: "The tiergate executable the unit starts (default: this one).") var binary: String?
    @Flag(help: "Then run `systemctl daemon-reload` and `systemctl enable --now` for the unit.") var enable = false

    func validate() throws {
        guard output.hasSuffix(".service") else { throw ValidationError("--output must name a .service file") }
        if let binary, !binary.hasPrefix("/") { throw ValidationError("--binary must be an absolute path") }
    }

    func run() throws {
        do {
            // The unit names absolute paths: systemd starts the daemon from /.
            let directory = StateDirectory(path: URL(fileURLWithPath: state.directory.path).standardizedFileURL.path)
            let unit = try SystemdUnit(directory: directory, binary: binary ?? Self.runningExecutable())
            try unit.write(to: output)
            print("wrote \(output) (\(unit.endpoints.count) endpoint\(unit.endpoints.count == 1 ? "" : "s"), state directory \(directory.path))")
            guard enable else { return }
            let name = URL(fileURLWithPath: output).lastPathComponent
            for arguments in [["daemon-reload"], ["enable", "--now", name]] {
                let status = try Self.systemctl(arguments)
                guard status == 0 else { throw GatewayError("systemctl \(arguments.joined(separator: " ")) failed with status \(status)") }
            }
            print("enabled and started \(name)")
        } catch {
            throw fail(error)
        }
    }

    /// The path of this executable (not a symlink to it, nor /proc/self/exe).
    static func runningExecutable() throws -> String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard count > 0 else { throw GatewayError("cannot tell where this tiergate executable is; pass --binary") }
        return String(decoding: buffer.prefix(count).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func systemctl(_ arguments: [String]) throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["systemctl"] + arguments
        try process.run()
        process.waitUntilExit()
        return process.terminationStatus
    }
}
