import Backends
import CloudShare
import Foundation
import Gateway
import Glibc

/// The initial upload of a server endpoint (one sync pass through the Gateway library, in process) to a
/// share on `file://`, on S3 (moto) and on FileREST (the project's emulator), beside `rclone copy` of the
/// same trees to a local folder and to the same moto server.
///
/// Both servers run on loopback, started here, with a request counter wrapped around their HTTP handler,
/// so Tiergate's and rclone's requests are counted the same way, at the server. Before measuring, a few
/// direct store calls check that counter against the transport's own (`HTTPClient.requestCount`).
enum BackendBench {
    static let group = BenchGroup(name: "backends", summary: "sync upload of 10,000 × 4 KiB and 1 GiB of large files to file://, S3 (moto) and FileREST (emulator); files/s, MB/s, requests/file beside rclone") { table in
        try await run(table)
    }

    /// The repository, found from this file, for the Python servers the tests use too.
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    /// One tree to upload.
    struct Workload {
        var label: String
        var tree: String
        var files: Int
        var bytes: Int64
        /// `small` or `large`: names its shares, prefixes and folders.
        var tag: String
    }

    /// Wall time of one upload and the requests the server saw during it (nil on `file://`).
    struct Measurement {
        var seconds: Double
        var requests: Int?
    }

    static func run(_ table: BenchTable) async throws {
        let smallCount = BenchFiles.setting("TIERGATE_BENCH_BACKEND_FILES", 10_000)
        let largeMiB = BenchFiles.setting("TIERGATE_BENCH_BACKEND_LARGE_MIB", 1024)
        let runs = max(1, BenchFiles.setting("TIERGATE_BENCH_BACKEND_RUNS", 3))
        let root = BenchFiles.fresh("backends")
        defer { try? FileManager.default.removeItem(atPath: root) }

        let moto = try CountedServer.moto(repository: repository, log: root + "/moto.log")
        let emulator = try CountedServer.fileRESTEmulator(repository: repository, log: root + "/emulator.log")
        // The stores read credentials from the environment, as `tiergate` does.
        setenv("AWS_ACCESS_KEY_ID", moto.accessKeyID, 1)
        setenv("AWS_SECRET_ACCESS_KEY", moto.secretAccessKey, 1)
        unsetenv("AWS_SESSION_TOKEN")
        setenv("AZURE_STORAGE_KEY", emulator.accountKey, 1)
        try await checkCounters(moto: moto, emulator: emulator)
        let rclone = BenchFiles.which("rclone")

        let small = root + "/small", large = root + "/large"
        try FileManager.default.createDirectory(atPath: small, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: large, withIntermediateDirectories: true)
        BenchFiles.smallFiles(at: small, count: smallCount, size: 4096)
        BenchFiles.largeFiles(at: large, count: 8, size: (largeMiB << 20) / 8)
        let workloads = [
            Workload(label: "\(smallCount) × 4 KiB", tree: small, files: smallCount, bytes: Int64(smallCount) * 4096, tag: "small"),
            Workload(label: "\(largeMiB) MiB in 8 files", tree: large, files: 8, bytes: Int64((largeMiB << 20) / 8 * 8), tag: "large"),
        ]

        for work in workloads {
            let local = try await fastest(runs: runs, [
                { run in try await upload(work, to: "file://\(root)/share-\(work.tag)-\(run)", state: root + "/state-\(work.tag)-\(run)", server: nil) },
                { run in try await rclone.asyncMap { try await rcloneCopy($0, work, to: root + "/rclone-\(work.tag)-\(run)", moto: moto, server: nil) } },
            ])
            add(table, work, backend: "file://", local[0]!, peer: local[1], peerName: "rclone copy to a local folder")

            let s3 = try await fastest(runs: runs, [
                { run in
                    let url = "s3://\(moto.bucket)/tiergate-\(work.tag)-\(run)?endpoint=\(moto.endpoint)&region=\(moto.region)"
                    return try await upload(work, to: url, state: root + "/state-\(work.tag)-\(run)", server: moto)
                },
                { run in try await rclone.asyncMap { try await rcloneCopy($0, work, to: "moto:\(moto.bucket)/rclone-\(work.tag)-\(run)", moto: moto, server: moto) } },
            ])
            add(table, work, backend: "S3 (moto)", s3[0]!, peer: s3[1], peerName: "rclone copy to the same moto")
            // The same tree through `tiergate migrate`'s engine (parallel readers, batched commits).
            let migrated = try await fastest(runs: runs, [
                { run in
                    let url = "s3://\(moto.bucket)/tiergate-migrate-\(work.tag)-\(run)?endpoint=\(moto.endpoint)&region=\(moto.region)"
                    return try await migrate(work, to: url, server: moto)
                },
            ])
            add(table, work, backend: "S3 (moto) by migrate", migrated[0]!, peer: s3[1], peerName: "rclone copy to the same moto", operation: "migrate")

            let fileREST = try await fastest(runs: runs, [
                { run in
                    let url = "filerest://\(emulator.account)/bench-\(work.tag)-\(run)/cloud?endpoint=\(emulator.endpoint)"
                    try await FileRESTStore(url: url).createShare()
                    return try await upload(work, to: url, state: root + "/state-\(work.tag)-\(run)", server: emulator)
                },
            ])
            add(table, work, backend: "FileREST (emulator)", fileREST[0]!, peer: nil, peerName: "none: rclone \(rcloneVersion(rclone)) has no Azure Files backend")
        }
        if rclone == nil { FileHandle.standardError.write(Data("backends: rclone is not installed (scripts/setup installs it); peer figures are missing\n".utf8)) }
    }

    /// Runs the contenders in turn, `runs` rounds (interleaved, so that background load on the machine hits
    /// them alike), and keeps each one's fastest run; a contender that returns nil (a missing peer) stays nil.
    static func fastest(runs: Int, _ contenders: [(Int) async throws -> Measurement?]) async throws -> [Measurement?] {
        var best = [Measurement?](repeating: nil, count: contenders.count)
        for run in 0..<runs {
            for (index, contender) in contenders.enumerated() {
                guard let measured = try await contender(run) else { continue }
                if best[index].map({ measured.seconds < $0.seconds }) ?? true { best[index] = measured }
            }
        }
        return best
    }

    /// One sync pass of a new endpoint on `work.tree` into a new share at `url`: the initial upload. The
    /// state directory (and a `file://` share) are removed afterwards.
    static func upload(_ work: Workload, to url: String, state: String, server: CountedServer?) async throws -> Measurement {
        defer {
            try? FileManager.default.removeItem(atPath: state)
            if url.hasPrefix("file://") { try? FileManager.default.removeItem(atPath: String(url.dropFirst("file://".count))) }
        }
        _ = try await CloudShare.create(in: StoreLocator.open(url))
        let gateway = try Gateway(directory: StateDirectory(path: state), serverName: "bench")
        let endpoint = try await gateway.addEndpoint(path: work.tree, shareURL: url)
        BenchFiles.settle()
        let before = try await server?.requests()
        let started = Date()
        let report = try await gateway.sync(endpoint)
        let seconds = Date().timeIntervalSince(started)
        let after = try await server?.requests()
        guard report.result == "success", report.uploaded >= work.files else {
            throw BenchError("sync to \(StoreLocator.redacted(url)) uploaded \(report.uploaded) of \(work.files) files: \(report.result)")
        }
        return Measurement(seconds: seconds, requests: after.flatMap { after in before.map { after - $0 } })
    }

    /// `tiergate migrate`'s engine copying `work.tree` into a new share at `url` (no checkpoint).
    static func migrate(_ work: Workload, to url: String, server: CountedServer?) async throws -> Measurement {
        let share = try await CloudShare.create(in: StoreLocator.open(url))
        BenchFiles.settle()
        let before = try await server?.requests()
        let started = Date()
        let report = try await Migration.run(source: work.tree, share: share)
        let seconds = Date().timeIntervalSince(started)
        let after = try await server?.requests()
        guard report.copied == work.files else {
            throw BenchError("migrate to \(StoreLocator.redacted(url)) copied \(report.copied) of \(work.files) files")
        }
        return Measurement(seconds: seconds, requests: after.flatMap { after in before.map { after - $0 } })
    }

    /// `rclone copy` of `work.tree` to `destination`: a local folder (removed afterwards) or the `moto:`
    /// remote, configured through the environment. With default flags but 16 transfers and checkers, as
    /// many as Tiergate's HTTP client runs at once.
    static func rcloneCopy(_ rclone: String, _ work: Workload, to destination: String, moto: CountedServer, server: CountedServer?) async throws -> Measurement {
        var environment = ProcessInfo.processInfo.environment
        // A CA bundle meant for HTTPS makes rclone's S3 client refuse to start, even for plain HTTP.
        environment["AWS_CA_BUNDLE"] = nil
        environment.merge([
            "RCLONE_CONFIG_MOTO_TYPE": "s3", "RCLONE_CONFIG_MOTO_PROVIDER": "Other",
            "RCLONE_CONFIG_MOTO_ACCESS_KEY_ID": moto.accessKeyID, "RCLONE_CONFIG_MOTO_SECRET_ACCESS_KEY": moto.secretAccessKey,
            "RCLONE_CONFIG_MOTO_ENDPOINT": moto.endpoint, "RCLONE_CONFIG_MOTO_REGION": moto.region,
            "RCLONE_CONFIG_MOTO_FORCE_PATH_STYLE": "true",
        ]) { $1 }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: rclone)
        process.arguments = ["copy", work.tree, destination, "--config", "/dev/null", "--transfers", "16", "--checkers", "16"]
        process.environment = environment
        let errors = Pipe()
        process.standardOutput = FileHandle.nullDevice
        process.standardError = errors
        BenchFiles.settle()
        let before = try await server?.requests()
        let started = Date()
        try process.run()
        let message = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let seconds = Date().timeIntervalSince(started)
        let after = try await server?.requests()
        guard process.terminationStatus == 0 else {
            throw BenchError("rclone copy to \(destination) failed: \(String(decoding: message, as: UTF8.self).suffix(500))")
        }
        if server == nil { try? FileManager.default.removeItem(atPath: destination) }
        return Measurement(seconds: seconds, requests: after.flatMap { after in before.map { after - $0 } })
    }

    /// rclone's version (`v1.60.1-DEV`), for the note on the missing FileREST peer.
    static func rcloneVersion(_ rclone: String?) -> String {
        guard let rclone, let output = PeerTool.output([rclone, "version"]), let first = output.split(separator: "\n").first else { return "" }
        return String(first.split(separator: " ").last ?? "")
    }

    /// Rows for one backend and workload: files/s, MB/s and (over HTTP) requests per file, each beside the peer's.
    static func add(_ table: BenchTable, _ work: Workload, backend: String, _ ours: Measurement, peer: Measurement?, peerName: String,
                    operation: String = "sync upload") {
        let name = "backends: \(work.label) → \(backend)"
        let filesPerSecond = Double(work.files) / ours.seconds
        let peerFilesPerSecond = peer.map { Double(work.files) / $0.seconds }
        var note = "\(operation), \(BenchTable.format(ours.seconds)) s; peer: \(peerName)"
        if let peer {
            let ratio = peer.seconds / ours.seconds
            note += ", \(BenchTable.format(peer.seconds)) s (\(BenchTable.format(ratio))× its rate)"
            // The goals set for the S3 backend: 5× rclone's file rate on small files (10× for a migration), at
            // least its byte rate on large ones.
            if backend.hasPrefix("S3") {
                // A migration's goal on small files is 10× rclone.
                let goal = work.tag == "small" ? (operation == "migrate" ? 10.0 : 5.0) : 1.0
                note += "; goal ≥ \(BenchTable.format(goal))×: \(ratio >= goal ? "met" : "not met")"
            }
        }
        table.add(name + ", files/s", filesPerSecond, "files/s", peer: peerFilesPerSecond, note: note)
        table.add(name + ", MB/s", Double(work.bytes) / ours.seconds / 1e6, "MB/s", peer: peer.map { Double(work.bytes) / $0.seconds / 1e6 })
        if let requests = ours.requests {
            table.add(name + ", requests/file", Double(requests) / Double(work.files), "req/file", peer: peer?.requests.map { Double($0) / Double(work.files) },
                      note: "\(requests) HTTP requests counted at the server" + (peer?.requests.map { " (peer \($0))" } ?? ""))
        }
    }

    /// Proves the server-side counters count what the transport sends: a few calls of a store whose
    /// `HTTPClient` is known must move the server's count by exactly its `requestCount`.
    static func checkCounters(moto: CountedServer, emulator: CountedServer) async throws {
        let probe = [UInt8](repeating: 7, count: 1000)
        func exercise(_ store: any ObjectStore) async throws {
            try await store.put("probe/a", bytes: probe)
            _ = try await store.get("probe/a")
            _ = try await store.head("probe/a")
            _ = try await store.listAll(prefix: "probe/")
            try await store.delete("probe/a")
        }
        let s3 = try S3Store(url: "s3://\(moto.bucket)/counter-check?endpoint=\(moto.endpoint)&region=\(moto.region)")
        let s3Before = try await moto.requests()
        try await exercise(s3)
        let s3Counted = try await moto.requests() - s3Before
        guard s3Counted == s3.client.requestCount else {
            throw BenchError("moto counted \(s3Counted) requests where the S3 store's client sent \(s3.client.requestCount)")
        }

        let client = try HTTPClient()
        let location = try FileRESTLocation(url: "filerest://\(emulator.account)/counter-check?endpoint=\(emulator.endpoint)")
        guard let signer = SharedKeySigner(account: emulator.account, base64Key: emulator.accountKey) else { throw BenchError("the emulator's key is not base64") }
        let fileREST = try FileRESTStore(location: location, credentials: .sharedKey(signer), client: client)
        let fileRESTBefore = try await emulator.requests()
        try await fileREST.createShare()
        try await exercise(fileREST)
        let fileRESTCounted = try await emulator.requests() - fileRESTBefore
        guard fileRESTCounted == client.requestCount else {
            throw BenchError("the emulator counted \(fileRESTCounted) requests where the FileREST store's client sent \(client.requestCount)")
        }
    }
}

extension Optional {
    /// `map` with an async transform.
    func asyncMap<T>(_ transform: (Wrapped) async throws -> T) async rethrows -> T? {
        guard let value = self else { return nil }
        return try await transform(value)
    }
}

/// A Python server of the test suite (moto, the FileREST emulator) started on a free loopback port with a
/// request counter around its HTTP handler: `GET /__bench/requests` answers how many requests it has
/// served (that request itself not counted). It exits when this process closes its stdin, at exit.
final class CountedServer {
    /// `http://127.0.0.1:PORT` (moto) or `http://127.0.0.1:PORT/ACCOUNT` (the emulator).
    let endpoint: String
    let port: Int
    /// moto's IAM user keys, signing region and test bucket.
    var accessKeyID = "", secretAccessKey = "", region = "", bucket = ""
    /// The emulator's storage account and its key (base64).
    var account = "", accountKey = ""
    private let process: Process
    private let input: Pipe
    private let client: HTTPClient

    /// Wraps `BaseHTTPRequestHandler.parse_request`, which every request of both servers passes through once,
    /// then runs the server script as `__main__` with the remaining arguments.
    private static let counterWrapper = """
        import runpy, sys, threading
        from http.server import BaseHTTPRequestHandler
        sys.argv = sys.argv[1:]
        count, lock, parse = [0], threading.Lock(), BaseHTTPRequestHandler.parse_request
        def counted(self):
            if not parse(self):
                return False
            if self.path == "/__bench/requests":
                with lock:
                    body = str(count[0]).encode()
                self.close_connection = True
                self.send_response_only(200)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)
                return False
            with lock:
                count[0] += 1
            return True
        BaseHTTPRequestHandler.parse_request = counted
        runpy.run_path(sys.argv[0], run_name="__main__")
        """

    private init(script: String, arguments: [String], log: String, endpoint: (String) throws -> (String, Int)) throws {
        process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-u", "-c", Self.counterWrapper, script] + arguments
        input = Pipe()
        let output = Pipe()
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        process.standardInput = input
        process.standardOutput = output
        process.standardError = FileHandle(forWritingAtPath: log)
        try process.run()
        var line = Data()
        while true {
            let byte = output.fileHandleForReading.readData(ofLength: 1)
            if byte.isEmpty || byte == Data([10]) { break }
            line.append(byte)
        }
        guard !line.isEmpty else {
            process.waitUntilExit()
            let errors = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            throw BenchError("\(script) did not start: \(errors.suffix(800)) (scripts/setup installs python3's moto[server])")
        }
        (self.endpoint, port) = try endpoint(String(decoding: line, as: UTF8.self))
        client = try HTTPClient()
    }

    deinit {
        try? input.fileHandleForWriting.close()
        if process.isRunning { process.terminate() }
    }

    /// moto with IAM signature checking (`Tests/support/s3_moto_server.py`).
    static func moto(repository: String, log: String) throws -> CountedServer {
        var json: [String: Any] = [:]
        let server = try CountedServer(script: repository + "/Tests/support/s3_moto_server.py", arguments: [], log: log) { line in
            json = (try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]) ?? [:]
            guard let endpoint = json["endpoint"] as? String, let port = json["port"] as? Int else { throw BenchError("moto printed '\(line)'") }
            return (endpoint, port)
        }
        server.accessKeyID = json["accessKeyId"] as? String ?? ""
        server.secretAccessKey = json["secretAccessKey"] as? String ?? ""
        server.region = json["region"] as? String ?? "us-east-1"
        server.bucket = json["bucket"] as? String ?? ""
        return server
    }

    /// The FileREST emulator (`Tests/FileRESTEmulator/filerest_emulator.py`) with a fresh account key.
    static func fileRESTEmulator(repository: String, log: String) throws -> CountedServer {
        let account = "tiergatebench"
        let key = Data((0..<64).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
        let server = try CountedServer(script: repository + "/Tests/FileRESTEmulator/filerest_emulator.py",
                                       arguments: ["--port", "0", "--account", account, "--key", key, "--exit-with-stdin"], log: log) { line in
            let prefix = "FileREST emulator listening on "
            guard line.hasPrefix(prefix), let port = URL(string: String(line.dropFirst(prefix.count)))?.port else {
                throw BenchError("the FileREST emulator printed '\(line)'")
            }
            return (String(line.dropFirst(prefix.count)), port)
        }
        server.account = account
        server.accountKey = key
        return server
    }

    /// Requests served so far.
    func requests() async throws -> Int {
        let response = try await client.execute(HTTPRequest(method: "GET", url: "http://127.0.0.1:\(port)/__bench/requests"))
        guard response.status == 200, let count = Int(String(decoding: response.body, as: UTF8.self)) else {
            throw BenchError("the request counter on port \(port) answered HTTP \(response.status)")
        }
        return count
    }
}
