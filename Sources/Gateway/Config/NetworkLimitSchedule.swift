import Foundation

/// A day of the week, as rules of the network limit schedule name it.
public enum Weekday: String, Codable, Sendable, CaseIterable, Comparable {
    case mon, tue, wed, thu, fri, sat, sun

    /// Monday to Friday.
    public static let weekdays: [Weekday] = [.mon, .tue, .wed, .thu, .fri]
    /// Saturday and Sunday.
    public static let weekend: [Weekday] = [.sat, .sun]

    /// The day of `date` in `calendar`'s time zone.
    public init(of date: Date, in calendar: Calendar) {
        // Calendar numbers Sunday 1 … Saturday 7 whatever its first weekday.
        self = [.sun, .mon, .tue, .wed, .thu, .fri, .sat][calendar.component(.weekday, from: date) - 1]
    }

    public static func < (a: Weekday, b: Weekday) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }

    /// Parses a list such as `mon,tue`, `mon-fri`, `weekdays`, `weekend` or `all` (full day names too).
    /// Throws a sentence naming what is not a day.
    public static func parseList(_ text: String) throws -> [Weekday] {
        var days = Set<Weekday>()
        func day(_ name: String) throws -> Weekday {
            let lower = name.lowercased()
            if let day = allCases.first(where: { lower == $0.rawValue || (lower.count > 3 && $0.fullName.hasPrefix(lower)) }) { return day }
            throw GatewayError("'\(name)' is not a day (use mon, tue, wed, thu, fri, sat, sun, a range such as mon-fri, weekdays, weekend or all)")
        }
        for item in text.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) {
            switch item.lowercased() {
            case "weekdays": days.formUnion(weekdays)
            case "weekend": days.formUnion(weekend)
            case "all", "every", "daily": days.formUnion(allCases)
            default:
                let ends = item.split(separator: "-", omittingEmptySubsequences: false).map(String.init)
                if ends.count == 2 {
                    let first = try day(ends[0]), last = try day(ends[1])
                    guard first <= last else {
                        throw GatewayError("'\(item)' runs backwards; a range goes from mon towards sun (split one that wraps, e.g. sat-sun,mon)")
                    }
                    days.formUnion(allCases.filter { $0 >= first && $0 <= last })
                } else {
                    days.insert(try day(item))
                }
            }
        }
        guard !days.isEmpty else { throw GatewayError("no days given (e.g. mon,tue, mon-fri, weekdays, weekend or all)") }
        return days.sorted()
    }

    var fullName: String {
        ["mon": "monday", "tue": "tuesday", "wed": "wednesday", "thu": "thursday", "fri": "friday", "sat": "saturday", "sun": "sunday"][rawValue]!
    }

    /// `days` for people: runs of three or more days as `mon–fri`, `every day` for all seven.
    public static func describe(_ days: [Weekday]) -> String {
        let sorted = Set(days).sorted()
        if sorted.count == 7 { return "every day" }
        var parts: [String] = [], index = 0
        while index < sorted.count {
            var end = index
            while end + 1 < sorted.count, allCases.firstIndex(of: sorted[end + 1])! == allCases.firstIndex(of: sorted[end])! + 1 { end += 1 }
            parts.append(end - index >= 2 ? "\(sorted[index].rawValue)–\(sorted[end].rawValue)"
                                          : sorted[index...end].map(\.rawValue).joined(separator: ","))
            index = end + 1
        }
        return parts.joined(separator: ",")
    }
}

/// One rule of a server's network limit schedule: on `days`, from `startHour` up to (not including)
/// `endHour` local time, transfers to and from stores run at most at `bytesPerSecond`.
///
/// Hours are whole hours 0…24 with start < end; a limit over midnight is two rules (22–24 and 0–6).
public struct NetworkLimitRule: Codable, Sendable, Equatable {
    /// The days the rule applies on (sorted, no repeats).
    public var days: [Weekday]
    /// The first hour the rule applies (0…23, local time).
    public var startHour: Int
    /// The hour the rule stops applying (1…24, local time; exclusive).
    public var endHour: Int
    /// The limit in bytes per second (the same unit as `--bwlimit`).
    public var bytesPerSecond: Int64

    /// A rule; throws a sentence when the hours or rate are out of range.
    public init(days: [Weekday], startHour: Int, endHour: Int, bytesPerSecond: Int64) throws {
        guard !days.isEmpty else { throw GatewayError("a network limit needs at least one day") }
        guard (0...23).contains(startHour) else { throw GatewayError("the start hour \(startHour) is not between 0 and 23") }
        guard (1...24).contains(endHour) else { throw GatewayError("the end hour \(endHour) is not between 1 and 24 (24 is midnight at the end of the day)") }
        guard startHour < endHour else {
            throw GatewayError("the start hour \(startHour) is not before the end hour \(endHour) (the end is exclusive; for a limit over midnight add two rules, e.g. \(startHour)–24 and 0–\(endHour))")
        }
        guard bytesPerSecond > 0 else { throw GatewayError("the rate must be more than 0 bytes per second") }
        self.days = Set(days).sorted()
        self.startHour = startHour
        self.endHour = endHour
        self.bytesPerSecond = bytesPerSecond
    }

    public init(from decoder: any Decoder) throws {
        // config.json is edited by hand: a rule read from it is held to the same checks as one added by the CLI.
        let container = try decoder.container(keyedBy: CodingKeys.self)
        try self.init(days: try container.decode([Weekday].self, forKey: .days), startHour: try container.decode(Int.self, forKey: .startHour),
                      endHour: try container.decode(Int.self, forKey: .endHour), bytesPerSecond: try container.decode(Int64.self, forKey: .bytesPerSecond))
    }

    /// True when the rule applies at `date` in `calendar`'s time zone.
    public func applies(at date: Date, in calendar: Calendar) -> Bool {
        let hour = calendar.component(.hour, from: date)
        return days.contains(Weekday(of: date, in: calendar)) && hour >= startHour && hour < endHour
    }

    /// The rule for people: `mon–fri 9–17, 10 MB/s`.
    public var summary: String {
        "\(Weekday.describe(days)) \(startHour)–\(endHour), \(NetworkLimitSchedule.describe(bytesPerSecond))"
    }
}

/// A registered server's network limit schedule: rules of days, hours and a rate that pace the server's
/// transfers to and from cloud shares (sync uploads and downloads, migration, share copies), never
/// on-access recall. Where several rules apply at once the lowest rate wins; where none applies
/// transfers are unlimited.
public struct NetworkLimitSchedule: Codable, Sendable, Equatable {
    /// The rules, in the order they were added (`tiergate limit list` numbers them from 1).
    public var rules: [NetworkLimitRule]

    /// A schedule of `rules`.
    public init(rules: [NetworkLimitRule] = []) {
        self.rules = rules
    }

    /// In config.json a schedule is the list of its rules.
    public init(from decoder: any Decoder) throws {
        rules = try decoder.singleValueContainer().decode([NetworkLimitRule].self)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rules)
    }

    /// The limit in force: which rule sets it and its rate.
    public struct ActiveLimit: Sendable, Equatable {
        /// The rule's number in `rules` (from 1, as `tiergate limit list` shows it).
        public var ruleNumber: Int
        /// The rule.
        public var rule: NetworkLimitRule
        /// The rate in bytes per second.
        public var bytesPerSecond: Int64 { rule.bytesPerSecond }
    }

    /// The limit in force at `date` (local time of `calendar`): the lowest rate of the rules that apply,
    /// the first such rule on a tie; nil when no rule applies (unlimited). This is the figure `status`
    /// prints and metrics export.
    public func activeLimit(at date: Date, calendar: Calendar = .current) -> ActiveLimit? {
        var best: ActiveLimit?
        for (index, rule) in rules.enumerated() where rule.applies(at: date, in: calendar) {
            if best == nil || rule.bytesPerSecond < best!.bytesPerSecond { best = ActiveLimit(ruleNumber: index + 1, rule: rule) }
        }
        return best
    }

    /// A rate for people, in the units `--rate` and `--bwlimit` take: `10 MB/s`, `500 KB/s`.
    public static func describe(_ bytesPerSecond: Int64) -> String {
        let value = Double(bytesPerSecond)
        for (unit, size) in [("GB/s", 1e9), ("MB/s", 1e6), ("KB/s", 1e3)] where value >= size {
            let scaled = value / size
            return String(format: "%.4g", scaled) + " " + unit
        }
        return "\(bytesPerSecond) B/s"
    }
}
