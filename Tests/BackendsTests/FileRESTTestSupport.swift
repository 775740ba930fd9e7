@testable import Backends
import Foundation
import Testing

/// Helpers of the FileREST tests, in one namespace so they cannot collide with other suites' helpers.
enum FileRESTTestKit {
    /// The repository's `Tests` directory, found from this file so tests run from any working directory.
    static let testsDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()

    /// Runs `python3 <script> <arguments>` with `input` on stdin and returns its stdout.
    ///
    /// Throws a sentence, not a skip, when python3 is missing or the script fails: these tests prove the
    /// FileREST store against the official SDK and the emulator, and must not pass silently without them.
    static func runPython(_ script: String, _ arguments: [String] = [], input: Data = Data()) throws -> Data {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", testsDirectory.appendingPathComponent(script).path] + arguments
        let stdin = Pipe(), stdout = Pipe(), stderr = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        process.standardError = stderr
        do {
            try process.run()
        } catch {
            throw FileRESTTestFailure("python3 could not be started (\(error)); install Python 3 and run scripts/setup")
        }
        // Feed stdin on its own thread so a large input cannot deadlock against a full stdout pipe.
        let writer = Thread {
            stdin.fileHandleForWriting.write(input)
            try? stdin.fileHandleForWriting.close()
        }
        writer.start()
        let output = stdout.fileHandleForReading.readDataToEndOfFile()
        let errors = stderr.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw FileRESTTestFailure("python3 \(script) exited with \(process.terminationStatus): "
                                + String(decoding: errors, as: UTF8.self).suffix(2000)
                                + " (missing packages? run scripts/setup)")
        }
        return output
    }

    /// A deterministic generator (SplitMix64), so generated test inputs are the same on every run.
    struct SeededGenerator: RandomNumberGenerator {
        private var state: UInt64
        init(seed: UInt64) { state = seed }

        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }
}

/// A failure to run a Python helper, said in a sentence.
struct FileRESTTestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A FileREST emulator (`Tests/FileRESTEmulator/filerest_emulator.py`) on a free loopback port, with a fresh
/// account key, stopped when the value goes away.
///
/// `@unchecked Sendable`: the process handle is only touched in `init` and `stop`, which runs once.
final class FileRESTEmulator: @unchecked Sendable {
    /// The account endpoint, `http://127.0.0.1:PORT/ACCOUNT`.
    let endpoint: String
    let account = "tiergatetest"
    /// The account key, base64.
    let key: String
    private let process: Process
    private let stdin = Pipe()

    init() throws {
        key = Data((0..<64).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
        process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", FileRESTTestKit.testsDirectory.appendingPathComponent("FileRESTEmulator/filerest_emulator.py").path,
                             "--port", "0", "--account", account, "--key", key, "--exit-with-stdin"]
        let stdout = Pipe()
        process.standardOutput = stdout
        // The emulator exits when this pipe closes: at deinit, or when the test process dies.
        process.standardInput = stdin
        do {
            try process.run()
        } catch {
            throw FileRESTTestFailure("python3 could not be started for the FileREST emulator (\(error)); install Python 3")
        }
        // The emulator prints one line with its address once it listens.
        var line = Data()
        while !line.contains(UInt8(ascii: "\n")) {
            let chunk = stdout.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            line += chunk
        }
        let text = String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard text.hasPrefix("FileREST emulator listening on "), let address = text.split(separator: " ").last else {
            try? stdin.fileHandleForWriting.close()
            throw FileRESTTestFailure("the FileREST emulator did not start (it said '\(text)')")
        }
        endpoint = String(address)
    }

    deinit {
        try? stdin.fileHandleForWriting.close()
        process.waitUntilExit()
    }

    /// Makes the next `count` service requests (of `operation`, when named) fail with `status` and error
    /// `code`; with `afterApplying`, each request takes effect first and only its answer is lost.
    func injectFaults(count: Int, status: Int = 503, code: String = "ServerBusy", operation: String? = nil,
                      afterApplying: Bool = false) async throws {
        let url = endpoint.replacingOccurrences(of: "/" + account, with: "")
            + "/_emulator/fail?count=\(count)&status=\(status)&code=\(code)"
            + (operation.map { "&operation=" + $0 } ?? "") + (afterApplying ? "&after=1" : "")
        let response = try await HTTPClient().execute(HTTPRequest(method: "GET", url: url))
        #expect(response.status == 200)
    }

    /// The shared-key signer of the emulator's account.
    var signer: SharedKeySigner { SharedKeySigner(account: account, base64Key: key)! }

    /// A store on `share` (created if missing) under `prefix`, signed with the account key unless `credentials`
    /// are given.
    func store(share: String = "share-" + String(UInt32.random(in: 0...UInt32.max), radix: 16), prefix: String = "",
               credentials: FileRESTCredentials? = nil, client: HTTPClient? = nil, retry: RetryPolicy = RetryPolicy(),
               listPageSize: Int = 5000) async throws -> FileRESTStore {
        let location = try FileRESTLocation(account: account, share: share, prefix: prefix, endpoint: endpoint)
        let admin = try FileRESTStore(location: location, credentials: .sharedKey(signer))
        try await admin.createShare()
        return try FileRESTStore(location: location, credentials: credentials ?? .sharedKey(signer), client: client,
                                 retry: retry, listPageSize: listPageSize)
    }
}
