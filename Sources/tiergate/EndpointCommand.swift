import ArgumentParser
import Foundation
import Gateway

/// Options every command that uses the registered server's state takes.
struct StateOptions: ParsableArguments {
    @Option(name: .customLong("state-dir"), help: "The registered server's state directory (default: $TIERGATE_STATE_DIR, /var/lib/tiergate as root).")
    var stateDirectory: String?

    func open(serverName: String? = nil, readOnly: Bool = false) throws -> Gateway {
        try Gateway(directory: stateDirectory.map(StateDirectory.init(path:)) ?? .standard, serverName: serverName, readOnly: readOnly)
    }
}

extension InitialUploadMode: ExpressibleByArgument {}

struct EndpointCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "endpoint",
        abstract: "Add, list and remove this server's endpoints.",
        subcommands: [Add.self, List.self, Remove.self, TieringCommand.self]
    )

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add a local directory as a server endpoint of a cloud share.")
        @OptionGroup var state: StateOptions
        @Argument(help: "The local directory.") var path: String
        @Option(help: "The cloud share URL.") var share: String
        @Option(name: .customLong("server-name"), help: "This server's name, used in conflict file names (default: the host name; set once).") var serverName: String?
        @Option(help: "How existing local files meet a non-empty share: merge or authoritative.") var initialUpload: InitialUploadMode = .merge

        func run() async throws {
            do {
                let gateway = try state.open(serverName: serverName)
                if let serverName, serverName != gateway.config.serverName { try gateway.rename(to: serverName) }
                let endpoint = try await gateway.addEndpoint(path: path, shareURL: share, mode: initialUpload)
                print("added endpoint \(endpoint.id): \(endpoint.path) ↔ \(ShareAdmin.printable(share)) (server \(gateway.config.serverName), \(endpoint.initialUpload.rawValue) upload); run `tiergate sync` or `tiergate serve`")
            } catch {
                throw fail(error)
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List this server's endpoints.")
        @OptionGroup var state: StateOptions

        func run() async throws {
            do {
                let gateway = try state.open(readOnly: true)
                print("server \(gateway.config.serverName) (\(gateway.config.serverID))")
                for endpoint in gateway.config.endpoints {
                    print("  \(endpoint.id)  \(endpoint.path)  ↔  \(ShareAdmin.printable(endpoint.share))")
                }
                if gateway.config.endpoints.isEmpty { print("  no endpoints; add one with `tiergate endpoint add <path> --share <url>`") }
            } catch {
                throw fail(error)
            }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove an endpoint (its local files and the cloud data are kept).")
        @OptionGroup var state: StateOptions
        @Argument(help: "The endpoint's id or path.") var endpoint: String
        @Flag(help: "Recall every tiered file first (with progress), then remove the endpoint.") var recall = false
        @Flag(help: "Remove the endpoint although tiered files remain: they stay stubs that nothing recalls.") var keepStubs = false

        func validate() throws {
            if recall && keepStubs { throw ValidationError("--recall and --keep-stubs exclude each other") }
        }

        func run() async throws {
            do {
                let gateway = try state.open()
                if recall {
                    let selected = try gateway.endpoint(endpoint)
                    let result = try await gateway.recall(selected.path, progress: ProgressPrinter.shared.print)
                    try printResult("recalled", result)
                    if !result.failures.isEmpty { throw GatewayError("not removed: \(result.failures.count) tiered files could not be recalled") }
                }
                let removed = try gateway.removeEndpoint(endpoint, keepStubs: keepStubs)
                print("removed endpoint \(removed.id) (\(removed.path)); local files and cloud data are untouched")
            } catch {
                throw fail(error)
            }
        }
    }
}

struct SyncCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "sync", abstract: "Run one sync pass of every endpoint (or one).")
    @OptionGroup var state: StateOptions
    @Option(help: "Only this endpoint (id or path).") var endpoint: String?
    @OptionGroup var bandwidth: BandwidthOptions

    func run() async throws {
        do {
            let gateway = try state.open()
            defer { gateway.close() }
            gateway.networkLimit.fixedLimit = bandwidth.bytesPerSecond
            try gateway.checkConfiguration()
            let endpoints = try endpoint.map { [try gateway.endpoint($0)] } ?? gateway.config.endpoints
            if endpoints.isEmpty { print("no endpoints to sync") }
            var failed = false
            for endpoint in endpoints {
                do {
                    let report = try await gateway.sync(endpoint, progress: ProgressPrinter.shared.print)
                    ProgressPrinter.shared.finish()
                    print("\(endpoint.path): \(report.summary)")
                } catch {
                    ProgressPrinter.shared.finish()
                    FileHandle.standardError.write(Data("tiergate: error: \(endpoint.path): \(error)\n".utf8))
                    failed = true
                }
            }
            if failed { throw ExitCode(1) }
        } catch let exit as ExitCode {
            throw exit
        } catch {
            throw fail(error)
        }
    }
}

struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "Show each endpoint's health, last sync, cursor and pending work.")
    @OptionGroup var state: StateOptions
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        do {
            let gateway = try state.open(readOnly: true)
            // config.json is edited by hand, so a URL read from it may hold what the CLI would refuse: redacted
            // once, for the text and the JSON.
            let status = await gateway.printableStatus()
            if json {
                try printJSON(status)
                return
            }
            print("server \(gateway.config.serverName) (\(gateway.config.serverID))")
            print("network limit: \(gateway.networkLimit.status().summary)")
            for item in status {
                print("endpoint \(item.endpoint.id): \(item.endpoint.path) ↔ \(item.endpoint.share)")
                print("  health:            \(item.health)")
                print("  cursor / head:     \(item.cursor) / \(item.head.map(String.init) ?? "unreachable: \(item.shareError ?? "")")")
                print("  items:             \(item.entries)")
                print("  pending changes:   \(item.pendingChanges)")
                print("  files not syncing: \(item.filesNotSyncing)")
                let figures = item.tiering
                if let figures, figures.stubs > 0 {
                    // What a reader of a stub on the endpoint gets: without the daemon nothing recalls.
                    print("  recall:            " + (ControlRequests.daemonIsRunning(in: state.directory)
                        ? "by `tiergate serve` (fanotify)"
                        : "NONE: `tiergate serve` is not running, so reads of these stubs on the endpoint return holes (zeros); start it"))
                }
                if item.endpoint.tiering != nil, let figures {
                    print("  size tiered:       \(ByteFormat.string(figures.sizeTiered)) in \(figures.stubs) stubs")
                    print("  cache size:        \(ByteFormat.string(figures.cacheSize))")
                    if let recalls = figures.recalls {
                        let total = recalls.recalls + recalls.failures
                        print("  recalls:           \(recalls.recalls) (\(ByteFormat.string(recalls.bytes))), success rate \(total == 0 ? "-" : String(format: "%.1f %%", Double(recalls.recalls) * 100 / Double(total)))")
                        print("  cache hit rate:    \(recalls.hitRate.map { String(format: "%.1f %%", $0 * 100) } ?? "-") of \(recalls.hits + total) reads seen")
                    }
                }
                if let last = item.lastSync {
                    let when = Date(timeIntervalSince1970: last.started)
                    print("  last sync:         \(ISO8601DateFormatter().string(from: when)): \(last.summary)")
                } else {
                    print("  last sync:         never")
                }
                for server in item.servers ?? [] {
                    let seen = ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: server.lastSeen))
                    let lag = item.head.map { $0 > server.lastAppliedSequence ? $0 - server.lastAppliedSequence : 0 }
                    print("  server \(ConsoleText.safe(server.name)) (endpoint \(server.endpoint)): \(server.isOnline() ? "online" : "offline"), last seen \(seen), applied \(server.lastAppliedSequence)\(lag.map { ", lag \($0)" } ?? "")")
                }
            }
        } catch {
            throw fail(error)
        }
    }
}

struct ErrorsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "errors", abstract: "List the files not syncing (errors and skipped items).")
    @OptionGroup var state: StateOptions
    @Option(help: "Only this endpoint (id or path).") var endpoint: String?
    @Flag(help: "Print JSON.") var json = false
    @Flag(help: "Print CSV.") var csv = false

    func run() async throws {
        do {
            let gateway = try state.open(readOnly: true)
            let selected = try endpoint.map { try gateway.endpoint($0) }
            let errors = try gateway.itemErrors(selected)
            if json {
                let rows = errors.map { ["endpoint": $0.endpoint.path, "path": $0.error.path, "kind": $0.error.kind, "reason": $0.error.reason,
                                         "firstSeen": ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: $0.error.firstSeen)),
                                         "attempts": String($0.error.attempts)] }
                print(String(decoding: try JSONSerialization.data(withJSONObject: rows, options: [.prettyPrinted, .sortedKeys]), as: UTF8.self))
            } else if csv {
                print("endpoint,path,kind,reason,first_seen,attempts")
                for (endpoint, error) in errors {
                    print(CSV.row([endpoint.path, error.path, error.kind, error.reason, ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: error.firstSeen)), String(error.attempts)]))
                }
            } else {
                if errors.isEmpty { print("no files are failing to sync") }
                for (endpoint, error) in errors {
                    print("\(endpoint.path)/\(error.path): \(error.kind): \(error.reason) (since \(ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: error.firstSeen))), \(error.attempts) attempts)")
                }
            }
        } catch {
            throw fail(error)
        }
    }
}
