import Foundation
@testable import Gateway
import Testing

/// Which rule of a network limit schedule is in force at a given local time.
@Suite struct NetworkLimitScheduleTests {
    static let calendar: Calendar = {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        return calendar
    }()

    /// 2024-01-01 was a Monday: `day` 0 is Monday, 6 Sunday.
    static func date(day: Int, hour: Int, minute: Int = 0, second: Int = 0) -> Date {
        calendar.date(from: DateComponents(year: 2024, month: 1, day: 1 + day, hour: hour, minute: minute, second: second))!
    }

    static func rule(_ days: String, _ start: Int, _ end: Int, _ rate: Int64) throws -> NetworkLimitRule {
        try NetworkLimitRule(days: try Weekday.parseList(days), startHour: start, endHour: end, bytesPerSecond: rate)
    }

    @Test(arguments: [("mon,tue", [Weekday.mon, .tue]), ("weekdays", Weekday.weekdays), ("weekend", Weekday.weekend),
                      ("all", Weekday.allCases), ("mon-wed,sun", [.mon, .tue, .wed, .sun]), ("Friday, sat", [.fri, .sat]),
                      ("tue,tue", [.tue])] as [(String, [Weekday])])
    func dayListsParse(text: String, days: [Weekday]) throws {
        #expect(try Weekday.parseList(text) == days)
    }

    @Test(arguments: ["funday", "", "fri-mon", "mon-", "m"])
    func nonDaysAreRefusedWithASentence(text: String) {
        #expect(throws: GatewayError.self) { try Weekday.parseList(text) }
    }

    @Test(arguments: [(9, 9), (17, 9), (-1, 5), (0, 25), (24, 24)] as [(Int, Int)])
    func hoursOutOfOrderOrRangeAreRefused(start: Int, end: Int) {
        #expect(throws: GatewayError.self) { try NetworkLimitRule(days: [.mon], startHour: start, endHour: end, bytesPerSecond: 1000) }
    }

    @Test func aRateOfZeroIsRefused() {
        #expect(throws: GatewayError.self) { try NetworkLimitRule(days: [.mon], startHour: 0, endHour: 24, bytesPerSecond: 0) }
    }

    @Test func aRuleAppliesOnItsDaysFromItsStartHourUpToButNotIncludingItsEndHour() throws {
        let schedule = NetworkLimitSchedule(rules: [try Self.rule("mon,tue", 9, 17, 10_000_000)])
        let cases: [(Date, Int64?)] = [
            (Self.date(day: 0, hour: 8, minute: 59, second: 59), nil),
            (Self.date(day: 0, hour: 9), 10_000_000),
            (Self.date(day: 1, hour: 16, minute: 59, second: 59), 10_000_000),
            (Self.date(day: 1, hour: 17), nil),
            (Self.date(day: 2, hour: 12), nil),           // Wednesday
            (Self.date(day: 6, hour: 12), nil),           // Sunday
        ]
        for (date, rate) in cases {
            #expect(schedule.activeLimit(at: date, calendar: Self.calendar)?.bytesPerSecond == rate, "\(date)")
        }
    }

    @Test func aRuleToHour24RunsToMidnightAndOneFromHour0StartsThere() throws {
        let schedule = NetworkLimitSchedule(rules: [try Self.rule("sat", 22, 24, 1000), try Self.rule("sun", 0, 6, 2000)])
        #expect(schedule.activeLimit(at: Self.date(day: 5, hour: 23, minute: 59, second: 59), calendar: Self.calendar)?.bytesPerSecond == 1000)
        #expect(schedule.activeLimit(at: Self.date(day: 6, hour: 0), calendar: Self.calendar)?.bytesPerSecond == 2000)
        #expect(schedule.activeLimit(at: Self.date(day: 6, hour: 6), calendar: Self.calendar) == nil)
        #expect(schedule.activeLimit(at: Self.date(day: 5, hour: 21, minute: 59), calendar: Self.calendar) == nil)
    }

    @Test func whereRulesOverlapTheLowestRateWinsAndTheFirstOnATie() throws {
        let schedule = NetworkLimitSchedule(rules: [
            try Self.rule("all", 0, 24, 50_000_000), try Self.rule("weekdays", 9, 17, 10_000_000),
            try Self.rule("mon", 12, 13, 1_000_000), try Self.rule("mon", 12, 14, 1_000_000),
        ])
        let noon = schedule.activeLimit(at: Self.date(day: 0, hour: 12, minute: 30), calendar: Self.calendar)
        #expect(noon?.bytesPerSecond == 1_000_000 && noon?.ruleNumber == 3)
        #expect(schedule.activeLimit(at: Self.date(day: 0, hour: 13), calendar: Self.calendar)?.ruleNumber == 4)
        #expect(schedule.activeLimit(at: Self.date(day: 1, hour: 10), calendar: Self.calendar)?.ruleNumber == 2)
        #expect(schedule.activeLimit(at: Self.date(day: 5, hour: 10), calendar: Self.calendar)?.ruleNumber == 1)
    }

    @Test func anEmptyScheduleLeavesTransfersUnlimited() {
        #expect(NetworkLimitSchedule().activeLimit(at: Date()) == nil)
    }

    @Test func theLocalTimeOfTheCalendarDecides() throws {
        var tokyo = Calendar(identifier: .gregorian)
        tokyo.timeZone = TimeZone(identifier: "Asia/Tokyo")!    // UTC+9, no daylight saving
        let schedule = NetworkLimitSchedule(rules: [try Self.rule("mon", 9, 10, 1000)])
        // Monday 00:30 UTC is Monday 09:30 in Tokyo.
        #expect(schedule.activeLimit(at: Self.date(day: 0, hour: 0, minute: 30), calendar: tokyo) != nil)
        #expect(schedule.activeLimit(at: Self.date(day: 0, hour: 0, minute: 30), calendar: Self.calendar) == nil)
    }

    @Test func aConfigurationWrittenWithoutTheScheduleLoadsWithNone() throws {
        let json = #"{"serverID":"s","serverName":"n","endpoints":[],"nextEndpointID":1}"#
        let config = try JSONDecoder().decode(GatewayConfig.self, from: Data(json.utf8))
        #expect(config.networkLimits.rules.isEmpty)
        let again = try JSONDecoder().decode(GatewayConfig.self, from: JSONEncoder().encode(config))
        #expect(again == config)
    }

    @Test func aHandEditedRuleOutOfRangeMakesTheConfigurationInvalid() {
        let json = #"{"serverID":"s","serverName":"n","endpoints":[],"nextEndpointID":1,"networkLimits":[{"days":["mon"],"startHour":17,"endHour":9,"bytesPerSecond":1}]}"#
        #expect(throws: (any Error).self) { try JSONDecoder().decode(GatewayConfig.self, from: Data(json.utf8)) }
    }

    @Test func theFixedLimitAndTheScheduleGiveTheLowerRate() throws {
        let directory = StateDirectory(path: NSTemporaryDirectory() + "tiergate-limit-" + UUID().uuidString)
        defer { try? FileManager.default.removeItem(atPath: directory.path) }
        try directory.addNetworkLimit(try Self.rule("all", 0, 24, 2_000_000))
        let limit = NetworkLimit(directory: directory)
        #expect(limit.status().bytesPerSecond == 2_000_000 && limit.status().rule == 1)
        limit.fixedLimit = 1_000_000
        #expect(limit.status() == NetworkLimit.Status(bytesPerSecond: 1_000_000, rule: nil, summary: "1 MB/s (--bwlimit)"))
        limit.fixedLimit = 5_000_000
        #expect(limit.status().summary == "2 MB/s (rule 1, every day 0–24)")
        try directory.removeNetworkLimit(1)
        #expect(limit.status().bytesPerSecond == 5_000_000, "a change of config.json is read again")
    }
}
