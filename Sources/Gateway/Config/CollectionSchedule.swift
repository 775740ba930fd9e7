import CloudShare
import Foundation

/// When `tiergate serve` runs the garbage collector of the shares its endpoints sync with: `"gc"` in
/// config.json, e.g. `{"interval": "6h"}`, or `{"interval": "off"}`. Every field is optional.
public struct CollectionSchedule: Codable, Sendable, Equatable {
    /// Time between runs (`6h`), or `off`. Each wait is this ± 10 % (so that servers started together
    /// spread out); the first comes 5 to 25 % of it after the daemon starts.
    public var interval: String?
    /// The collector's grace period (`share gc --grace`; default 24h).
    public var grace: String?
    /// The collector's safety interval (`share gc --safety-interval`; default 1h).
    public var safetyInterval: String?
    /// Repack packs used below this fraction (`share gc --repack-below`); nil: no repacking.
    public var repackBelow: Double?

    /// The default interval: four runs a day; a pack then goes within about a day and a half of
    /// becoming garbage (grace, then two runs a safety interval apart).
    public static let defaultInterval: Double = 6 * 3600

    /// A schedule (every field nil: the defaults).
    public init(interval: String? = nil, grace: String? = nil, safetyInterval: String? = nil, repackBelow: Double? = nil) {
        self.repackBelow = repackBelow
        self.interval = interval
        self.grace = grace
        self.safetyInterval = safetyInterval
    }

    /// Seconds between runs; nil when the schedule is off.
    public var intervalSeconds: Double? {
        guard interval != "off" else { return nil }
        return interval.flatMap(DurationText.parse) ?? Self.defaultInterval
    }

    /// The collector's options from this schedule.
    var options: GarbageCollector.Options {
        ShareAdmin.collectionOptions(dryRun: false, grace: grace.flatMap(DurationText.parse) ?? 86_400,
                                    safetyInterval: safetyInterval.flatMap(DurationText.parse) ?? 3600, lease: 600, repackBelow: repackBelow)
    }

    /// Why the schedule cannot be used, or nil.
    public var problem: String? {
        if let interval, interval != "off" {
            guard let seconds = DurationText.parse(interval), seconds >= 1 else { return "gc.interval must be a duration of at least 1s, or \"off\" (got '\(interval)')" }
        }
        for (name, value) in [("gc.grace", grace), ("gc.safetyInterval", safetyInterval)] {
            if let value, DurationText.parse(value) == nil { return "\(name) must be a duration such as 24h, 90m or 30s (got '\(value)')" }
        }
        if let repackBelow, !(repackBelow > 0 && repackBelow <= 1) { return "gc.repackBelow must be a fraction above 0 and at most 1 (got \(repackBelow))" }
        return nil
    }
}
