import Backends
import Foundation
import Synchronization

/// Servers the S3 tests run against, started on loopback as child processes: moto (a real S3
/// implementation with signature checking) and a fault-injecting proxy in front of it.
///
/// Children read their stdin until it closes and ask the kernel to kill them when this process dies,
/// so none outlive the test run, even when it crashes.
enum TestServers {
    /// The folder of the Python helpers.
    static let supportDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("support").path

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// Runs blocking work (waiting for a process) on its own thread, so that the few threads of the
    /// Swift concurrency pool stay free for the tests running in parallel.
    static func offPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread { continuation.resume(with: Result { try body() }) }
        }
    }

    /// What the moto helper reports once it serves.
    struct Moto: Sendable {
        var endpoint: String
        var port: Int
        var region: String
        var bucket: String
        /// An IAM user's keys (policy: s3:*).
        var credentials: S3Credentials
        /// The IAM user's secret, for tests that pass it through the environment or a file.
        var secretAccessKey: String
        /// Temporary keys of a role assumed through STS, with a session token.
        var sessionCredentials: S3Credentials

        /// A URL for a fresh prefix of the test bucket, through `port` (moto's own or a proxy's).
        func url(prefix: String = "t-" + UUID().uuidString.prefix(8).lowercased(), port: Int? = nil, scheme: String = "http") -> String {
            "s3://\(bucket)/\(prefix)?endpoint=\(scheme)://127.0.0.1:\(port ?? self.port)&region=\(region)"
        }
    }

    /// The one moto server of this test process, started on first use.
    static func moto() async throws -> Moto {
        try await sharedMoto.value
    }

    private static let sharedMoto = Task<Moto, any Error> {
        try await requirePython(modules: ["moto", "botocore", "werkzeug"])
        let child = try ChildProcess(arguments: [supportDirectory + "/s3_moto_server.py"])
        let line = try await child.firstLine(timeout: 120)
        guard let json = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
              let endpoint = json["endpoint"] as? String, let port = json["port"] as? Int,
              let session = json["session"] as? [String: String] else {
            throw Failure(description: "the moto helper printed '\(line)'; stderr: \(child.standardError())")
        }
        keepAlive.withLock { $0.append(child) }
        return Moto(endpoint: endpoint, port: port, region: json["region"] as! String, bucket: json["bucket"] as! String,
                    credentials: S3Credentials(accessKeyId: json["accessKeyId"] as! String, secretAccessKey: json["secretAccessKey"] as! String),
                    secretAccessKey: json["secretAccessKey"] as! String,
                    sessionCredentials: S3Credentials(accessKeyId: session["accessKeyId"]!, secretAccessKey: session["secretAccessKey"]!,
                                                      sessionToken: session["sessionToken"]!))
    }

    /// Children that live as long as the test process.
    private static let keepAlive = Mutex<[ChildProcess]>([])

    /// Fails, with the remedy, unless `python3` can import `modules`.
    static func requirePython(modules: [String]) async throws {
        try await offPool { try requirePythonBlocking(modules: modules) }
    }

    private static func requirePythonBlocking(modules: [String]) throws {
        let probe = Process()
        probe.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        probe.arguments = ["python3", "-c", "import " + modules.joined(separator: ", ")]
        probe.standardOutput = FileHandle.nullDevice
        probe.standardError = FileHandle.nullDevice
        do {
            try probe.run()
            probe.waitUntilExit()
        } catch {
            throw Failure(description: "python3 is not available (\(error)); run scripts/setup to install the S3 test servers")
        }
        guard probe.terminationStatus == 0 else {
            throw Failure(description: "python3 cannot import \(modules.joined(separator: ", ")); run scripts/setup (it installs moto[server] and botocore from PyPI)")
        }
    }

    /// A fault-injecting proxy in front of moto, with the helper's command-line options
    /// (`--rate`, `--kinds`, `--stall-seconds`, `--fail-query`, …). Stops when the value is released.
    static func faultProxy(_ options: [String], tls: Certificate? = nil) async throws -> FaultProxy {
        let moto = try await moto()
        let tlsOptions = tls.map { ["--tls-cert", $0.certificatePath, "--tls-key", $0.keyPath] } ?? []
        let child = try ChildProcess(arguments: [supportDirectory + "/s3_fault_proxy.py", "--upstream", "127.0.0.1:\(moto.port)"] + options + tlsOptions)
        let line = try await child.firstLine(timeout: 30)
        guard let json = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], let port = json["port"] as? Int else {
            throw Failure(description: "the fault proxy printed '\(line)'; stderr: \(child.standardError())")
        }
        return FaultProxy(child: child, port: port, moto: moto, scheme: tls == nil ? "http" : "https")
    }

    /// A self-signed certificate for 127.0.0.1 (it is its own CA), made with the openssl tool.
    struct Certificate: Sendable {
        var directory: String
        var certificatePath: String { directory + "/cert.pem" }
        var keyPath: String { directory + "/key.pem" }
    }

    static func selfSignedCertificate() async throws -> Certificate {
        try await offPool { try makeSelfSignedCertificate() }
    }

    private static func makeSelfSignedCertificate() throws -> Certificate {
        let directory = NSTemporaryDirectory() + "tiergate-tls-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                             "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", directory + "/key.pem", "-out", directory + "/cert.pem"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw Failure(description: "openssl could not make a test certificate") }
        return Certificate(directory: directory)
    }
}

/// A running fault proxy.
final class FaultProxy: Sendable {
    let child: ChildProcess
    let port: Int
    let moto: TestServers.Moto
    let scheme: String

    init(child: ChildProcess, port: Int, moto: TestServers.Moto, scheme: String) {
        self.child = child
        self.port = port
        self.moto = moto
        self.scheme = scheme
    }

    deinit { child.stop() }

    /// A URL for a fresh prefix, through the proxy.
    func url() -> String { moto.url(port: port, scheme: scheme) }

    /// The same URL as `url`, but straight to moto, for checking what really reached the server.
    func directURL(_ url: String) -> String {
        url.replacingOccurrences(of: "\(scheme)://127.0.0.1:\(port)", with: "http://127.0.0.1:\(moto.port)")
    }

    /// The proxy's counters: `requests`, `faults`, and one count per fault kind.
    func stats() async throws -> [String: Int] {
        guard scheme == "http" else { return [:] }
        let client = try HTTPClient()
        let response = try await client.execute(HTTPRequest(method: "GET", url: "http://127.0.0.1:\(port)/__proxy/stats"))
        return (try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Int]) ?? [:]
    }
}

/// A Python helper run as a child process with pipes on stdin, stdout and stderr.
final class ChildProcess: @unchecked Sendable {
    // @unchecked: Process and the pipes are only touched under `lock` or by the reader thread, which
    // owns stdout until the first line arrives.
    private let process = Process()
    private let input = Pipe()
    private let output = Pipe()
    private let errors = Pipe()
    private let lock = NSLock()
    private var stderrText = Data()

    init(arguments: [String]) throws {
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-u"] + arguments
        process.standardInput = input
        process.standardOutput = output
        process.standardError = errors
        errors.fileHandleForReading.readabilityHandler = { [weak self] handle in
            let data = handle.availableData
            guard let self, !data.isEmpty else { return }
            self.lock.withLock { if self.stderrText.count < 1 << 16 { self.stderrText.append(data) } }
        }
        try process.run()
    }

    deinit { stop() }

    /// What the child wrote to stderr so far (its first 64 KiB).
    func standardError() -> String {
        lock.withLock { String(decoding: stderrText, as: UTF8.self) }
    }

    /// The first line the child prints, read on a plain thread so no Swift concurrency thread blocks.
    func firstLine(timeout: TimeInterval) async throws -> String {
        let handle = output.fileHandleForReading
        let line: String? = await withCheckedContinuation { continuation in
            let once = Mutex(false)
            Thread.detachNewThread {
                var bytes = Data()
                while true {
                    let chunk = handle.readData(ofLength: 1)
                    if chunk.isEmpty || chunk == Data([10]) { break }
                    bytes.append(chunk)
                }
                if !once.withLock({ let was = $0; $0 = true; return was }) {
                    continuation.resume(returning: bytes.isEmpty ? nil : String(decoding: bytes, as: UTF8.self))
                }
            }
            Thread.detachNewThread {
                Thread.sleep(forTimeInterval: timeout)
                if !once.withLock({ let was = $0; $0 = true; return was }) { continuation.resume(returning: nil) }
            }
        }
        guard let line else {
            stop()
            throw TestServers.Failure(description: "\(process.arguments?.dropFirst(2).first ?? "helper") printed nothing within \(Int(timeout)) s; stderr: \(standardError())")
        }
        return line
    }

    /// Closes the child's stdin (its signal to exit) and terminates it; does not wait, because it
    /// runs from `deinit` on whatever thread released the last reference.
    func stop() {
        lock.withLock {
            try? input.fileHandleForWriting.close()
            if process.isRunning { process.terminate() }
        }
    }
}
