import Backends
import Foundation

/// The result of `tiergate check`: the findings about a folder and the system it is on, the totals of
/// the folder, and the three ways to print them (text for people, JSON and CSV for tools).
public struct CheckReport: Sendable {
    /// The folder checked, as given.
    public var root: String
    /// The share checked, credentials masked; nil when none was given.
    public var share: String?
    /// Every finding: system findings first, then the folder's in walk order.
    public var findings: [CheckFinding]
    /// The folder's figures.
    public var totals: DatasetCheck.Totals

    /// Text output shows at most this many findings of one code (JSON and CSV show all).
    public static let textLimitPerCode = 20

    /// A report from its parts.
    public init(root: String, share: String?, findings: [CheckFinding], totals: DatasetCheck.Totals) {
        self.root = root
        self.share = share
        self.findings = findings
        self.totals = totals
    }

    /// Checks the folder at `path` (never modified, but for one probe file that is removed) and the
    /// system, and the share at `shareURL` when given. Throws only when `path` cannot be opened or listed.
    public static func evaluate(path: String, shareURL: String? = nil) async throws -> CheckReport {
        let dataset = try await OwnThread.run { try DatasetCheck(root: path).run() }
        let system = await SystemCheck(path: path, shareURL: shareURL).run(items: dataset.totals.files + dataset.totals.directories)
        return CheckReport(root: path, share: shareURL.map(StoreLocator.redacted), findings: system + dataset.findings, totals: dataset.totals)
    }

    /// How many findings of `level`.
    public func count(_ level: CheckLevel) -> Int { findings.count { $0.level == level } }

    /// True when some finding is an error: `tiergate check` then exits with status 1.
    public var hasErrors: Bool { findings.contains { $0.level == .error } }

    // MARK: Text

    /// Findings grouped by level, then by code (each code's effect and fix once, then its items, at
    /// most ``textLimitPerCode`` of them), then the summary.
    public func text() -> String {
        var lines = ["tiergate check \(root)" + (share.map { " --share \($0)" } ?? "")]
        for level in CheckLevel.allCases {
            let ofLevel = findings.filter { $0.level == level }
            guard !ofLevel.isEmpty else { continue }
            lines.append("")
            lines.append("\(level == .info ? "info" : level.rawValue + "s") (\(ofLevel.count)):")
            var codes: [CheckCode] = []
            for finding in ofLevel where !codes.contains(finding.code) { codes.append(finding.code) }
            for code in codes {
                let ofCode = ofLevel.filter { $0.code == code }
                let advice = (code.whatHappens.isEmpty ? "" : code.whatHappens + ".") + (code.fix.isEmpty ? "" : " Fix: \(code.fix).")
                if ofCode.allSatisfy(\.isSystem) {
                    for finding in ofCode { lines.append("  \(code.name): \(finding.detail)" + (advice.isEmpty ? "" : " — " + advice)) }
                    continue
                }
                lines.append("  \(code.name) (\(ofCode.count)): \(advice)")
                for finding in ofCode.prefix(Self.textLimitPerCode) {
                    lines.append("    \(finding.isSystem ? "system" : Self.shortened(finding.path)): \(finding.detail)")
                }
                if ofCode.count > Self.textLimitPerCode {
                    lines.append("    … and \(ofCode.count - Self.textLimitPerCode) more (--json or --csv lists all)")
                }
            }
        }
        let t = totals
        lines.append("")
        lines.append("summary: \(t.entries) entries in \(String(format: "%.2f", t.seconds)) s (\(Int(t.entriesPerSecond)) entries/s): "
                     + "\(t.files) files, \(t.directories) directories, \(t.others) other items, \(ByteFormat.string(t.bytes)) (\(t.bytes) bytes), \(t.stubs) stubs")
        lines.append("deepest: \(t.deepestPath.isEmpty ? "-" : Self.shortened(t.deepestPath)) (\(t.deepestDepth) levels); largest directory: \(t.largestDirectory) (\(t.largestDirectoryEntries) entries)")
        lines.append("findings: \(count(.error)) errors, \(count(.warning)) warnings, \(count(.info)) info")
        return lines.joined(separator: "\n")
    }

    /// A path short enough for a line of text: a very long one keeps its start and end (JSON and CSV
    /// keep every path whole).
    static func shortened(_ path: String) -> String {
        guard path.count > 160 else { return path }
        return "\(path.prefix(70))…\(path.suffix(70)) (\(path.count) characters)"
    }

    // MARK: JSON and CSV

    /// One finding as JSON and CSV show it.
    struct Row: Encodable {
        var scope: String
        var path: String
        var level: String
        var code: String
        var detail: String
        var whatHappens: String
        var fix: String
        var skipped: Bool

        init(_ finding: CheckFinding) {
            scope = finding.isSystem ? "system" : "item"
            path = finding.path
            level = finding.level.rawValue
            code = finding.code.name
            detail = finding.detail
            whatHappens = finding.code.whatHappens
            fix = finding.code.fix
            skipped = finding.code.skipsItem
        }
    }

    /// The figures as JSON shows them.
    struct Summary: Encodable {
        var entries, files, directories, others, stubs: Int
        var bytes: Int64
        var deepestPath: String
        var deepestDepth: Int
        var largestDirectory: String
        var largestDirectoryEntries: Int
        var seconds, entriesPerSecond: Double
        var errors, warnings, info: Int
    }

    struct Document: Encodable {
        var root: String
        var share: String?
        var summary: Summary
        var findings: [Row]
    }

    /// One JSON document: `root`, `share`, `summary` and every finding.
    public func json() -> String {
        let t = totals
        let summary = Summary(entries: t.entries, files: t.files, directories: t.directories, others: t.others, stubs: t.stubs, bytes: t.bytes,
                              deepestPath: t.deepestPath, deepestDepth: t.deepestDepth, largestDirectory: t.largestDirectory,
                              largestDirectoryEntries: t.largestDirectoryEntries, seconds: t.seconds, entriesPerSecond: t.entriesPerSecond,
                              errors: count(.error), warnings: count(.warning), info: count(.info))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let data = try! encoder.encode(Document(root: root, share: share, summary: summary, findings: findings.map(Row.init)))
        return String(decoding: data, as: UTF8.self)
    }

    /// The CSV columns, in order.
    public static let csvColumns = ["scope", "path", "level", "code", "detail", "what_happens", "fix", "skipped"]

    /// A header line and one line per finding (``CSV``).
    public func csv() -> String {
        var lines = [Self.csvColumns.joined(separator: ",")]
        for row in findings.map(Row.init) {
            lines.append(CSV.row([row.scope, row.path, row.level, row.code, row.detail, row.whatHappens, row.fix, row.skipped ? "true" : "false"]))
        }
        return lines.joined(separator: "\n")
    }
}
