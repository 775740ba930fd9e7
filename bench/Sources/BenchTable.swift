import Glibc

/// The benchmark report: one row per measured figure, printed as an aligned table.
///
/// Each row names what was measured, its figure and unit, the same figure for a peer tool measured in the
/// same run (so that machine speed cancels out), and a short note on method or caveats.
final class BenchTable {
    /// One measured figure.
    struct Row {
        /// What was measured, prefixed by its group ("chunking: FastCDC cut").
        var name: String
        /// The figure, already in `unit`.
        var figure: Double
        /// Unit of `figure` and `peer` (MB/s uses 10^6 bytes).
        var unit: String
        /// The peer tool's figure for the same work, when there is one.
        var peer: Double?
        /// Method, peer name, caveats.
        var note: String
    }

    private(set) var rows: [Row] = []

    /// Adds a row.
    func add(_ name: String, _ figure: Double, _ unit: String, peer: Double? = nil, note: String = "") {
        rows.append(Row(name: name, figure: figure, unit: unit, peer: peer, note: note))
    }

    /// The table as text: a header, a rule, then one line per row.
    func render() -> String {
        let header = ["name", "figure", "unit", "peer figure", "note"]
        let cells = rows.map { row in
            [row.name, Self.format(row.figure), row.unit, row.peer.map(Self.format) ?? "-", row.note]
        }
        let widths = header.indices.map { column in
            ([header] + cells).map { $0[column].count }.max() ?? 0
        }
        // Figures are right-aligned so that digits line up; text columns are left-aligned.
        let rightAligned: Set<Int> = [1, 3]
        func line(_ row: [String]) -> String {
            row.indices.map { column in
                let padding = String(repeating: " ", count: widths[column] - row[column].count)
                return rightAligned.contains(column) ? padding + row[column] : row[column] + padding
            }.joined(separator: " | ")
        }
        let rule = widths.map { String(repeating: "-", count: $0) }.joined(separator: "-|-")
        return ([line(header), rule] + cells.map(line)).joined(separator: "\n")
    }

    /// Three significant figures at most, no exponent: 2345.6 → "2346", 12.345 → "12.3", 0.01234 → "0.0123".
    static func format(_ value: Double) -> String {
        guard value.isFinite else { return "\(value)" }
        let magnitude = abs(value)
        let decimals = magnitude >= 100 ? 0 : magnitude >= 10 ? 1 : magnitude >= 1 ? 2 : magnitude >= 0.1 ? 3 : 4
        var scaled = (value * pow10(decimals)).rounded() / pow10(decimals)
        if scaled == 0 { scaled = 0 }  // no "-0"
        var text = String(scaled)
        if decimals == 0, text.hasSuffix(".0") { text.removeLast(2) }
        return text
    }

    private static func pow10(_ exponent: Int) -> Double {
        (0..<exponent).reduce(1.0) { product, _ in product * 10 }
    }
}

/// A named set of benchmarks that `tiergate-bench NAME` runs.
struct BenchGroup: Sendable {
    /// The name given on the command line.
    let name: String
    /// One line for `--list`.
    let summary: String
    /// Measures and adds rows to the table.
    let run: @Sendable (BenchTable) async throws -> Void
}

/// Wall-clock timing helpers shared by the groups.
enum Stopwatch {
    /// Seconds taken by `body`.
    static func seconds(_ body: () throws -> Void) rethrows -> Double {
        let clock = ContinuousClock()
        let elapsed = try clock.measure(body)
        return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    }

    /// The best (shortest) of `runs` timings: the least disturbed by other load on the machine.
    static func best(of runs: Int, _ body: () throws -> Void) rethrows -> Double {
        var best = Double.infinity
        for _ in 0..<runs { best = min(best, try seconds(body)) }
        return best
    }

    /// CPU seconds the calling thread spent in `body`: a per-core figure that other processes competing
    /// for the machine do not inflate (the basis `openssl speed` uses too, unless given `-elapsed`).
    /// Only meaningful for single-threaded work that does not wait.
    static func cpuSeconds(_ body: () throws -> Void) rethrows -> Double {
        func now() -> Double {
            var time = timespec()
            clock_gettime(CLOCK_THREAD_CPUTIME_ID, &time)
            return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
        }
        let start = now()
        try body()
        return now() - start
    }

    /// The best of `runs` CPU-time measurements, as `cpuSeconds`.
    static func bestCPU(of runs: Int, _ body: () throws -> Void) rethrows -> Double {
        var best = Double.infinity
        for _ in 0..<runs { best = min(best, try cpuSeconds(body)) }
        return best
    }
}
