import Backends
import CloudShare
import Foundation
import Gateway

/// Storing trees into a `file://` share (`tiergate put`), next to `cp -a` of the same tree onto the same disk.
enum StoreBench {
    static let group = BenchGroup(name: "store", summary: "storing 100,000 small files and 2 GiB of large files into a file:// share, beside cp -a") { table in
        try await run(table)
    }

    static func run(_ table: BenchTable) async throws {
        let smallCount = BenchFiles.setting("TIERGATE_BENCH_SMALL_FILES", 100_000)
        let largeMiB = BenchFiles.setting("TIERGATE_BENCH_LARGE_MIB", 2048)

        let small = BenchFiles.fresh("store-small")
        BenchFiles.smallFiles(at: small, count: smallCount, size: 4096)
        try await measure(table, label: "\(smallCount) files of 4 KiB", tree: small, files: smallCount, bytes: Int64(smallCount) * 4096)

        let large = BenchFiles.fresh("store-large")
        BenchFiles.largeFiles(at: large, count: 8, size: (largeMiB << 20) / 8)
        try await measure(table, label: "\(largeMiB) MiB in 8 large files", tree: large, files: 8, bytes: Int64(largeMiB) << 20)
        try? FileManager.default.removeItem(atPath: small)
        try? FileManager.default.removeItem(atPath: large)
    }

    static func measure(_ table: BenchTable, label: String, tree: String, files: Int, bytes: Int64) async throws {
        BenchFiles.settle()
        let copy = BenchFiles.base + "/store-cp"
        try? FileManager.default.removeItem(atPath: copy)
        let cpSeconds = try BenchFiles.time("/bin/cp", ["-a", tree, copy]) + Stopwatch.seconds { BenchFiles.settle() }
        try? FileManager.default.removeItem(atPath: copy)

        let shareRoot = BenchFiles.fresh("store-share")
        let share = try await CloudShare.create(in: LocalStore(root: shareRoot))
        BenchFiles.settle()
        let started = Date()
        let report = try await Migration.run(source: tree, share: share)
        let seconds = Date().timeIntervalSince(started) + Stopwatch.seconds { BenchFiles.settle() }
        guard report.copied == files else { throw BenchError("stored \(report.copied) of \(files) files") }
        table.add("store: \(label), files/s", Double(files) / seconds, "files/s", peer: Double(files) / cpSeconds, note: "peer: cp -a to the same disk; both include a final sync(2)")
        table.add("store: \(label), MB/s", Double(bytes) / seconds / 1e6, "MB/s", peer: Double(bytes) / cpSeconds / 1e6, note: "time \(BenchTable.format(seconds)) s vs cp \(BenchTable.format(cpSeconds)) s (\(BenchTable.format(seconds / cpSeconds))×)")
        try? FileManager.default.removeItem(atPath: shareRoot)
    }
}
