import ArgumentParser
import Foundation
import Gateway
import Logging

extension ChangeJournal.Source: ExpressibleByArgument {}

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the daemon: keep every endpoint in sync (change journal, log polling, periodic rescans) until SIGTERM."
    )
    @OptionGroup var state: StateOptions
    @Option(help: "Seconds between polls of each share's commit log.") var pollInterval: Double = 1
    @Option(help: "Loopback HOST:PORT for Prometheus metrics (/metrics) and the status page (/), or 'off'; default: config.json's \"metrics\", else off.")
    var metrics: String?
    @Option(help: ArgumentHelp("What watches each endpoint's tree for the change journal: a fanotify filesystem mark (no per-folder watch limit; needs CAP_SYS_ADMIN), inotify watches on every folder, or auto (fanotify where it can be placed, else inotify).", valueName: "auto|fanotify|inotify"))
    var changeJournal: ChangeJournal.Source = .automatic
    @Flag(help: .hidden) var worker = false

    func validate() throws {
        guard pollInterval >= 0.05 && pollInterval <= 3600 else { throw ValidationError("--poll-interval must be between 0.05 and 3600 seconds") }
        if let metrics, metrics != "off" {
            do { _ = try OperationsListener.parse(metrics) } catch { throw ValidationError("\(error)") }
        }
    }

    func run() async throws {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = .info
            return handler
        }
        let logger = Logger(label: "tiergate")
        if !worker {
            // The supervisor: holds the fanotify groups, runs the worker (this command with --worker) and
            // starts it again if it is killed, so stubs stay marked and readers wait instead of reading zeros.
            let directory = state.directory
            guard let config = try directory.loadConfig(), !config.endpoints.isEmpty else {
                throw fail(GatewayError("no endpoints to serve; add one with `tiergate endpoint add`"))
            }
            if let address = config.metrics, metrics == nil, address != "off" {
                do { _ = try OperationsListener.parse(address) } catch { throw fail(GatewayError("config.json: \(error)")) }
            }
            let arguments = (state.stateDirectory.map { ["--state-dir", $0] } ?? []) + ["--poll-interval", String(pollInterval)]
                + ["--change-journal", changeJournal.rawValue]
                + (metrics.map { ["--metrics", $0] } ?? [])
            let status = DaemonSupervisor.run(executable: "/proc/self/exe", arguments: arguments, directory: directory,
                                              endpoints: config.endpoints) { logger.warning("\($0)") }
            if status != 0 { throw ExitCode(status) }
            return
        }
        do {
            let groups = try DaemonSupervisor.workerGroups()
            // A worker started right after its predecessor was killed may find the database still locked
            // for a moment, until the kernel has closed the dead process's files.
            var opened: Gateway?
            for attempt in 0..<100 {
                do {
                    opened = try state.open()
                    break
                } catch let error as GatewayError where error.description.contains("lock") && attempt < 99 {
                    usleep(100_000)
                }
            }
            guard let gateway = opened else { throw GatewayError("cannot open the local database") }
            // Every service has returned (their workers joined) when serve returns: then the database closes, here.
            defer { gateway.close() }
            try gateway.checkConfiguration()
            let outcome = try await gateway.serve(logger: logger, pollInterval: .milliseconds(Int(pollInterval * 1000)), fanotifyGroups: groups,
                                                  metrics: metrics, changeJournal: changeJournal)
            if outcome == .reloadRequested { throw ExitCode(DaemonSupervisor.reloadStatus) }
        } catch let exit as ExitCode {
            throw exit
        } catch {
            throw fail(error)
        }
    }
}
