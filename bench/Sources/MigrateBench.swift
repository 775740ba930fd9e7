import Backends
import CloudShare
import Foundation
import Gateway
import Glibc

/// `tiergate migrate` (the release binary, as an operator runs it) beside rsync -a and cp -a of the same
/// trees onto the same disk: 100,000 small files, 2 GiB in 8 large files, and an incremental rerun with
/// 1 % of the small files changed.
enum MigrateBench {
    static let group = BenchGroup(name: "migrate", summary: "tiergate migrate of 100,000 small files, 2 GiB of large files and a 1 % incremental rerun, beside rsync -a and cp -a") { table in
        try await run(table)
    }

    static func run(_ table: BenchTable) async throws {
        let tiergate = SyncBench.tiergate
        guard FileManager.default.isExecutableFile(atPath: tiergate) else { throw BenchError("\(tiergate) is not built (bench/run builds it)") }
        guard let rsync = BenchFiles.which("rsync") else { throw BenchError("rsync is not installed (scripts/setup installs it)") }
        let smallCount = BenchFiles.setting("TIERGATE_BENCH_SMALL_FILES", 100_000)
        let largeMiB = BenchFiles.setting("TIERGATE_BENCH_LARGE_MIB", 2048)

        let small = BenchFiles.fresh("migrate-small")
        BenchFiles.smallFiles(at: small, count: smallCount, size: 4096)
        let smallBytes = Int64(smallCount) * 4096
        let work = BenchFiles.fresh("migrate-work")
        let state = work + "/state", url = "file://\(work)/share"
        _ = try await CloudShare.create(in: try StoreLocator.open(url))
        let migrate = [ "migrate", small, url, "--state-dir", state]

        BenchFiles.settle()
        let rsyncSeconds = try BenchFiles.time(rsync, ["-a", small + "/", work + "/rsync/"]) + Stopwatch.seconds { BenchFiles.settle() }
        let seconds = try BenchFiles.time(tiergate, migrate) + Stopwatch.seconds { BenchFiles.settle() }
        table.add("migrate: \(smallCount) files of 4 KiB, files/s", Double(smallCount) / seconds, "files/s", peer: Double(smallCount) / rsyncSeconds,
                  note: "peer: rsync -a to the same disk; \(BenchTable.format(seconds)) s vs \(BenchTable.format(rsyncSeconds)) s (\(BenchTable.format(rsyncSeconds / seconds))× rsync); both include a final sync(2)")
        table.add("migrate: \(smallCount) files of 4 KiB, MB/s", Double(smallBytes) / seconds / 1e6, "MB/s", peer: Double(smallBytes) / rsyncSeconds / 1e6)

        // 1 % of the files rewritten (new content, same size), then both tools run again over the tree.
        let changed = max(1, smallCount / 100)
        var block = [UInt8](repeating: 0x5a, count: 4096)
        for index in stride(from: 0, to: smallCount, by: smallCount / changed).prefix(changed) {
            block[0] = UInt8(truncatingIfNeeded: index)
            let fd = open(small + "/d\(index % 100)/f\(index)", O_WRONLY | O_TRUNC)
            _ = block.withUnsafeBytes { write(fd, $0.baseAddress, 4096) }
            close(fd)
        }
        BenchFiles.settle()
        let rerunRsync = try BenchFiles.time(rsync, ["-a", small + "/", work + "/rsync/"])
        let rerun = try BenchFiles.time(tiergate, migrate)
        table.add("migrate: rerun with \(changed) of \(smallCount) files changed, s", rerun, "s", peer: rerunRsync,
                  note: "peer: rsync -a rerun over the same change (lower is better); \(BenchTable.format(rerunRsync / rerun))× rsync")
        let nothing = try BenchFiles.time(tiergate, migrate)
        let nothingRsync = try BenchFiles.time(rsync, ["-a", small + "/", work + "/rsync/"])
        table.add("migrate: rerun with nothing changed, s", nothing, "s", peer: nothingRsync, note: "peer: rsync -a rerun (lower is better)")
        try? FileManager.default.removeItem(atPath: small)
        try? FileManager.default.removeItem(atPath: work)

        let large = BenchFiles.fresh("migrate-large")
        BenchFiles.largeFiles(at: large, count: 8, size: (largeMiB << 20) / 8)
        let largeBytes = Int64(largeMiB) << 20
        let largeWork = BenchFiles.fresh("migrate-large-work")
        let largeURL = "file://\(largeWork)/share"
        _ = try await CloudShare.create(in: try StoreLocator.open(largeURL))
        BenchFiles.settle()
        let cpSeconds = try BenchFiles.time("/bin/cp", ["-a", large, largeWork + "/cp"]) + Stopwatch.seconds { BenchFiles.settle() }
        try? FileManager.default.removeItem(atPath: largeWork + "/cp")
        BenchFiles.settle()
        let largeSeconds = try BenchFiles.time(tiergate, ["migrate", large, largeURL, "--state-dir", largeWork + "/state"]) + Stopwatch.seconds { BenchFiles.settle() }
        table.add("migrate: \(largeMiB) MiB in 8 large files, MB/s", Double(largeBytes) / largeSeconds / 1e6, "MB/s", peer: Double(largeBytes) / cpSeconds / 1e6,
                  note: "peer: cp -a to the same disk; \(BenchTable.format(largeSeconds)) s vs \(BenchTable.format(cpSeconds)) s (\(BenchTable.format(cpSeconds / largeSeconds))× cp); both include a final sync(2)")
        try? FileManager.default.removeItem(atPath: large)
        try? FileManager.default.removeItem(atPath: largeWork)
    }
}
