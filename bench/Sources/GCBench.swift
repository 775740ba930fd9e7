import CloudShare
import Foundation
import Glibc

/// Garbage collection of a share of N files after about 30 % of its stored bytes became unreferenced, with the
/// real `tiergate` CLI as an operator runs it: `share gc` twice (phase one records the unreferenced packs as
/// pending, phase two deletes them), then twice more with `--repack-below`; time and peak RSS of each run,
/// stored bytes before and after, the fraction of the unreferenced bytes reclaimed. The peer is `tiergate share
/// verify` of the same share in the same run: it reads what the mark reads (every log record and index segment)
/// and checks that every chunk a kept version needs is in a pack. After the collection, `share verify` must
/// find the share clean and `tiergate get` must restore the head as the endpoint holds it.
///
/// Two ways of making garbage, each on its own share: whole folders deleted (their files were uploaded
/// together, so their chunks fill whole packs), and files spread over the tree overwritten with new content
/// (their old chunks leave holes in every pack). `GC_FILES` is the size (default 100,000); the tree is the
/// scale group's, generated once and kept; `GC_CHANGE` (`folders` or `scattered`) runs one scenario only, and
/// `GC_REPACK_BELOW` (default 0.5) is the repacking threshold.
enum GCBench {
    static let group = BenchGroup(name: "gc", summary: "share gc of N files (GC_FILES, default 100,000) with ~30 % of the bytes unreferenced (whole folders deleted; scattered files overwritten): time and peak RSS of both phases, with and without --repack-below, bytes reclaimed; beside share verify") { table in
        try await run(table)
    }

    /// The share of stored bytes each scenario makes unreferenced.
    static let garbageShare = 0.3

    /// How a scenario makes garbage.
    enum Change: String, CaseIterable {
        /// Whole folders deleted, in the tree's order, until their bytes reach ``garbageShare`` of the tree.
        case folders = "whole folders deleted"
        /// Three files of every seven overwritten with new content of the same size distribution: the old
        /// content is then about ``garbageShare`` of the stored bytes, spread over every pack.
        case scattered = "scattered files overwritten"
    }

    static func run(_ table: BenchTable) async throws {
        guard FileManager.default.isExecutableFile(atPath: SyncBench.tiergate) else { throw BenchError("\(SyncBench.tiergate) is not built (bench/run builds it)") }
        let files = BenchFiles.setting("GC_FILES", 100_000)
        guard files >= 1000 else { throw BenchError("GC_FILES=\(files): give at least 1000") }
        let repackBelow = ProcessInfo.processInfo.environment["GC_REPACK_BELOW"].flatMap(Double.init) ?? 0.5
        let base = try ScaleBench.baseDirectory()
        let fileSystem = BenchFiles.fileSystem(of: base)
        say("trees and scratch in \(base), on \(fileSystem)")
        let tree = try ScaleBench.cachedTree(base + "/tree-\(files)", files: files)
        let treeFiles = try BenchFiles.listing(tree)
        guard treeFiles.count == files else { throw BenchError("\(tree) holds \(treeFiles.count) files, not \(files): remove it and run again") }
        let scratch = base + "/gc-scratch-\(files)"
        try ScaleBench.remove(scratch)
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer {
            // GC_KEEP keeps the shares, endpoints and restores of a run to look into.
            if ProcessInfo.processInfo.environment["GC_KEEP"] == nil { try? ScaleBench.remove(scratch) }
        }
        let changes = try ProcessInfo.processInfo.environment["GC_CHANGE"].map { setting in
            guard let change = Change.allCases.first(where: { "\($0)" == setting }) else { throw BenchError("GC_CHANGE=\(setting): give folders or scattered") }
            return [change]
        } ?? Change.allCases
        for change in changes {
            try measure(change, tree: tree, treeFiles: treeFiles, scratch: scratch + "/\(change)", repackBelow: repackBelow,
                        fileSystem: fileSystem, table: table)
        }
    }

    /// One scenario on a share of its own: upload, garbage, the collections, the restore check; adds its rows.
    static func measure(_ change: Change, tree: String, treeFiles: [String: Int], scratch: String, repackBelow: Double,
                        fileSystem: String, table: BenchTable) throws {
        let files = treeFiles.count
        let label = "gc \(ScaleBench.grouped(files)), \(change.rawValue)"
        let endpoint = scratch + "/endpoint", state = scratch + "/state", shareFolder = scratch + "/share"
        let share = "file://" + shareFolder
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)

        say("\(change.rawValue): copying the tree, uploading \(ScaleBench.grouped(files)) files (not timed)")
        try BenchFiles.time("/bin/cp", ["-a", tree, endpoint])
        try OperationsBench.tiergate(["share", "create", share])
        try OperationsBench.tiergate(["endpoint", "add", endpoint, "--share", share, "--state-dir", state, "--server-name", "gc-\(change)"])
        _ = try SyncBench.timedSync(state)
        let upload = try ScaleBench.lastPass(state)
        guard upload.result == "success", upload.uploaded >= files else { throw BenchError("the upload committed \(upload.uploaded) items of \(files) files: \(upload.summary)") }

        // Garbage: whole folders deleted, or scattered files overwritten; then a pass commits it.
        let treeBytes = treeFiles.values.reduce(0, +)
        var removedBytes = 0, touched: [String] = [], committedItems = 0
        switch change {
        case .folders:
            // In the order a pass walks them (names sorted by their bytes: d0, d1, d10, …), so the deleted
            // files were uploaded one after the other.
            let folders = Set(treeFiles.keys.map { String($0.prefix { $0 != "/" }) }).sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
            var folder = 0
            while Double(removedBytes) < garbageShare * Double(treeBytes) {
                let inFolder = treeFiles.filter { $0.key.hasPrefix(folders[folder] + "/") }
                removedBytes += inFolder.values.reduce(0, +)
                touched += inFolder.keys
                try ScaleBench.remove(endpoint + "/" + folders[folder])
                folder += 1
            }
            committedItems = folder // a folder's deletion is one operation
        case .scattered:
            var noise = ScaleBench.NoiseBytes(seed: 0x6C_0A7E)
            for index in 0..<files where index % 7 < 3 {
                let path = "d\(index / 1000)/f\(index)"
                removedBytes += treeFiles[path]!
                touched.append(path)
                try ScaleBench.write(noise.file(), to: endpoint + "/" + path)
            }
            committedItems = touched.count
        }
        _ = try SyncBench.timedSync(state)
        let pass = try ScaleBench.lastPass(state)
        let committed = change == .folders ? pass.deleted : pass.uploaded
        guard pass.result == "success", committed == committedItems else {
            throw BenchError("the pass after the change committed \(committed) items, not \(committedItems): \(pass.summary)")
        }
        // Keep only the head: the default policy keeps every version, and so every byte.
        try OperationsBench.tiergate(["share", "retention", share, "--keep-within", "0s"])

        // What the collector will find: the dry run's unreferenced bytes (whole packs and holes in partly used ones).
        let storedBefore = try packBytes(shareFolder)
        let dry = try collect(share, dryRun: true).report
        let unreferenced = dry.markedPending.bytes + dry.partlyUsedUnusedBytes
        // Pack headers and trailers aside, the unreferenced bytes are the old content of the files touched.
        guard abs(Double(unreferenced) - Double(removedBytes)) <= 0.05 * Double(removedBytes) else {
            throw BenchError("\(label): the dry run finds \(unreferenced) bytes unreferenced where the change left \(removedBytes): \(describe(dry))")
        }
        say("\(change.rawValue): \(mebibytes(storedBefore)) MiB stored, \(mebibytes(unreferenced)) MiB unreferenced (\(percent(Double(unreferenced) / Double(storedBefore))) %): \(describe(dry)); \(usage(dry))")

        // The peer: `share verify` reads what the mark reads (log, index segments) and checks that every
        // chunk a kept version needs is in some pack.
        let peer = try SyncBench.timedRun(["share", "verify", share]).seconds
        // Without repacking: phase one records, phase two (after the safety interval) deletes.
        let plain = try collectBothPhases(share)
        let storedPlain = try packBytes(shareFolder)
        // With repacking, on the same share: what the first two runs left in partly used packs.
        let repacking = try collectBothPhases(share, repackBelow: repackBelow)
        let storedRepacked = try packBytes(shareFolder)
        say("\(change.rawValue): stored \(mebibytes(storedBefore)) → \(mebibytes(storedPlain)) MiB without repacking → \(mebibytes(storedRepacked)) MiB with --repack-below \(repackBelow)")

        // The head must restore byte for byte after the collection.
        let restore = scratch + "/restore"
        let restoreSeconds = try SyncBench.timedRun(["get", share, restore]).seconds
        let head = try BenchFiles.listing(endpoint)
        try ScaleBench.verify(restore, holds: head, like: endpoint, extra: touched.filter { head[$0] != nil }.prefix(64).map { $0 }, what: "the restore after gc")
        let verifyAfter = try SyncBench.timedRun(["share", "verify", share]).seconds
        let after = try collect(share, dryRun: true).report
        guard after.markedPending.packs == 0, after.deleted.packs == 0 else { throw BenchError("\(label): a dry run after both phases still finds garbage: \(describe(after))") }

        // The same mark without a retention policy marks every upsert of every record, with no replay: its
        // peak RSS beside the runs above shows what the policy's replay costs.
        try OperationsBench.tiergate(["share", "retention", share, "--keep-everything"])
        let everything = try collect(share, dryRun: true)

        let reclaimedPlain = storedBefore - storedPlain, reclaimedAll = storedBefore - storedRepacked
        table.add("\(label): unreferenced before gc", Double(unreferenced) / 1_048_576, "MiB",
                  note: "\(percent(Double(unreferenced) / Double(storedBefore))) % of \(mebibytes(storedBefore)) MiB in \(dry.packs.packs) packs (sum of packs/); \(mebibytes(dry.markedPending.bytes)) MiB in \(dry.markedPending.packs) whole packs, \(mebibytes(dry.partlyUsedUnusedBytes)) MiB in \(dry.partlyUsed.packs) partly used; retention --keep-within 0s; on \(fileSystem)")
        table.add("\(label): gc phase one (mark pending)", plain.first.seconds, "s", peer: peer,
                  note: "share gc --grace 0s --safety-interval 1s: \(plain.first.report.markedPending.packs) packs recorded; peak RSS \(resident(plain.first.maxRSSKiB)) MiB; peer: share verify of the same share before gc")
        table.add("\(label): gc phase two (delete)", plain.second.seconds, "s", peer: peer,
                  note: "\(plain.second.report.deleted.packs) packs, \(mebibytes(plain.second.report.deleted.bytes)) MiB deleted; peak RSS \(resident(plain.second.maxRSSKiB)) MiB; peer: share verify")
        table.add("\(label): gc peak RSS", Double(max(plain.first.maxRSSKiB, plain.second.maxRSSKiB)) / 1024, "MiB",
                  note: "ru_maxrss of share gc, the larger of the two phases (\(dry.markedChunks) chunks marked before, \(plain.second.report.markedChunks) after); goal at 1,000,000 files: ≤ 256 MiB")
        table.add("\(label): gc dry run, default policy (every version kept): peak RSS", Double(everything.maxRSSKiB) / 1024, "MiB",
                  note: "after the runs above; \(BenchTable.format(everything.seconds)) s, \(everything.report.markedChunks) chunks marked (every upsert of every record, no replay)")
        table.add("\(label): reclaimed without repacking", 100 * Double(reclaimedPlain) / Double(unreferenced), "%",
                  note: "\(mebibytes(reclaimedPlain)) of \(mebibytes(unreferenced)) MiB unreferenced; \(mebibytes(plain.second.report.partlyUsedUnusedBytes)) MiB left in \(plain.second.report.partlyUsed.packs) partly used packs (\(usage(plain.second.report)))")
        table.add("\(label): gc with --repack-below \(repackBelow), phase one + two", repacking.first.seconds + repacking.second.seconds, "s", peer: 2 * peer,
                  note: "\(BenchTable.format(repacking.first.seconds)) + \(BenchTable.format(repacking.second.seconds)) s after the two runs above; \(repacking.first.report.repacked.packs) packs repacked (\(mebibytes(repacking.first.report.repacked.copiedBytes)) MiB copied into \(repacking.first.report.repacked.newPacks) new); peak RSS \(resident(max(repacking.first.maxRSSKiB, repacking.second.maxRSSKiB))) MiB; peer: share verify twice")
        table.add("\(label): reclaimed with --repack-below \(repackBelow)", 100 * Double(reclaimedAll) / Double(unreferenced), "%",
                  note: "\(mebibytes(reclaimedAll)) of \(mebibytes(unreferenced)) MiB; stored after: \(mebibytes(storedRepacked)) MiB; \(mebibytes(repacking.second.report.partlyUsedUnusedBytes)) MiB left unused in \(repacking.second.report.partlyUsed.packs) partly used packs")
        table.add("\(label): restore of the head after gc (get)", restoreSeconds, "s",
                  note: "\(ScaleBench.grouped(head.count)) files; file list, sizes and \(64 + min(64, touched.count)) files' bytes checked against the endpoint; share verify after gc: clean, \(BenchTable.format(verifyAfter)) s")
        say("\(label) done")
    }

    /// One `share gc` run: its time, peak RSS and report.
    struct Run {
        var seconds: Double
        var maxRSSKiB: Int
        var report: GarbageCollector.Report
    }

    /// `tiergate share gc` with the smallest grace and safety interval the CLI takes.
    static func collect(_ share: String, dryRun: Bool = false, repackBelow: Double? = nil) throws -> Run {
        var arguments = ["share", "gc", share, "--grace", "0s", "--safety-interval", "1s", "--json"]
        if dryRun { arguments.append("--dry-run") }
        if let repackBelow { arguments += ["--repack-below", String(repackBelow)] }
        let run = try SyncBench.timedRun(arguments)
        let report = try JSONDecoder().decode(GarbageCollector.Report.self, from: Data(run.output.utf8))
        return Run(seconds: run.seconds, maxRSSKiB: run.maxRSSKiB, report: report)
    }

    /// Phase one, a wait past the safety interval, phase two; throws unless the second run deleted every pack
    /// the first one recorded.
    static func collectBothPhases(_ share: String, repackBelow: Double? = nil) throws -> (first: Run, second: Run) {
        let first = try collect(share, repackBelow: repackBelow)
        usleep(1_500_000)
        let second = try collect(share, repackBelow: repackBelow)
        let recorded = first.report.markedPending.packs + first.report.repacked.packs
        guard second.report.recordsFinished == (recorded > 0 ? 1 : 0), second.report.deleted.packs == recorded,
              second.report.keptReferencedAgain.packs == 0 else {
            throw BenchError("phase two did not delete what phase one recorded: first \(describe(first.report)); second \(describe(second.report))")
        }
        return (first, second)
    }

    /// Bytes of every object under the share's `packs/`.
    static func packBytes(_ shareFolder: String) throws -> Int64 {
        Int64(try BenchFiles.listing(shareFolder + "/packs").values.reduce(0, +))
    }

    /// How full the partly used packs are: the least, median and most used fraction of their bytes.
    static func usage(_ report: GarbageCollector.Report) -> String {
        let used = report.partlyUsedPacks.map { 1 - Double($0.unusedBytes) / Double($0.bytes) }.sorted()
        guard let least = used.first, let most = used.last else { return "no partly used packs" }
        return "partly used packs \(percent(least))–\(percent(most)) % used, median \(percent(used[used.count / 2])) %"
    }

    /// A report's tallies on one line, for progress and errors.
    static func describe(_ report: GarbageCollector.Report) -> String {
        func tally(_ tally: GarbageCollector.Tally) -> String { "\(tally.packs) (\(mebibytes(tally.bytes)) MiB)" }
        return "packs \(tally(report.packs)), marked pending \(tally(report.markedPending)), deleted \(tally(report.deleted)), referenced \(tally(report.keptReferenced)), young \(tally(report.keptYoung)), partly used \(tally(report.partlyUsed)) with \(mebibytes(report.partlyUsedUnusedBytes)) MiB unused, repacked \(report.repacked.packs) (\(mebibytes(report.repacked.copiedBytes)) MiB copied), \(report.markedChunks) chunks marked, records finished \(report.recordsFinished)"
    }

    /// Bytes in MiB, formatted.
    static func mebibytes(_ bytes: some BinaryInteger) -> String { BenchTable.format(Double(bytes) / 1_048_576) }

    /// A peak RSS (`ru_maxrss`, KiB) in MiB, formatted.
    static func resident(_ kibibytes: Int) -> String { BenchTable.format(Double(kibibytes) / 1024) }

    static func percent(_ fraction: Double) -> String { BenchTable.format(fraction * 100) }

    /// A progress line on standard error.
    static func say(_ line: String) {
        FileHandle.standardError.write(Data("gc: \(line)\n".utf8))
    }
}
