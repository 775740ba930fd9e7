import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import CloudShare
@testable import Gateway
import Glibc
import Telemetry
import Testing

/// `serve --metrics`: a real daemon's loopback listener, scraped for Prometheus metrics (also by Debian's
/// `prometheus` server), its status page loaded in headless Chromium and checked against `status --json`.
@Suite(.serialized) struct OperationsListenerTests {
    /// A registered server with one endpoint on a file:// share, set up through the CLI.
    struct Server {
        let scratch = Scratch()
        var endpoint: String { scratch.path + "/endpoint" }
        var state: String { scratch.path + "/state" }
        var logs: String { scratch.path + "/logs" }

        init(files: Int) throws {
            for directory in [endpoint, logs] {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            }
            for number in 0..<files {
                try Data("file \(number)\n".utf8).write(to: URL(fileURLWithPath: endpoint + "/file-\(number).txt"))
            }
            let share = "file://" + scratch.path + "/share"
            try cli(["share", "create", share])
            try cli(["endpoint", "add", endpoint, "--share", share, "--state-dir", state, "--server-name", "alpha"])
        }

        @discardableResult
        func cli(_ arguments: [String]) throws -> String {
            let result = try TiergateProcess.run(arguments, logs: logs)
            guard result.status == 0 else { throw GatewayError("tiergate \(arguments.joined(separator: " ")) failed: \(result.output)") }
            return result.output
        }

        /// `serve --metrics 127.0.0.1:PORT`, once its listener is up.
        func serve(port: Int) throws -> TiergateProcess {
            let serve = try TiergateProcess(["serve", "--state-dir", state, "--poll-interval", "0.2", "--metrics", "127.0.0.1:\(port)"], logs: logs)
            guard serve.waitFor("metrics and status page on", inErrorOutput: true) else {
                serve.send(SIGKILL)
                throw GatewayError("serve did not start its listener: \(serve.errorOutput)")
            }
            return serve
        }
    }

    /// A socket bound to a free loopback port (listening when `listening`), and the port.
    static func boundSocket(listening: Bool = false) throws -> (fd: Int32, port: Int) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, length) == 0 && (!listening || listen(fd, 1) == 0) && getsockname(fd, $0, &length) == 0
            }
        }
        guard bound else {
            close(fd)
            throw GatewayError("no free loopback port: \(String(cString: strerror(errno)))")
        }
        return (fd, Int(UInt16(bigEndian: address.sin_port)))
    }

    /// A loopback port nothing listens on now.
    static func freePort() throws -> Int {
        let (fd, port) = try boundSocket()
        close(fd)
        return port
    }

    static func get(_ url: String) async throws -> (status: Int, body: String) {
        let (data, response) = try await URLSession.shared.data(from: URL(string: url)!)
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data, as: UTF8.self))
    }

    /// The samples of a Prometheus text exposition, by `name{labels}` as printed.
    static func samples(_ exposition: String) -> [String: Double] {
        var result: [String: Double] = [:]
        for line in exposition.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
            result[String(line[..<space])] = value
        }
        return result
    }

    /// Polls `/metrics` until `condition` holds for its samples (or 30 s pass); returns the last samples.
    static func waitForMetrics(port: Int, _ condition: ([String: Double]) -> Bool) async throws -> [String: Double] {
        var samples: [String: Double] = [:]
        for _ in 0..<150 {
            samples = Self.samples(try await get("http://127.0.0.1:\(port)/metrics").body)
            if condition(samples) { return samples }
            try await Task.sleep(for: .milliseconds(200))
        }
        return samples
    }

    @Test func metricsOfARunningDaemonCountWhatItSyncsAndPassPromtool() async throws {
        let server = try Server(files: 3)
        let port = try Self.freePort()
        let serve = try server.serve(port: port)
        defer { serve.send(SIGTERM); _ = serve.exitStatus() }
        let uploaded = "tiergate_sync_files_total{endpoint=\"1\",direction=\"upload\"}"
        var samples = try await Self.waitForMetrics(port: port) { ($0[uploaded] ?? 0) >= 3 }
        #expect(samples[uploaded] == 3, "\(samples)")
        #expect(samples["tiergate_up"] == 1)
        #expect((samples["tiergate_sync_sessions_total{endpoint=\"1\",result=\"success\"}"] ?? 0) >= 1)
        #expect((samples["tiergate_commits_total{endpoint=\"1\"}"] ?? 0) >= 1)
        #expect((samples["tiergate_store_requests_total{operation=\"put_if_absent\",result=\"success\"}"] ?? 0) >= 1, "the commit's conditional put")
        #expect((samples["tiergate_store_request_duration_seconds_count{operation=\"list\"}"] ?? 0) >= 1)
        #expect(samples["tiergate_endpoint_health{endpoint=\"1\"}"] == 0, "Healthy")
        #expect(samples["tiergate_network_limit_bytes_per_second"] == 0, "no limit")
        // A rule added while the daemon runs shows at the next scrape.
        try server.cli(["limit", "add", "--days", "all", "--start", "0", "--end", "24", "--rate", "50M", "--state-dir", server.state])
        samples = try await Self.waitForMetrics(port: port) { $0["tiergate_network_limit_bytes_per_second"] != 0 }
        #expect(samples["tiergate_network_limit_bytes_per_second"] == 50_000_000)

        // An edit is counted as it syncs: the counters follow the daemon's work, not a snapshot at start.
        try Data("two more\n".utf8).write(to: URL(fileURLWithPath: server.endpoint + "/new-1.txt"))
        try Data("two more\n".utf8).write(to: URL(fileURLWithPath: server.endpoint + "/new-2.txt"))
        samples = try await Self.waitForMetrics(port: port) { ($0[uploaded] ?? 0) >= 5 }
        #expect(samples[uploaded] == 5, "\(samples)")
        #expect((samples["tiergate_sync_bytes_total{endpoint=\"1\",direction=\"upload\"}"] ?? 0) >= 3 * 7 + 2 * 9)

        // Paths and URLs never become labels; no sample names a file.
        let text = try await Self.get("http://127.0.0.1:\(port)/metrics").body
        #expect(!text.contains(server.scratch.path) && !text.contains("file-0"), "\(text)")

        // The exposition is valid for Prometheus's own linter.
        let exposition = server.logs + "/metrics.txt"
        try Data(text.utf8).write(to: URL(fileURLWithPath: exposition))
        let lint = try Self.run("/usr/bin/promtool", ["check", "metrics"], stdin: exposition)
        #expect(lint.status == 0 && lint.output.isEmpty, "promtool check metrics: \(lint.output)")
    }

    @Test func recallsThroughTheDaemonAreCountedWithTheirBytesAndLatency() async throws {
        let server = try Server(files: 1)
        let bytes = (0..<300_001).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 13) }
        try Data(bytes).write(to: URL(fileURLWithPath: server.endpoint + "/cold.bin"))
        try server.cli(["endpoint", "tiering", server.endpoint, "--state-dir", server.state, "--free-space", "0"])
        try server.cli(["sync", "--state-dir", server.state])
        let port = try Self.freePort()
        let serve = try server.serve(port: port)
        defer { serve.send(SIGTERM); _ = serve.exitStatus() }
        try server.cli(["tier", server.endpoint + "/cold.bin", "--state-dir", server.state])
        // A reader of the stub (another process: the read blocks until the daemon has recalled).
        let read = try Self.run("/bin/cat", [server.endpoint + "/cold.bin"])
        #expect(read.status == 0 && Array(read.output.utf8).count > 0)
        let recalled = "tiergate_recalls_total{endpoint=\"1\",result=\"success\"}"
        let samples = try await Self.waitForMetrics(port: port) { ($0[recalled] ?? 0) >= 1 }
        #expect(samples[recalled] == 1, "\(samples.filter { $0.key.contains("recall") })")
        #expect(samples["tiergate_recall_bytes_total{endpoint=\"1\"}"] == Double(bytes.count))
        #expect((samples["tiergate_recall_duration_seconds_count{endpoint=\"1\"}"] ?? 0) >= 1)
        #expect(samples["tiergate_recalls_total{endpoint=\"1\",result=\"error\"}"] == 0)
        #expect(FileManager.default.contents(atPath: server.endpoint + "/cold.bin") == Data(bytes))
    }

    @Test func debiansPrometheusServerScrapesTheDaemon() async throws {
        let server = try Server(files: 2)
        let port = try Self.freePort()
        let serve = try server.serve(port: port)
        defer { serve.send(SIGTERM); _ = serve.exitStatus() }
        let prometheusPort = try Self.freePort()
        let configuration = server.scratch.path + "/prometheus.yml"
        try Data("""
        global:
          scrape_interval: 1s
        scrape_configs:
          - job_name: tiergate
            static_configs:
              - targets: ['127.0.0.1:\(port)']
        """.utf8).write(to: URL(fileURLWithPath: configuration))
        let prometheus = Process()
        prometheus.executableURL = URL(fileURLWithPath: "/usr/bin/prometheus")
        prometheus.arguments = ["--config.file=" + configuration, "--storage.tsdb.path=" + server.scratch.path + "/tsdb",
                                "--web.listen-address=127.0.0.1:\(prometheusPort)"]
        prometheus.standardOutput = FileHandle.nullDevice
        prometheus.standardError = FileHandle(forWritingAtPath: server.logs + "/prometheus.log") ?? {
            FileManager.default.createFile(atPath: server.logs + "/prometheus.log", contents: nil)
            return FileHandle(forWritingAtPath: server.logs + "/prometheus.log")!
        }()
        try prometheus.run()
        defer { prometheus.terminate(); prometheus.waitUntilExit() }
        // Prometheus's own view: the scrape target is up and the daemon's counter arrived.
        let query = "http://127.0.0.1:\(prometheusPort)/api/v1/query?query=tiergate_sync_files_total%7Bdirection%3D%22upload%22%7D"
        var answer = ""
        for _ in 0..<120 {
            answer = (try? await Self.get(query).body) ?? ""
            if answer.contains("\"value\"") { break }
            try await Task.sleep(for: .milliseconds(500))
        }
        #expect(answer.contains("\"job\":\"tiergate\"") && answer.contains("\"2\"]"), "Prometheus answered: \(answer); its log: \((try? String(contentsOfFile: server.logs + "/prometheus.log", encoding: .utf8))?.suffix(2000) ?? "")")
    }

    @Test func statusPageInHeadlessChromiumShowsWhatStatusJSONSays() async throws {
        let server = try Server(files: 4)
        let port = try Self.freePort()
        let serve = try server.serve(port: port)
        defer { serve.send(SIGTERM); _ = serve.exitStatus() }
        _ = try await Self.waitForMetrics(port: port) { ($0["tiergate_sync_files_total{endpoint=\"1\",direction=\"upload\"}"] ?? 0) >= 4 }
        let json = try server.cli(["status", "--json", "--state-dir", server.state])
        let status = try JSONDecoder().decode([Gateway.EndpointStatus].self, from: Data(json.utf8))
        let item = try #require(status.first)

        let page = "http://127.0.0.1:\(port)/"
        let dom = try Self.run("/usr/bin/chromium", Self.chromiumFlags + ["--dump-dom", page])
        #expect(dom.status == 0, "chromium --dump-dom: \(dom.output.suffix(2000))")
        func field(_ name: String) -> String? {
            // Chromium writes a bare attribute as `name=""`.
            guard let start = dom.output.range(of: name + "=\"\">") ?? dom.output.range(of: name + ">") else { return nil }
            return String(dom.output[start.upperBound...].prefix { $0 != "<" })
        }
        #expect(field("data-health") == item.health)
        #expect(field("data-cursor") == String(item.cursor))
        #expect(field("data-head") == item.head.map(String.init))
        #expect(field("data-entries") == String(item.entries))
        #expect(field("data-pending") == String(item.pendingChanges))
        #expect(field("data-not-syncing") == String(item.filesNotSyncing))
        #expect(field("data-network-limit") == item.networkLimit?.summary)
        #expect(dom.output.contains("<svg"), "the activity charts")
        #expect(dom.output.contains("data-server=\"\(item.servers?.first?.serverID ?? "?")\""), "the registered server")

        // A screenshot stays with the test output, for people to look at.
        let output = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent(".build/test-output").path
        try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true)
        let screenshot = output + "/status-page.png"
        try? FileManager.default.removeItem(atPath: screenshot)
        let shot = try Self.run("/usr/bin/chromium", Self.chromiumFlags + ["--window-size=1000,1400", "--screenshot=" + screenshot, page])
        #expect(shot.status == 0 && FileManager.default.fileExists(atPath: screenshot), "chromium --screenshot: \(shot.output.suffix(2000))")
    }

    @Test func aListenerAddressOffLoopbackIsRefused() throws {
        let server = try Server(files: 1)
        let refused = try TiergateProcess.run(["serve", "--state-dir", server.state, "--metrics", "0.0.0.0:9464"], logs: server.logs)
        #expect(refused.status != 0 && refused.output.contains("not a loopback address"), "\(refused.output)")
        // The same address written into config.json by hand is refused before anything starts.
        let path = server.state + "/config.json"
        var config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as! [String: Any]
        config["metrics"] = "192.0.2.1:9464"
        try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: path))
        let fromConfig = try TiergateProcess.run(["serve", "--state-dir", server.state], logs: server.logs)
        #expect(fromConfig.status != 0 && fromConfig.output.contains("config.json") && fromConfig.output.contains("not a loopback address"), "\(fromConfig.output)")
    }

    @Test func aTakenPortIsReportedAndSyncingCarriesOn() async throws {
        let server = try Server(files: 2)
        // Something else holds the port.
        let (fd, port) = try Self.boundSocket(listening: true)
        defer { close(fd) }
        let serve = try TiergateProcess(["serve", "--state-dir", server.state, "--poll-interval", "0.2", "--metrics", "127.0.0.1:\(port)"], logs: server.logs)
        defer { serve.send(SIGTERM); _ = serve.exitStatus() }
        #expect(serve.waitFor("the metrics listener on 127.0.0.1:\(port) failed", inErrorOutput: true), "\(serve.errorOutput)")
        // The first pass uploads the two files; only then is a third written, so it cannot join that pass.
        #expect(serve.waitFor("uploaded 2", inErrorOutput: true), "the first pass: \(serve.errorOutput)")
        try Data("later\n".utf8).write(to: URL(fileURLWithPath: server.endpoint + "/later.txt"))
        #expect(serve.waitFor("uploaded 1", inErrorOutput: true), "the daemon kept syncing: \(serve.errorOutput)")
    }

    static let chromiumFlags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--user-data-dir=" + NSTemporaryDirectory() + "/tiergate-chromium"]

    /// Runs a program to its end (90 s at most); returns its status and its standard output then error.
    static func run(_ executable: String, _ arguments: [String], stdin: String? = nil) throws -> (status: Int32, output: String) {
        guard FileManager.default.isExecutableFile(atPath: executable) else {
            throw GatewayError("\(executable) is not installed (scripts/setup installs it)")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        process.standardInput = stdin.flatMap { FileHandle(forReadingAtPath: $0) } ?? FileHandle.nullDevice
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}

/// The listener's address rules, the activity history and the page's escaping, without a daemon.
struct OperationsLogicTests {
    @Test(arguments: [
        ("127.0.0.1:9464", "127.0.0.1", 9464), ("localhost:80", "127.0.0.1", 80), ("[::1]:9100", "::1", 9100), ("127.8.9.10:1", "127.8.9.10", 1),
    ])
    func loopbackAddressesAreAccepted(address: String, host: String, port: Int) throws {
        let parsed = try OperationsListener.parse(address)
        #expect(parsed.host == host && parsed.port == port)
    }

    @Test(arguments: ["0.0.0.0:9464", "10.1.2.3:9464", "example.com:80", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000", ":9464", "127.0.0.1.5:80", "[::]:9464"])
    func otherAddressesAreRefused(address: String) {
        #expect(throws: GatewayError.self) { try OperationsListener.parse(address) }
    }

    @Test func activityKeepsTwentyFourHoursAndTheLastSessions() {
        var activity = SyncActivity()
        let start = Date(timeIntervalSince1970: 1_800_000_000)
        var report = SyncReport()
        report.uploaded = 2
        report.uploadedBytes = 100
        report.commits = 1
        for hour in 0..<30 {
            activity.record(report, trigger: "local change", now: start.addingTimeInterval(Double(hour) * 3600))
            activity.recordRecalls(1, bytes: 10, now: start.addingTimeInterval(Double(hour) * 3600 + 60))
        }
        let now = start.addingTimeInterval(29 * 3600)
        #expect(activity.hours.count == 24)
        let plotted = activity.last24Hours(now: now)
        #expect(plotted.count == 24 && plotted.allSatisfy { $0.uploadedFiles == 2 && $0.recalls == 1 && $0.passes == 1 })
        #expect(activity.sessions.count == SyncActivity.sessionLimit)
        // A quiet pass (nothing done) is counted but not listed as a session.
        var quiet = SyncReport()
        quiet.started = 42
        activity.record(quiet, trigger: "periodic rescan", now: now)
        #expect(activity.sessions.last?.started != 42 && activity.last24Hours(now: now).last?.passes == 2)
        // Hours without work show as zero bars; the one 5 hours ago is kept.
        let later = activity.last24Hours(now: now.addingTimeInterval(5 * 3600))
        #expect(later.suffix(5).allSatisfy { $0.passes == 0 } && later[later.count - 6].passes == 2)
    }

    @Test func healthSaysNoActivityWhenNoPassRanForAnHour() {
        var last = SyncReport()
        last.started = 1_000
        let now = Date(timeIntervalSince1970: 1_000 + Gateway.Health.quietLimit + 10)
        #expect(Gateway.health(last: last, cursor: 1, head: 1, reachable: true, pending: 0, errors: [], now: now) == "No Activity")
        #expect(Gateway.health(last: last, cursor: 1, head: 1, reachable: true, pending: 0, errors: [], now: Date(timeIntervalSince1970: 1_100)) == "Healthy")
        #expect(Gateway.health(last: last, cursor: 1, head: 2, reachable: true, pending: 0, errors: [], now: Date(timeIntervalSince1970: 1_100)) == "Pending")
        #expect(Gateway.health(last: last, cursor: 1, head: nil, reachable: false, pending: 0, errors: [], now: now) == "Error")
    }

    @Test func docsListEveryMetricTheCodeNames() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let docs = try String(contentsOf: root.appendingPathComponent("docs/operations.md"), encoding: .utf8)
        let missing = MetricName.help.keys.filter { !docs.contains("`\($0)`") }.sorted()
        #expect(missing.isEmpty, "docs/operations.md does not list \(missing)")
        #expect(MetricName.help.count > 20, "the table is read")
    }

    @Test func thePageEscapesWhatItShows() throws {
        let endpoint = EndpointConfig(id: 1, path: "/srv/<script>alert(1)</script>", share: "file:///s\"hare", initialUpload: .merge)
        var item = Gateway.EndpointStatus(endpoint: endpoint, health: "Healthy", lastSync: nil, cursor: 0, head: 0, entries: 0,
                                          pendingChanges: 0, filesNotSyncing: 0, shareError: nil)
        item.servers = [ServerRegistration(serverID: "x", name: "<b>evil</b>", endpoint: 1, lastSeen: 0, lastAppliedSequence: 0)]
        let html = StatusPage.render(server: "a&b", serverID: "id", status: [item], now: Date())
        #expect(!html.contains("<script>") && !html.contains("<b>evil") && html.contains("&lt;script&gt;") && html.contains("a&amp;b"))
    }
}
