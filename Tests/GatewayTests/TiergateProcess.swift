import Foundation
import Gateway
import Glibc

/// A `tiergate` process started by a test, its standard output and error collected in files so that the
/// test can wait for a line while it runs (see ``tiergateExecutable()`` for how the binary is found).
final class TiergateProcess {
    let process = Process()
    let outputPath: String
    let errorPath: String

    /// Starts `tiergate arguments…`; `environment` entries are added to the test's own environment.
    init(_ arguments: [String], logs directory: String, environment: [String: String] = [:]) throws {
        let name = UUID().uuidString.prefix(8)
        outputPath = directory + "/tiergate-\(name).out"
        errorPath = directory + "/tiergate-\(name).err"
        FileManager.default.createFile(atPath: outputPath, contents: nil)
        FileManager.default.createFile(atPath: errorPath, contents: nil)
        process.executableURL = URL(fileURLWithPath: try tiergateExecutable())
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle(forWritingAtPath: outputPath)
        process.standardError = FileHandle(forWritingAtPath: errorPath)
        try process.run()
    }

    var output: String { (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "" }
    var errorOutput: String { (try? String(contentsOfFile: errorPath, encoding: .utf8)) ?? "" }

    /// Waits until `text` shows in standard output (or standard error) while the process runs; false when
    /// it exited first or `timeout` passed.
    func waitFor(_ text: String, inErrorOutput: Bool = false, timeout: Double = 30) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline && process.isRunning {
            if (inErrorOutput ? errorOutput : output).contains(text) { return true }
            usleep(20_000)
        }
        return false
    }

    /// Sends `signal`.
    func send(_ signal: Int32) { kill(process.processIdentifier, signal) }

    /// The exit status once the process has exited by itself; nil when a signal ended it, or when it
    /// still ran after `timeout` (it is then killed).
    func exitStatus(timeout: Double = 30) -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            return nil
        }
        process.waitUntilExit()
        return process.terminationReason == .exit ? process.terminationStatus : nil
    }

    /// Runs `tiergate arguments…` to its end; returns the exit status (nil: ended by a signal or killed
    /// after 60 s) and everything it printed, standard output then standard error.
    static func run(_ arguments: [String], logs directory: String, environment: [String: String] = [:]) throws
        -> (status: Int32?, output: String) {
        let child = try TiergateProcess(arguments, logs: directory, environment: environment)
        let status = child.exitStatus(timeout: 60)
        return (status, child.output + child.errorOutput)
    }

    /// Runs `tiergate arguments…` to its end and returns what it printed; throws, with that output, when
    /// it ended with another status than `status`.
    @discardableResult
    static func expect(_ status: Int32, _ arguments: [String], logs directory: String) throws -> String {
        let result = try run(arguments, logs: directory)
        guard result.status == status else {
            throw GatewayError("tiergate \(arguments.joined(separator: " ")) ended with \(result.status.map(String.init) ?? "a signal"), not \(status): \(result.output)")
        }
        return result.output
    }
}

/// What the Swift runtime, glibc and libstdc++ print when a process aborts or crashes.
let abortMessages = ["Program crashed", "Fatal error", "terminate called", "pthread ", "Bad pointer", "Segmentation fault", "Aborted"]

/// The layout most process tests start from, in a scratch directory: a `file://` share at `share/`, two
/// endpoint folders `alpha/` and `beta/`, and `logs/` for the processes' output.
struct TwoEndpoints {
    let scratch = Scratch()
    var path: String { scratch.path }
    var logs: String { path + "/logs" }
    var alpha: String { path + "/alpha" }
    var beta: String { path + "/beta" }
    var shareFolder: String { path + "/share" }
    var share: String { "file://" + shareFolder }

    init() throws {
        for directory in [logs, alpha, beta] { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) }
    }

    /// Runs `tiergate arguments…` to its end and returns its output; throws unless it exits with `status`.
    @discardableResult
    func cli(_ arguments: [String], expect status: Int32 = 0) throws -> String {
        try TiergateProcess.expect(status, arguments, logs: logs)
    }
}
