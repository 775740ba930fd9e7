import ArgumentParser
import Foundation
import Gateway

/// `--bwlimit` of the one-shot commands that transfer data (sync, put, get, migrate): one definition,
/// one meaning (bytes per second).
struct BandwidthOptions: ParsableArguments {
    @Option(help: "Limit transfers to and from the store, e.g. 10M (bytes per second; K, M, G are powers of 1,000). With a network limit schedule in force, the lower rate applies.")
    var bwlimit: String?

    /// The limit in bytes per second, if one was given.
    var bytesPerSecond: Int64? { bwlimit.flatMap(ByteRate.parse) }

    func validate() throws {
        if let bwlimit, ByteRate.parse(bwlimit) == nil { throw ValidationError("--bwlimit '\(bwlimit)' is not a rate (e.g. 500K, 10M, 1G)") }
    }
}

/// `tiergate limit`: the server's network limit schedule.
struct LimitCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "limit",
        abstract: "Add, list and remove the rules of this server's network limit schedule.",
        discussion: """
        A rule limits the server's transfers to and from cloud shares (sync uploads and downloads of the daemon \
        and of `tiergate sync`, `migrate`) on some days between two hours of local time. Where several rules \
        apply, the lowest rate wins; where none does, transfers are unlimited. On-access recall is never \
        limited. A running daemon picks changes up within seconds. See docs/limits.md.
        """,
        subcommands: [Add.self, List.self, Remove.self]
    )

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add a rule: on --days from --start to --end o'clock, at most --rate.")
        @OptionGroup var state: StateOptions
        @Option(help: "Days: mon,tue,… or a range such as mon-fri, or weekdays, weekend, all.") var days: String
        @Option(help: "The first hour the rule applies, 0 to 23 (local time).") var start: Int
        @Option(help: "The hour it stops applying, 1 to 24 (exclusive; after --start).") var end: Int
        @Option(help: "The limit, e.g. 10M (bytes per second; K, M, G are powers of 1,000).") var rate: String

        func validate() throws {
            _ = try rule()
        }

        func rule() throws -> NetworkLimitRule {
            do {
                guard let bytes = ByteRate.parse(rate) else { throw GatewayError("--rate '\(rate)' is not a rate (e.g. 500K, 10M, 1G)") }
                return try NetworkLimitRule(days: try Weekday.parseList(days), startHour: start, endHour: end, bytesPerSecond: bytes)
            } catch let error as GatewayError {
                throw ValidationError(error.description)
            }
        }

        func run() async throws {
            do {
                let rule = try rule()
                let number = try state.directory.addNetworkLimit(rule)
                print("network limit \(number): \(rule.summary)")
            } catch {
                throw fail(error)
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the rules and the limit in force now.")
        @OptionGroup var state: StateOptions
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            do {
                let schedule = try state.directory.networkLimits()
                let now = NetworkLimit(directory: state.directory).status()
                if json {
                    let rules = schedule.rules.enumerated().map { index, rule in
                        ListedRule(number: index + 1, days: rule.days.map(\.rawValue), startHour: rule.startHour, endHour: rule.endHour,
                                   bytesPerSecond: rule.bytesPerSecond)
                    }
                    try printJSON(Listing(rules: rules, active: now))
                    return
                }
                if schedule.rules.isEmpty { print("no network limits: transfers are unlimited") }
                for (index, rule) in schedule.rules.enumerated() { print("\(index + 1): \(rule.summary)") }
                print("in force now: \(now.summary)")
            } catch {
                throw fail(error)
            }
        }

        struct ListedRule: Encodable {
            var number: Int
            var days: [String]
            var startHour: Int
            var endHour: Int
            var bytesPerSecond: Int64
        }

        struct Listing: Encodable {
            var rules: [ListedRule]
            var active: NetworkLimit.Status
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a rule by its number in `tiergate limit list` (later rules move up).")
        @OptionGroup var state: StateOptions
        @Argument(help: "The rule's number.") var number: Int

        func run() async throws {
            do {
                let rule = try state.directory.removeNetworkLimit(number)
                print("removed network limit \(number): \(rule.summary)")
            } catch {
                throw fail(error)
            }
        }
    }
}
