import ArgumentParser
import Foundation
import Gateway

struct RestoreCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore",
        abstract: "Put a file or folder of an endpoint back as it was at a past point of its share's log, as a new local change.",
        discussion: """
        The restored content is an ordinary edit: the next pass (or the running daemon) commits it as a new version. \
        Files with changes not synced yet are refused; items that exist now but did not then are left alone. \
        `tiergate share history URL PATH` lists the points. Exit status: 0 when everything was restored, 2 when some \
        items were refused (each is listed), 1 on an error. See docs/restore.md.
        """
    )
    @OptionGroup var state: StateOptions
    @Argument(help: "A file or folder inside an endpoint (it may have been deleted since).") var path: String
    @Option(help: ArgumentHelp("A log sequence (123 or #123) or a time (2026-12-01T09:30:00Z, 2026-12-01 09:30, 2026-12-01).", valueName: "sequence|time"))
    var at: String

    func validate() throws {
        if TreeExport.PointInTime(at) == nil {
            throw ValidationError("--at '\(at)' is neither a log sequence (123 or #123) nor a time (2026-12-01T09:30:00Z, 2026-12-01 09:30, 2026-12-01)")
        }
    }

    func run() async throws {
        let report: Gateway.RestoreReport
        do {
            // Read-only: it reads the database to know what is synced, and works beside the daemon.
            let gateway = try state.open(readOnly: true)
            defer { gateway.close() }
            report = try await gateway.restore(path: path, at: TreeExport.PointInTime(at)!)
        } catch {
            throw fail(error)
        }
        print("restored \(report.files) files (\(ByteFormat.string(report.bytes))) and \(report.directories) folders; \(report.unchanged) already as they were")
        for item in report.refused { print("  not restored \(ConsoleText.safe(item.path)): \(item.reason)") }
        if !report.refused.isEmpty { throw ExitCode(2) }
    }
}
