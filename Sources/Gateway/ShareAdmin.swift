import Backends
import Chunking
import CloudShare
import Foundation

/// Creating and inspecting cloud shares (`tiergate share …`).
public enum ShareAdmin {
    /// Creates a share at `url` with the given chunking and pack sizes.
    public static func create(url: String, minChunk: Int, averageChunk: Int, maxChunk: Int, packSize: Int,
                              snapshotInterval: UInt64? = nil) async throws -> ShareManifest {
        let chunking = try ChunkingParameters(minSize: minChunk, averageSize: averageChunk, maxSize: maxChunk)
        let store = try StoreLocator.open(url)
        return try await CloudShare.create(in: store, manifest: ShareManifest(chunking: chunking, packSize: packSize,
                                                                             snapshotInterval: snapshotInterval)).manifest
    }

    /// `url` safe to print or log, credentials masked: the CLI's door to ``StoreLocator/redacted(_:)``,
    /// the one URL redactor.
    public static func printable(_ url: String) -> String { StoreLocator.redacted(url) }

    /// Opens the share at `url`.
    public static func open(url: String) async throws -> CloudShare {
        try await CloudShare.open(StoreLocator.open(url))
    }

    /// Figures about the share at `url`.
    public static func info(url: String) async throws -> ShareInfo {
        try await open(url: url).info()
    }

    /// Stored bytes no version of any file needs, as a dry run of ``GarbageCollector`` finds them.
    public struct Garbage: Codable, Sendable {
        /// Whole packs no commit references, older than the grace period: what `share gc` reclaims (in two phases).
        public var reclaimablePacks: Int
        public var reclaimableBytes: Int64
        /// Whole unreferenced packs younger than the grace period (a writer may still commit them).
        public var youngPacks: Int
        public var youngBytes: Int64
        /// Unreferenced chunks inside packs that are partly used (kept until repacking exists).
        public var partlyUsedUnusedBytes: Int64
        /// Bytes of packs minus all of the above: chunks some commit or snapshot references.
        public var referencedBytes: Int64
    }

    /// The garbage of the share at `url` (`share info`): a dry run of the collector, which changes nothing
    /// and takes no lease, so it runs beside writers and collectors. Nil when the log cannot be marked
    /// whole (a gap, an unreadable record): `share verify` says why.
    public static func garbage(url: String, storedBytes: Int64) async -> Garbage? {
        var options = GarbageCollector.Options()
        options.dryRun = true
        let report: GarbageCollector.Report
        do {
            report = try await collectGarbage(url: url, options: options)
        } catch {
            return nil
        }
        let reclaimable = (packs: report.markedPending.packs + report.awaitingDeletion.packs,
                           bytes: report.markedPending.bytes + report.awaitingDeletion.bytes)
        return Garbage(reclaimablePacks: reclaimable.packs, reclaimableBytes: reclaimable.bytes,
                       youngPacks: report.keptYoung.packs, youngBytes: report.keptYoung.bytes,
                       partlyUsedUnusedBytes: report.partlyUsedUnusedBytes,
                       referencedBytes: max(0, storedBytes - reclaimable.bytes - report.keptYoung.bytes - report.partlyUsedUnusedBytes))
    }

    /// Human-readable lines for `share info`.
    public static func describe(_ info: ShareInfo, garbage: Garbage?) -> String {
        let chunking = info.manifest.chunking
        let damaged = info.damagedIndexSegments == 0 ? "" : """

        damaged:      \(info.damagedIndexSegments) index segments (their packs' trailers are read instead; `tiergate share verify --repair` rebuilds them)
        """
        return """
        share:        \(StoreLocator.redacted(info.share))
        format:       \(info.manifest.format) (id \(info.manifest.shareID), created \(info.manifest.created))
        chunking:     \(info.manifest.chunker) min \(ByteFormat.string(chunking.minSize)) / avg \(ByteFormat.string(chunking.averageSize)) / max \(ByteFormat.string(chunking.maxSize))
        pack size:    \(ByteFormat.string(info.manifest.packSize))
        log head:     \(info.headSequence) (history begins \(info.historyBegins == 0 ? "at the first commit" : "at snapshot #\(info.historyBegins)"))
        namespace:    \(info.files) files, \(info.directories) directories
        packs:        \(info.packs)
        chunks:       \(info.chunks)
        logical:      \(ByteFormat.string(info.logicalBytes)) (\(info.logicalBytes) bytes)
        stored:       \(ByteFormat.string(info.storedBytes)) (\(info.storedBytes) bytes)
        dedup ratio:  \(String(format: "%.2f", info.dedupRatio))
        retention:    \(describe(info.retention))\(damaged)\(garbage.map { garbage in """

        referenced:   \(ByteFormat.string(garbage.referencedBytes)) (chunks some version of some file needs)
        garbage:      \(ByteFormat.string(garbage.reclaimableBytes)) in \(garbage.reclaimablePacks) unreferenced packs (`tiergate share gc` reclaims them), \
        \(ByteFormat.string(garbage.youngBytes)) in \(garbage.youngPacks) younger than a day, \(ByteFormat.string(garbage.partlyUsedUnusedBytes)) unused inside partly used packs
        """ } ?? "\ngarbage:      not measured: the log cannot be marked whole (see `tiergate share verify`)")
        """
    }

    /// JSON for `share info --json`.
    public static func json(_ info: ShareInfo, garbage: Garbage?) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        var object = try JSONSerialization.jsonObject(with: encoder.encode(info)) as! [String: Any]
        if let garbage { object["garbage"] = try JSONSerialization.jsonObject(with: encoder.encode(garbage)) }
        object["share"] = StoreLocator.redacted(info.share)
        object["dedupRatio"] = info.dedupRatio
        return String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys]), as: UTF8.self)
    }
}

extension ShareAdmin {
    /// Verifies the share at `url` (see ``ShareVerifier``): `readDataPercent` of its packs read whole
    /// (nil: none), chosen by `seed`; `repair` rebuilds index segments. Progress counts objects checked.
    public static func verify(url: String, readDataPercent: Double?, seed: UInt64?, repair: Bool,
                              progress: ProgressHandler? = nil) async throws -> ShareVerifier.Report {
        let started = Date()
        let options = ShareVerifier.Options(readDataPercent: readDataPercent, seed: seed, repair: repair)
        let verifier = ShareVerifier(store: try StoreLocator.open(url), options: options)
        guard let progress else { return try await verifier.run() }
        return try await verifier.run { (step: ShareVerifier.Progress) in
            progress(JobProgress(phase: step.phase, items: step.done, totalItems: step.total > 0 ? step.total : nil, bytes: step.bytes,
                                 elapsed: Date().timeIntervalSince(started), totalBytes: step.totalBytes, unit: "objects"))
        }
    }

    /// Human-readable lines for `share verify`: one per problem (object: what is wrong; what it affects;
    /// the fix), then a summary.
    public static func describe(_ report: ShareVerifier.Report) -> String {
        var lines: [String] = ["share: \(StoreLocator.redacted(report.share))"]
        for problem in report.problems {
            let tag = problem.isInfo ? "info" : problem.repaired ? "repaired" : "problem"
            var line = "\(tag): \(problem.object): \(problem.kind.rawValue): \(problem.problem)"
            if problem.repaired {
                line += "; rebuilt from the pack's trailer and read back equal"
            } else {
                if !problem.consequence.isEmpty { line += "; affects: \(problem.consequence)" }
                line += "; fix: \(problem.fix)"
            }
            lines.append(line)
        }
        let counts = report.checked
        lines.append("checked \(report.objectsChecked) objects (share.json, \(counts["log records"] ?? 0) log records, \(counts["snapshots"] ?? 0) snapshots, "
                     + "\(counts["packs"] ?? 0) packs, \(counts["index segments"] ?? 0) index segments) and \(counts["chunk references"] ?? 0) referenced chunks; "
                     + "read \(ByteFormat.string(report.bytesRead))")
        if let percent = report.readDataPercent {
            let seed = report.seed.map { ", seed \($0)" } ?? ""
            lines.append("read \(report.packsRead.count) of \(counts["packs"] ?? 0) packs whole (\(String(format: "%g", percent))%\(seed)) and checked every chunk"
                         + (report.packsRead.count < (counts["packs"] ?? 0) ? ": " + report.packsRead.joined(separator: ", ") : ""))
        }
        func tally(_ problems: [ShareVerifier.Problem]) -> String {
            ShareVerifier.Problem.Kind.allCases.compactMap { kind in
                let ofKind = problems.filter { $0.kind == kind }
                guard !ofKind.isEmpty else { return nil }
                let repaired = ofKind.filter(\.repaired).count
                return "\(kind.rawValue): \(ofKind.count)" + (repaired > 0 ? " (\(repaired) repaired)" : "")
            }.joined(separator: ", ")
        }
        let faults = report.problems.filter { !$0.isInfo }, info = report.problems.filter(\.isInfo)
        if !faults.isEmpty { lines.append("problems: " + tally(faults)) }
        if !info.isEmpty { lines.append("info: " + tally(info)) }
        let remaining = faults.filter { !$0.repaired }.count
        lines.append(remaining == 0 ? "result: clean" : "result: \(remaining) problems remain")
        return lines.joined(separator: "\n")
    }

    /// JSON for `share verify --json`: the report, plus `clean` and `objectsChecked`.
    public static func json(_ report: ShareVerifier.Report) throws -> String {
        var object = try JSONSerialization.jsonObject(with: JSONEncoder().encode(report)) as! [String: Any]
        object["share"] = StoreLocator.redacted(report.share)
        object["clean"] = report.isClean
        object["objectsChecked"] = report.objectsChecked
        return String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys]), as: UTF8.self)
    }
}

/// Byte counts for people: 1.5 MiB, 312 KiB.
public enum ByteFormat {
    /// `count` in the largest binary unit that keeps it ≥ 1.
    public static func string<T: BinaryInteger>(_ count: T) -> String {
        var value = Double(count)
        for unit in ["B", "KiB", "MiB", "GiB", "TiB"] {
            if abs(value) < 1024 || unit == "TiB" {
                return unit == "B" ? "\(count) B" : String(format: "%.1f %@", value, unit)
            }
            value /= 1024
        }
        return "\(count) B"
    }
}

/// A byte rate given on the command line: `10M`, `512K`, `1.5G` (bytes per second, powers of 1,000 like
/// network links; a bare number is bytes per second).
public enum ByteRate {
    /// Parses `text`; nil when it is not a positive rate.
    public static func parse(_ text: String) -> Int64? {
        var digits = text.trimmingCharacters(in: .whitespaces)
        if digits.hasSuffix("/s") { digits.removeLast(2) }
        if digits.hasSuffix("B") || digits.hasSuffix("b") { digits.removeLast() }
        let units: [Character: Double] = ["K": 1e3, "k": 1e3, "M": 1e6, "m": 1e6, "G": 1e9, "g": 1e9]
        var factor = 1.0
        if let last = digits.last, let unit = units[last] {
            factor = unit
            digits.removeLast()
        }
        guard let value = Double(digits), value > 0, value * factor >= 1, value * factor < 1e15 else { return nil }
        return Int64(value * factor)
    }
}

extension ShareAdmin {
    /// The retention policy of the share at `url` (`tiergate share retention`).
    public static func retention(url: String) async throws -> RetentionPolicy {
        let share = try await CloudShare.open(try StoreLocator.open(url))
        return try await RetentionPolicy.load(from: share.store)
    }

    /// The rules of a retention policy as the command line gives them.
    public typealias RetentionRules = RetentionPolicy

    /// Sets the retention policy of the share at `url`; a policy without rules keeps every version.
    @discardableResult
    public static func setRetention(_ policy: RetentionPolicy, url: String) async throws -> RetentionPolicy {
        if let problem = policy.problem { throw GatewayError("invalid retention policy: \(problem)") }
        let share = try await CloudShare.open(try StoreLocator.open(url))
        try await policy.save(to: share.store)
        return policy
    }

    /// A retention policy in words.
    public static func describe(_ policy: RetentionPolicy) -> String {
        guard !policy.keepsEverything else { return "every version of every file" }
        var parts: [String] = []
        if let within = policy.keepWithin { parts.append("every version within \(DurationText.string(within))") }
        var last: [String] = []
        for (count, unit) in [(policy.keepDaily, "day"), (policy.keepWeekly, "week"), (policy.keepMonthly, "month")] {
            if let count { last.append("\(count) \(unit)\(count == 1 ? "" : "s")") }
        }
        if !last.isEmpty { parts.append("the last version of each of the newest " + last.joined(separator: ", ")) }
        parts.append("the log head, and every version a registered server may still need")
        return parts.joined(separator: "; ")
    }

    /// The share's log head and its registered servers (`tiergate share servers`).
    public static func servers(url: String) async throws -> (head: UInt64, servers: [ServerRegistration]) {
        let store = try StoreLocator.open(url)
        return (try await CommitLog(store: store).head(), try await ServerRegistration.list(in: store))
    }

    /// Releases a server for good (`tiergate share forget-server`); see ``ServerRegistration/forget(_:in:now:)``.
    public static func forgetServer(_ idOrName: String, url: String) async throws -> [ServerRegistration] {
        try await ServerRegistration.forget(idOrName, in: try StoreLocator.open(url))
    }
}

/// A duration given on the command line: `24h`, `90m`, `30s`, `2d`, `1h30m`, or bare seconds.
public enum DurationText {
    /// Seconds, or nil when `text` is not a duration of zero or more.
    public static func parse(_ text: String) -> Double? {
        if let seconds = Double(text) { return seconds >= 0 && seconds.isFinite ? seconds : nil }
        let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86_400]
        var total = 0.0, number = ""
        for character in text {
            if character.isNumber || character == "." {
                number.append(character)
            } else if let unit = units[character], let value = Double(number) {
                total += value * unit
                number = ""
            } else {
                return nil
            }
        }
        return number.isEmpty && !text.isEmpty ? total : nil
    }

    /// `seconds` as people write it: `1h`, `90s`, `1d2h`.
    public static func string(_ seconds: Double) -> String {
        var left = Int(seconds.rounded()), parts: [String] = []
        for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] where left >= size {
            parts.append("\(left / size)\(unit)")
            left %= size
        }
        return parts.isEmpty ? "0s" : parts.joined()
    }
}

extension ShareAdmin {
    /// The collector's options from the command line's values (seconds).
    public static func collectionOptions(dryRun: Bool, grace: Double, safetyInterval: Double, lease: Double,
                                         repackBelow: Double? = nil) -> GarbageCollector.Options {
        var options = GarbageCollector.Options()
        options.repackBelow = repackBelow
        options.dryRun = dryRun
        options.grace = grace
        options.safetyInterval = safetyInterval
        options.leaseDuration = lease
        return options
    }

    /// Runs the garbage collector on the share at `url` (see ``GarbageCollector``); progress counts
    /// log records read, packs checked and packs deleted.
    public static func collectGarbage(url: String, options: GarbageCollector.Options, progress: ProgressHandler? = nil) async throws -> GarbageCollector.Report {
        let started = Date()
        let collector = GarbageCollector(store: try StoreLocator.open(url), options: options)
        return try await collector.run { step in
            progress?(JobProgress(phase: step.phase, items: step.done, totalItems: step.total, bytes: 0,
                                  elapsed: Date().timeIntervalSince(started), unit: step.phase.hasPrefix("marking") ? "records" : "packs"))
        }
    }

    /// Human-readable lines for `share gc`.
    public static func describe(_ report: GarbageCollector.Report, options: GarbageCollector.Options) -> String {
        func tally(_ tally: GarbageCollector.Tally) -> String {
            "\(tally.packs) pack\(tally.packs == 1 ? "" : "s"), \(ByteFormat.string(tally.bytes))"
        }
        func time(_ seconds: Double) -> String { ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: seconds)) }
        var lines = ["share:             \(StoreLocator.redacted(report.share))"]
        if report.dryRun { lines.append("dry run:           nothing was recorded or deleted; the figures say what a run would do") }
        if report.retention.keepsEverything {
            lines.append("log head:          \(report.logHead) (\(report.markedChunks) chunks referenced by some commit or snapshot; every version of every file is kept)")
        } else {
            lines.append("log head:          \(report.logHead) (\(report.markedChunks) chunks referenced by the versions kept)")
            lines.append("retention:         \(describe(report.retention))")
            let selected = report.keptSelected > 0 ? ", and \(report.keptSelected) older by the daily, weekly and monthly rules" : ""
            lines.append("versions kept:     " + (report.keptFrom == 0 ? "every version" : "every version from #\(report.keptFrom)") + selected)
            if let heldBy = report.heldBy { lines.append("held back by:      \(heldBy)") }
            let compaction = report.compaction
            var history = "history begins:    " + (compaction.historyBegins == 0 ? "at the first commit" : "at snapshot #\(compaction.historyBegins)")
            if compaction.recordsDeleted + compaction.snapshotsDeleted > 0 {
                history += " (log compaction deleted \(compaction.recordsDeleted) log record\(compaction.recordsDeleted == 1 ? "" : "s"), "
                    + "\(ByteFormat.string(compaction.recordsBytes)), and \(compaction.snapshotsDeleted) older snapshot\(compaction.snapshotsDeleted == 1 ? "" : "s"), \(ByteFormat.string(compaction.snapshotsBytes)))"
            }
            lines.append(history)
        }
        lines.append("packs:             \(tally(report.packs))")
        lines.append("deleted:           \(tally(report.deleted))" + (report.recordsFinished > 0 ? " (\(report.recordsFinished) pending record\(report.recordsFinished == 1 ? "" : "s") finished)" : ""))
        var pending = "marked pending:    \(tally(report.markedPending))"
        if report.markedPending.packs > 0 { pending += " (writers stop reusing their chunks; a run after \(DurationText.string(options.safetyInterval)) deletes those still unreferenced)" }
        lines.append(pending)
        if report.repacked.packs > 0 || options.repackBelow != nil {
            let copied = report.repacked.copiedBytes > 0 ? "; \(ByteFormat.string(report.repacked.copiedBytes)) of needed chunks copied into \(report.repacked.newPacks) new pack\(report.repacked.newPacks == 1 ? "" : "s") first" : ""
            lines.append("repacked:          \(tally(GarbageCollector.Tally(packs: report.repacked.packs, bytes: report.repacked.bytes))) marked pending although partly used\(copied)")
        }
        if report.awaitingDeletion.packs > 0 {
            lines.append("awaiting deletion: \(tally(report.awaitingDeletion)) (marked by earlier runs)")
        }
        if let due = report.nextDeletionDue { lines.append("next deletion:     a run at or after \(time(due))") }
        lines.append("kept, referenced:  \(tally(report.keptReferenced))" + (report.keptReferencedAgain.packs > 0 ? " (\(report.keptReferencedAgain.packs) of them were marked pending and referenced again since)" : ""))
        lines.append("kept, too young:   \(tally(report.keptYoung)) (younger than the grace period, \(DurationText.string(options.grace)))")
        if report.keptUnreadable.packs > 0 {
            lines.append("kept, unreadable:  \(tally(report.keptUnreadable)) (neither index segment nor trailer readable; see `tiergate share verify`)")
        }
        if report.abandonedWrites > 0 {
            lines.append("abandoned writes:  \(report.abandonedWrites) removed (temporary files or incomplete uploads of writers stopped mid-write, older than the grace period)")
        }
        let repackHint = options.repackBelow.map { "packs used below \(Int(($0 * 100).rounded())) % are repacked" } ?? "`--repack-below` repacks them"
        lines.append("partly used:       \(tally(report.partlyUsed)) holding \(ByteFormat.string(report.partlyUsedUnusedBytes)) of unreferenced chunks (\(repackHint))")
        for pack in report.partlyUsedPacks.prefix(10) {
            lines.append("  \(pack.pack): \(ByteFormat.string(pack.unusedBytes)) unused of \(ByteFormat.string(pack.bytes))")
        }
        if report.partlyUsedPacks.count > 10 { lines.append("  … and \(report.partlyUsedPacks.count - 10) more (--json lists them all)") }
        return lines.joined(separator: "\n")
    }

    /// JSON for `share gc --json`.
    public static func json(_ report: GarbageCollector.Report) throws -> String {
        var object = try JSONSerialization.jsonObject(with: JSONEncoder().encode(report)) as! [String: Any]
        object["share"] = StoreLocator.redacted(report.share)
        return String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys]), as: UTF8.self)
    }
}
