import ArgumentParser
import Foundation
import Gateway

/// The `tiergate` command: parses arguments and calls Gateway; all behaviour lives in the library.
@main
struct Tiergate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tiergate",
        abstract: "Sync server endpoints with a cloud share and tier cold files to it.",
        subcommands: [ShareCommand.self, CheckCommand.self, PutCommand.self, MigrateCommand.self, GetCommand.self, EndpointCommand.self, SyncCommand.self, StatusCommand.self, ErrorsCommand.self, ServeCommand.self, InstallServiceCommand.self, TierCommand.self, RecallCommand.self, HeatCommand.self, RestoreCommand.self, MountCommand.self, LimitCommand.self, StoreCommand.self]
    )

    /// `share verify --read-data` takes an optional value (`--read-data` or `--read-data=25`), a form the
    /// argument parser has not: a bare one is given its default, every pack.
    static func main() async {
        var arguments = Array(CommandLine.arguments.dropFirst())
        if arguments.starts(with: ["share", "verify"]) {
            arguments = arguments.map { $0 == "--read-data" ? "--read-data=100" : $0 }
        }
        await main(arguments)
    }
}

/// Prints an error the way every subcommand does: one line naming the item and the cause.
/// Prints `value` as pretty JSON with sorted keys (every `--json` of the CLI).
func printJSON(_ value: some Encodable) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}

func fail(_ error: any Error) -> ExitCode {
    FileHandle.standardError.write(Data("tiergate: error: \(error)\n".utf8))
    return ExitCode(1)
}
