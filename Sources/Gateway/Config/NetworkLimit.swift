import Backends
import Foundation
import Glibc
import Synchronization

/// The limit one process's transfers to and from cloud shares run under: the network limit schedule of
/// the server's config.json as the file is now, and a fixed `--bwlimit` of the command, the lower of the
/// two. Every store the process opens for sync, migration or a share copy is wrapped with the one
/// ``bucket``, so the limit covers all of its endpoints and both directions together. On-access recall
/// is exempt (see ``StoreTraffic``).
///
/// The schedule is re-read when config.json changes, so `tiergate limit add` reaches a running daemon
/// within a second or two, without a restart.
public final class NetworkLimit: Sendable {
    /// Where the limit in force comes from.
    public enum Source: Sendable, Equatable {
        /// A rule of the schedule.
        case rule(NetworkLimitSchedule.ActiveLimit)
        /// The command's `--bwlimit`.
        case fixed(Int64)
    }

    private let inputs: Inputs
    /// The token bucket every store this process opens is paced through.
    public let bucket: TokenBucket

    /// The limit of the server in `directory` (nil: no server, only `fixedLimit`), lowered to
    /// `fixedLimit` bytes per second when that is lower.
    public init(directory: StateDirectory?, fixedLimit: Int64? = nil) {
        let inputs = Inputs(configFile: directory.map { ConfigFile(path: $0.configPath) }, fixed: fixedLimit)
        self.inputs = inputs
        bucket = TokenBucket(rate: { inputs.current(at: Date())?.bytesPerSecond })
    }

    /// A fixed limit (`--bwlimit`, bytes per second) on top of the schedule; nil for none.
    public var fixedLimit: Int64? {
        get { inputs.fixed.withLock { $0 } }
        set { inputs.fixed.withLock { $0 = newValue } }
    }

    /// The limit in force at `date` and where it comes from; nil when transfers are unlimited.
    public func current(at date: Date = Date()) -> (bytesPerSecond: Int64, source: Source)? {
        inputs.current(at: date)
    }

    /// What the limit is made of; the bucket's rate provider holds it too.
    final class Inputs: Sendable {
        let configFile: ConfigFile?
        let fixed: Mutex<Int64?>

        init(configFile: ConfigFile?, fixed: Int64?) {
            self.configFile = configFile
            self.fixed = Mutex(fixed)
        }

        func current(at date: Date) -> (bytesPerSecond: Int64, source: Source)? {
            let rule = configFile?.current()?.networkLimits.activeLimit(at: date)
            if let fixed = fixed.withLock({ $0 }), fixed <= rule?.bytesPerSecond ?? .max { return (fixed, .fixed(fixed)) }
            return rule.map { ($0.bytesPerSecond, .rule($0)) }
        }
    }

    /// `store`, paced through ``bucket``.
    public func wrap(_ store: any ObjectStore) -> any ObjectStore {
        ThrottledStore(store, bucket: bucket)
    }

}

extension NetworkLimit.Source {
    /// For `status`: `rule 2, mon–fri 9–17` or `--bwlimit`.
    public var summary: String {
        switch self {
        case .rule(let active): "rule \(active.ruleNumber), \(Weekday.describe(active.rule.days)) \(active.rule.startHour)–\(active.rule.endHour)"
        case .fixed: "--bwlimit"
        }
    }
}

extension NetworkLimit {
    /// The limit in force as `status` shows it (text and JSON).
    public struct Status: Codable, Sendable, Equatable {
        /// The rate in bytes per second; nil when transfers are unlimited.
        public var bytesPerSecond: Int64?
        /// The schedule rule that sets it (numbered from 1), when one does.
        public var rule: Int?
        /// `10 MB/s (rule 2, mon–fri 9–17)` or `none`.
        public var summary: String
    }

    /// The limit in force at `date`, for `status`.
    public func status(at date: Date = Date()) -> Status {
        guard let (rate, source) = current(at: date) else { return Status(summary: "none") }
        var rule: Int?
        if case .rule(let active) = source { rule = active.ruleNumber }
        return Status(bytesPerSecond: rate, rule: rule, summary: "\(NetworkLimitSchedule.describe(rate)) (\(source.summary))")
    }
}

extension StateDirectory {
    /// The server's network limit schedule (empty when the server is not registered).
    public func networkLimits() throws -> NetworkLimitSchedule {
        try loadConfig()?.networkLimits ?? NetworkLimitSchedule()
    }

    /// Adds `rule` to the server's schedule (registering the server when it is new); returns its number.
    /// Only config.json changes, so this works beside a running daemon, which picks the rule up itself.
    @discardableResult
    public func addNetworkLimit(_ rule: NetworkLimitRule) throws -> Int {
        var config = try loadConfig() ?? GatewayConfig(serverName: Gateway.hostName())
        config.networkLimits.rules.append(rule)
        try saveConfig(config)
        return config.networkLimits.rules.count
    }

    /// Removes rule `number` (from 1, as `tiergate limit list` shows them) and returns it; later rules
    /// move up one number.
    @discardableResult
    public func removeNetworkLimit(_ number: Int) throws -> NetworkLimitRule {
        guard var config = try loadConfig(), config.networkLimits.rules.indices.contains(number - 1) else {
            let count = try networkLimits().rules.count
            throw GatewayError("there is no network limit \(number) (\(count == 0 ? "the schedule is empty" : "the rules are numbered 1 to \(count)"); see `tiergate limit list`)")
        }
        let rule = config.networkLimits.rules.remove(at: number - 1)
        try saveConfig(config)
        return rule
    }
}
