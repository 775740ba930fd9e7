import ArgumentParser
import Foundation
import Gateway
import Logging

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the daemon: keep every endpoint in sync (inotify watchers, log polling, periodic rescans) until SIGTERM."
    )
    @OptionGroup var state: StateOptions
    @Option(help: "Seconds between polls of each share's commit log.") var pollInterval: Double = 1

    func validate() throws {
        guard pollInterval >= 0.05 && pollInterval <= 3600 else { throw ValidationError("--poll-interval must be between 0.05 and 3600 seconds") }
    }

    func run() async throws {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = .info
            return handler
        }
        let logger = Logger(label: "tiergate")
        do {
            let gateway = try state.open()
            // Every service has returned (their workers joined) when serve returns: then the database closes, here.
            defer { gateway.close() }
            try gateway.checkConfiguration()
            try await gateway.serve(logger: logger, pollInterval: .milliseconds(Int(pollInterval * 1000)))
        } catch {
            throw fail(error)
        }
    }
}
