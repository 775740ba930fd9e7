import ArgumentParser
import Gateway

/// `tiergate check PATH`: the compatibility evaluation of a folder and this system (Azure File Sync's
/// Invoke-AzStorageSyncCompatibilityCheck). Exit status 1 when any finding is an error.
struct CheckCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Evaluate a folder and this system for sync and tiering; exit status 1 when an error is found.",
        discussion: "Reads only metadata; creates and removes one probe file in PATH. See docs/check.md for every finding.")
    @Argument(help: "The folder to evaluate (a server endpoint, or one to be).") var path: String
    @Option(help: "A cloud share URL: check that it opens and compare its clock with this server's.") var share: String?
    @Flag(help: "Print one JSON document (every finding and the summary).") var json = false
    @Flag(help: "Print CSV: a header and one row per finding.") var csv = false

    func validate() throws {
        if json && csv { throw ValidationError("--json and --csv exclude each other; pick one") }
    }

    func run() async throws {
        let report: CheckReport
        do {
            report = try await CheckReport.evaluate(path: path, shareURL: share)
        } catch {
            throw fail(error)
        }
        print(json ? report.json() : csv ? report.csv() : report.text())
        if report.hasErrors { throw ExitCode(1) }
    }
}
