import Foundation
import Glibc

/// The daemon's loopback listener: how long a scrape of `/metrics` takes with 10 endpoints (beside a
/// scrape of Debian's Prometheus server's own `/metrics` in the same run), and the daemon's idle CPU
/// with metrics on (beside the same daemon with metrics off).
enum OperationsBench {
    static let group = BenchGroup(name: "operations", summary: "/metrics scrape latency with 10 endpoints (beside prometheus's own /metrics); idle CPU with metrics on vs off") { table in
        try await run(table)
    }

    static let endpoints = 10

    static func run(_ table: BenchTable) async throws {
        guard FileManager.default.isExecutableFile(atPath: SyncBench.tiergate) else { throw BenchError("\(SyncBench.tiergate) is not built (bench/run builds it)") }
        let root = BenchFiles.fresh("operations")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let state = root + "/state"
        for number in 0..<endpoints {
            let endpoint = root + "/endpoint-\(number)"
            mkdir(endpoint, 0o755)
            for file in 0..<20 { try Data("file \(file)\n".utf8).write(to: URL(fileURLWithPath: endpoint + "/f\(file).txt")) }
            let share = "file://" + root + "/share-\(number)"
            try tiergate(["share", "create", share])
            try tiergate(["endpoint", "add", endpoint, "--share", share, "--state-dir", state, "--server-name", "bench"])
        }
        try tiergate(["sync", "--state-dir", state])

        let port = try freePort()
        let daemon = try startServe(state: state, metrics: "127.0.0.1:\(port)", log: root + "/serve-on.log")
        try await waitForListener(port: port)
        try await Task.sleep(for: .seconds(3))
        let scrapes = try scrapeLatencies(port: port, path: "/metrics", count: 500)
        let size = try get(port: port, path: "/metrics").count
        let idleOn = try idleCPU(of: daemon, seconds: 30)
        stop(daemon)

        var peer: [Double]?
        var peerSize = 0
        if let prometheus = BenchFiles.which("prometheus") {
            let prometheusPort = try freePort()
            let configuration = root + "/prometheus.yml"
            try Data("global:\n  scrape_interval: 60s\nscrape_configs: []\n".utf8).write(to: URL(fileURLWithPath: configuration))
            let server = Process()
            server.executableURL = URL(fileURLWithPath: prometheus)
            server.arguments = ["--config.file=" + configuration, "--storage.tsdb.path=" + root + "/tsdb", "--web.listen-address=127.0.0.1:\(prometheusPort)"]
            server.standardOutput = FileHandle.nullDevice
            server.standardError = FileHandle.nullDevice
            try server.run()
            try await waitForListener(port: prometheusPort)
            try await Task.sleep(for: .seconds(3))
            peer = try scrapeLatencies(port: prometheusPort, path: "/metrics", count: 500)
            peerSize = try get(port: prometheusPort, path: "/metrics").count
            server.terminate()
            server.waitUntilExit()
        }

        let off = try startServe(state: state, metrics: "off", log: root + "/serve-off.log")
        try await Task.sleep(for: .seconds(5))
        let idleOff = try idleCPU(of: off, seconds: 30)
        stop(off)

        func percentile(_ values: [Double], _ p: Double) -> Double { values.sorted()[min(values.count - 1, Int(Double(values.count) * p))] }
        table.add("/metrics scrape, \(endpoints) endpoints: p50", percentile(scrapes, 0.5) * 1000, "ms", peer: peer.map { percentile($0, 0.5) * 1000 },
                  note: "500 scrapes over loopback, \(size) B; peer: Debian's prometheus scraped for its own /metrics (\(peerSize) B)")
        table.add("/metrics scrape, \(endpoints) endpoints: p99", percentile(scrapes, 0.99) * 1000, "ms", peer: peer.map { percentile($0, 0.99) * 1000 },
                  note: "goal ≤ 10 ms")
        table.add("idle daemon CPU, metrics on", idleOn * 100, "% of a core", peer: idleOff * 100,
                  note: "supervisor + worker over 30 s idle, \(endpoints) endpoints; peer: the same daemon with --metrics off; goal ≤ 0.5 %")
    }

    static func tiergate(_ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: SyncBench.tiergate)
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw BenchError("tiergate \(arguments.joined(separator: " ")) failed") }
    }

    /// Starts `tiergate serve` on `state` (a supervisor and its worker), its standard error into `log`.
    /// A new `file://` share at `share` between endpoint `a` (what it holds uploaded) and endpoint `b`
    /// (downloaded), each with its own state folder and server name.
    static func twoSyncedEndpoints(share: String, a: String, b: String, stateA: String, stateB: String, names: (String, String)) throws {
        try FileManager.default.createDirectory(atPath: b, withIntermediateDirectories: true)
        try tiergate(["share", "create", share])
        try tiergate(["endpoint", "add", a, "--share", share, "--state-dir", stateA, "--server-name", names.0])
        try tiergate(["sync", "--state-dir", stateA])
        try tiergate(["endpoint", "add", b, "--share", share, "--state-dir", stateB, "--server-name", names.1])
        try tiergate(["sync", "--state-dir", stateB])
    }

    static func startServe(state: String, metrics: String, log: String, pollInterval: Double = 1, more: [String] = []) throws -> Process {
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: SyncBench.tiergate)
        process.arguments = ["serve", "--state-dir", state, "--metrics", metrics, "--poll-interval", String(pollInterval)] + more
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle(forWritingAtPath: log)
        try process.run()
        return process
    }

    static func stop(_ process: Process) {
        process.terminate()
        process.waitUntilExit()
    }

    /// CPU seconds per second of `process` and its children (the worker) over `seconds`.
    static func idleCPU(of process: Process, seconds: Double) throws -> Double {
        let tree = ProcessTree(root: process.processIdentifier)
        let before = tree.cpuSeconds()
        usleep(UInt32(seconds * 1_000_000))
        return (tree.cpuSeconds() - before) / seconds
    }

    static func waitForListener(port: Int) async throws {
        for _ in 0..<300 {
            if (try? get(port: port, path: "/metrics")) != nil { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw BenchError("nothing answered on 127.0.0.1:\(port)")
    }

    static func scrapeLatencies(port: Int, path: String, count: Int) throws -> [Double] {
        try (0..<count).map { _ in try Stopwatch.seconds { _ = try get(port: port, path: path) } }
    }

    /// One HTTP/1.1 GET over a fresh loopback connection (as Prometheus scrapes); returns the response.
    static func get(port: Int, path: String) throws -> [UInt8] {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw BenchError("socket: errno \(errno)") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw BenchError("connect 127.0.0.1:\(port): errno \(errno)") }
        let request = Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".utf8)
        _ = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
        var response: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count <= 0 { break }
            response += buffer[0..<count]
        }
        guard response.starts(with: Array("HTTP/1.1 200".utf8)) else { throw BenchError("GET \(path) on port \(port) did not answer 200") }
        return response
    }

    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound else { throw BenchError("no free loopback port") }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}
