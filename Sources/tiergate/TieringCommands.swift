import ArgumentParser
import Foundation
import Gateway

extension NamespaceDownloadMode: ExpressibleByArgument {}

/// Runs `operation` in-process, or — when a running daemon holds the database — asks the daemon.
func viaDaemonIfRunning(_ state: StateOptions, operation: String, path: String,
                        local: (Gateway) async throws -> Gateway.TieringResult) async throws -> Gateway.TieringResult {
    if ControlRequests.daemonIsRunning(in: state.directory) {
        FileHandle.standardError.write(Data("tiergate: asking the running daemon to \(operation) '\(path)'\n".utf8))
        return try ControlRequests.submit(operation, path: path, to: state.directory)
    }
    let gateway: Gateway
    do {
        gateway = try state.open()
    } catch let error as GatewayError where error.description.contains("lock") {
        FileHandle.standardError.write(Data("tiergate: the daemon holds the database; asking it to \(operation) '\(path)'\n".utf8))
        return try ControlRequests.submit(operation, path: path, to: state.directory)
    }
    return try await local(gateway)
}

extension StateOptions {
    var directory: StateDirectory { stateDirectory.map(StateDirectory.init(path:)) ?? .standard }
}

func printResult(_ verb: String, _ result: Gateway.TieringResult) throws {
    print("\(verb) \(result.files) files (\(ByteFormat.string(result.bytes))) in \(String(format: "%.2f", result.seconds)) s" +
          (result.seconds > 0 && result.bytes > 0 ? String(format: ", %.1f MB/s", Double(result.bytes) / result.seconds / 1e6) : ""))
    for failure in result.failures.prefix(20) { print("  not \(verb): \(failure)") }
    if result.failures.count > 20 { print("  … and \(result.failures.count - 20) more") }
    if !result.failures.isEmpty && result.files == 0 { throw ExitCode(1) }
}

struct TierCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "tier", abstract: "Tier a synced file (or every file below a directory) now: it becomes a stub.")
    @OptionGroup var state: StateOptions
    @Argument(help: "A file or directory inside an endpoint.") var path: String

    func run() async throws {
        do {
            let result = try await viaDaemonIfRunning(state, operation: "tier", path: path) { _ in
                // Without the daemon nothing recalls a stub: a reader would get zeros. Tiering is the daemon's.
                throw GatewayError("cannot tier '\(path)': no `tiergate serve` is running for this server, and a stub nothing recalls would read as zeros; start the daemon with tiering on for the endpoint and retry")
            }
            try printResult("tiered", result)
        } catch let exit as ExitCode { throw exit } catch { throw fail(error) }
    }
}

struct RecallCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "recall", abstract: "Recall stubs (a file or everything below a directory) completely, in parallel.")
    @OptionGroup var state: StateOptions
    @Argument(help: "A file or directory: inside an endpoint, or (stubs whose endpoint was removed) anywhere.") var path: String
    @Option(help: "Files recalled at once.") var threads = 8
    @Option(help: "For stubs outside every endpoint: the share URL to recall from, when their markers name none.") var share: String?

    func validate() throws {
        guard (1...256).contains(threads) else { throw ValidationError("--threads must be between 1 and 256") }
    }

    func run() async throws {
        do {
            let result: Gateway.TieringResult
            let configured = try state.open(readOnly: true)
            if (try? configured.locate(path)) == nil {
                // Outside every endpoint: orphaned stubs come back from the share their markers name. No
                // endpoint's database is involved, so the daemon is not needed.
                result = try await configured.recallOrphans(path, share: share, progress: ProgressPrinter.shared.print)
            } else {
                configured.close()
                result = try await viaDaemonIfRunning(state, operation: "recall", path: path) {
                    try await $0.recall(path, threads: threads, progress: ProgressPrinter.shared.print)
                }
            }
            ProgressPrinter.shared.finish()
            try printResult("recalled", result)
        } catch let exit as ExitCode { throw exit } catch { throw fail(error) }
    }
}

struct HeatCommand: AsyncParsableCommand {
    enum Order: String, ExpressibleByArgument, CaseIterable { case space, date, recallOrder = "recall-order" }
    static let configuration = CommandConfiguration(commandName: "heat", abstract: "Show what would be tiered next and why (coldest first).")
    @OptionGroup var state: StateOptions
    @Option(help: "Only this endpoint (id or path).") var endpoint: String?
    @Option(help: "space: what the free-space policy tiers next; date: by last access; recall-order: hottest first.") var by: Order = .space
    @Option(help: "Rows to show.") var limit = 20

    func run() async throws {
        do {
            let gateway = try state.open(readOnly: true)
            let endpoints = try endpoint.map { [try gateway.endpoint($0)] } ?? gateway.config.endpoints
            for endpoint in endpoints {
                let heat = try gateway.heat(endpoint)
                print("endpoint \(endpoint.id): \(endpoint.path) — volume \(String(format: "%.1f", heat.volume.freePercent)) % free, policy \(gateway.effectiveFreeSpacePercent(endpoint)) % free" +
                      (endpoint.tiering?.dateDays.map { ", date \($0) days" } ?? "") + (endpoint.tiering == nil ? " (tiering off)" : ""))
                var rows = by == .space ? heat.policy : heat.ranking
                if by == .recallOrder { rows.reverse() }
                if by == .space && rows.isEmpty { print("  the policies tier nothing now; coldest files:"); rows = heat.ranking }
                for row in rows.prefix(limit) {
                    let when = row.lastAccess > 0 ? ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: Double(row.lastAccess) / 1e9)) : "never"
                    print("  \(row.path)  \(ByteFormat.string(row.size))  last access \(when)  \(row.accessCount) accesses\(row.reason.isEmpty ? "" : "  → \(row.reason)")")
                }
            }
        } catch { throw fail(error) }
    }
}

struct TieringCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "tiering", abstract: "Turn cloud tiering on, change it, or turn it off for an endpoint.")
    @OptionGroup var state: StateOptions
    @Argument(help: "The endpoint's id or path.") var endpoint: String
    @Option(help: "Keep this percent of the volume free by tiering the coldest files (0-99).") var freeSpace = 20
    @Option(help: "Also tier files not accessed for this many days.") var days: Int?
    @Option(help: "How new cloud files arrive: avoid-tiered-files, namespace-only, namespace-then-content.") var download: NamespaceDownloadMode = .avoidTieredFiles
    @Flag(help: "Download new and changed cloud files with content, not as stubs.") var proactiveRecall = false
    @Flag(help: "Turn tiering off.") var off = false

    func validate() throws {
        guard (0...99).contains(freeSpace) else { throw ValidationError("--free-space must be between 0 and 99") }
        if let days, days < 1 { throw ValidationError("--days must be at least 1") }
    }

    func run() async throws {
        do {
            let gateway = try state.open()
            let config = off ? nil : TieringConfig(volumeFreeSpacePercent: freeSpace, dateDays: days, download: download, proactiveRecall: proactiveRecall)
            let updated = try gateway.setTiering(endpoint, config)
            if let tiering = updated.tiering {
                print("tiering on for endpoint \(updated.id): keep \(tiering.volumeFreeSpacePercent) % free" + (tiering.dateDays.map { ", tier after \($0) days without access" } ?? "") +
                      ", downloads: \(tiering.download.rawValue)\(tiering.proactiveRecall ? ", proactive recall" : ""); restart `tiergate serve` to apply")
            } else {
                print("tiering off for endpoint \(updated.id) (existing stubs stay and recall on access while the daemon runs)")
            }
        } catch { throw fail(error) }
    }
}
