import Backends
import Foundation
import Glibc
import Synchronization

/// The object-store servers the remote sync tests run against, each started once per test process on a
/// free loopback port: moto with IAM signature checking (`Tests/support/s3_moto_server.py`) and the
/// FileREST emulator (`Tests/FileRESTEmulator/filerest_emulator.py`).
///
/// The stores read their credentials from the environment, as `tiergate` does, so each server's keys are
/// exported with `setenv` once, before any store of that kind is opened. A missing `python3` or Python
/// package makes the first test that needs the server fail with the remedy; nothing is skipped.
enum RemoteServers {
    /// The repository's `Tests` directory.
    static let testsDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().path

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// An `s3://` URL of a fresh prefix in moto's test bucket.
    static func freshS3URL() async throws -> String {
        let moto = try await sharedMoto.value
        return "s3://\(moto.bucket)/sync-\(UUID().uuidString.prefix(8).lowercased())?endpoint=\(moto.endpoint)&region=\(moto.region)"
    }

    /// The requests moto has served for the share at `url` (a URL from ``freshS3URL()``), by method and
    /// kind of object: `"GET packs"`, `"PUT log"`, … (see `Tests/support/s3_moto_server.py`).
    static func s3RequestCounts(_ url: String) async throws -> [String: Int] {
        let moto = try await sharedMoto.value
        let share = url.dropFirst("s3://".count).prefix { $0 != "?" }
        let response = try await HTTPClient().execute(HTTPRequest(method: "GET", url: "\(moto.endpoint)/__requests?prefix=\(share)"))
        guard response.status == 200, let counts = try? JSONDecoder().decode([String: Int].self, from: Data(response.body)) else {
            throw Failure(description: "moto's request counter answered HTTP \(response.status)")
        }
        return counts
    }

    /// A `filerest://` URL of a fresh, existing file share on the emulator.
    static func freshFileRESTURL() async throws -> String {
        let endpoint = try await sharedEmulator.value
        let url = "filerest://\(emulatorAccount)/sync-\(UUID().uuidString.prefix(8).lowercased())/cloud?endpoint=\(endpoint)"
        try await FileRESTStore(url: url).createShare()
        return url
    }

    private struct Moto: Sendable {
        var endpoint: String
        var region: String
        var bucket: String
    }

    private static let sharedMoto = Task<Moto, any Error> {
        let line = try await ServerProcess.start([testsDirectory + "/support/s3_moto_server.py"], name: "moto (s3_moto_server.py)")
        guard let json = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
              let endpoint = json["endpoint"] as? String, let region = json["region"] as? String, let bucket = json["bucket"] as? String,
              let keyID = json["accessKeyId"] as? String, let secret = json["secretAccessKey"] as? String else {
            throw Failure(description: "the moto helper printed '\(line)' instead of its endpoint and keys")
        }
        // The IAM user's keys, exactly as a user of `tiergate` would export them.
        setenv("AWS_ACCESS_KEY_ID", keyID, 1)
        setenv("AWS_SECRET_ACCESS_KEY", secret, 1)
        unsetenv("AWS_SESSION_TOKEN")
        return Moto(endpoint: endpoint, region: region, bucket: bucket)
    }

    private static let emulatorAccount = "tiergatesync"

    private static let sharedEmulator = Task<String, any Error> {
        let key = Data((0..<64).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
        let line = try await ServerProcess.start([testsDirectory + "/FileRESTEmulator/filerest_emulator.py", "--port", "0",
                                                  "--account", emulatorAccount, "--key", key, "--exit-with-stdin"],
                                                 name: "the FileREST emulator")
        let prefix = "FileREST emulator listening on "
        guard line.hasPrefix(prefix) else { throw Failure(description: "the FileREST emulator printed '\(line)' instead of its address") }
        setenv("AZURE_STORAGE_KEY", key, 1)
        return String(line.dropFirst(prefix.count))
    }
}

/// A Python server run as a child for the rest of the test process: it exits when its stdin closes, which
/// happens when this process ends, however it ends.
private enum ServerProcess {
    /// Children kept alive (and their stdin open) until the process exits.
    private static let running = Mutex<[(Process, Pipe)]>([])

    /// Starts `python3 -u arguments` and returns the first line it prints; throws with its stderr when it
    /// exits or stays silent for two minutes instead.
    static func start(_ arguments: [String], name: String) async throws -> String {
        // Reading the pipe blocks, so it happens on a thread of its own, not on the Swift concurrency pool.
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread { continuation.resume(with: Result { try startBlocking(arguments, name: name) }) }
        }
    }

    private static func startBlocking(_ arguments: [String], name: String) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-u"] + arguments
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
            throw RemoteServers.Failure(description: "cannot start python3 for \(name) (\(error)); install Python 3 and run scripts/setup")
        }
        let watchdog = DispatchWorkItem { process.terminate() }
        DispatchQueue.global().asyncAfter(deadline: .now() + 120, execute: watchdog)
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
            let errors = (try? String(contentsOfFile: errorPath, encoding: .utf8)) ?? ""
            throw RemoteServers.Failure(description: "\(name) did not start (status \(process.terminationStatus)): \(errors.suffix(1500)) — run scripts/setup (it installs python3's moto[server], botocore and werkzeug)")
        }
        running.withLock { $0.append((process, input)) }
        return String(decoding: line, as: UTF8.self)
    }
}
