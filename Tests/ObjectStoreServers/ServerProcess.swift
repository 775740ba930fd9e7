import Foundation
import Synchronization

/// Why a test server could not be started or used, in a sentence that names the server.
public struct ServerFailure: Error, CustomStringConvertible {
    public var description: String

    public init(_ description: String) { self.description = description }
}

/// A server run as a child for the rest of the test process: a helper that prints one line once it
/// serves, then exits when its stdin closes, which happens when this process ends, however it ends.
public enum ServerProcess {
    /// Children kept alive (and their stdin open) until the process exits.
    private static let running = Mutex<[(Process, Pipe)]>([])

    /// Starts `command` (an executable on `PATH` and its arguments) and returns the first line it prints;
    /// throws, naming `name` and quoting the tail of its stderr and `remedy`, when it exits or stays silent
    /// for `timeout` seconds instead.
    public static func start(_ command: [String], name: String, remedy: String, timeout: Double = 120) async throws -> String {
        // Reading the pipe blocks, so it happens on a thread of its own, not on the Swift concurrency pool.
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread {
                continuation.resume(with: Result { try startBlocking(command, name: name, remedy: remedy, timeout: timeout) })
            }
        }
    }

    private static func startBlocking(_ command: [String], name: String, remedy: String, timeout: Double) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = command
        let input = Pipe(), output = Pipe()
        // stderr goes to a file: a pipe nobody drains would stall a chatty server.
        let errorPath = NSTemporaryDirectory() + "tiergate-server-\(UUID().uuidString).err"
        _ = FileManager.default.createFile(atPath: errorPath, contents: nil)
        defer { try? FileManager.default.removeItem(atPath: errorPath) }
        process.standardInput = input
        process.standardOutput = output
        process.standardError = FileHandle(forWritingAtPath: errorPath)
        do {
            try process.run()
        } catch {
            throw ServerFailure("cannot start \(name) (\(command.joined(separator: " "))): \(error) — \(remedy)")
        }
        let watchdog = DispatchWorkItem { process.terminate() }
        DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: watchdog)
        var line = Data()
        while true {
            let byte = output.fileHandleForReading.readData(ofLength: 1)
            if byte.isEmpty || byte == Data([10]) { break }
            line.append(byte)
        }
        watchdog.cancel()
        guard !line.isEmpty else {
            process.terminate()
            process.waitUntilExit()
            // The helper's reason comes first, its logs' tails after it: keep both ends of a long account.
            let errors = ((try? String(contentsOfFile: errorPath, encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
            let shown = errors.count <= 4000 ? errors : errors.prefix(1000) + "\n…\n" + errors.suffix(3000)
            throw ServerFailure("\(name) did not start (status \(process.terminationStatus)): \(shown)\n— \(remedy)")
        }
        running.withLock { $0.append((process, input)) }
        return String(decoding: line, as: UTF8.self)
    }
}
