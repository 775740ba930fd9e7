import Backends
import CloudShare
import Fanotify
import Foundation
import Gateway
import Glibc

/// Tiering figures: namespace download as stubs, full recall beside `cp`, time to first byte of a
/// partial recall through fanotify, and policy evaluation over a million files.
enum TieringBench {
    static let group = BenchGroup(name: "tiering", summary: "stubs/s of a namespace download, recall MB/s beside cp, recall first byte, policy evaluation over 1M files") { table in
        try await run(table)
    }

    static func run(_ table: BenchTable) async throws {
        let root = BenchFiles.fresh("tiering")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let shareURL = "file://\(root)/share"
        _ = try await CloudShare.create(in: try StoreLocator.open(shareURL))

        // Namespace download: a new endpoint receives every file as a stub.
        let count = BenchFiles.setting("TIERGATE_BENCH_STUB_FILES", 50_000)
        let a = root + "/a", b = root + "/b"
        try FileManager.default.createDirectory(atPath: a, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: b, withIntermediateDirectories: true)
        BenchFiles.smallFiles(at: a, count: count, size: 16384)
        let gatewayA = try Gateway(directory: StateDirectory(path: root + "/state-a"), serverName: "a")
        let endpointA = try await gatewayA.addEndpoint(path: a, shareURL: shareURL)
        _ = try await gatewayA.sync(endpointA)
        let gatewayB = try Gateway(directory: StateDirectory(path: root + "/state-b"), serverName: "b")
        _ = try await gatewayB.addEndpoint(path: b, shareURL: shareURL)
        let endpointB = try gatewayB.setTiering("1", TieringConfig(volumeFreeSpacePercent: 0, download: .namespaceOnly))
        BenchFiles.settle()
        let started = Date()
        let report = try await gatewayB.sync(endpointB)
        let seconds = Date().timeIntervalSince(started)
        table.add("tiering: namespace download as stubs", Double(report.stubsCreated) / seconds, "objects/s", note: "\(report.stubsCreated) stubs, file://")

        // Full recall of large files, beside cp of the same bytes.
        let large = a + "/large"
        try FileManager.default.createDirectory(atPath: large, withIntermediateDirectories: true)
        let largeMiB = BenchFiles.setting("TIERGATE_BENCH_RECALL_MIB", 1024)
        BenchFiles.largeFiles(at: large, count: 16, size: (largeMiB << 20) / 16)
        _ = try await gatewayA.sync(endpointA)
        BenchFiles.settle()
        let cpSeconds = try BenchFiles.time("/bin/cp", ["-r", large, root + "/cp-copy"]) + Stopwatch.seconds { BenchFiles.settle() }
        try? FileManager.default.removeItem(atPath: root + "/cp-copy")
        let tiered = try await gatewayA.tier(large)
        guard tiered.files == 16 else { throw BenchError("tiered \(tiered.files) of 16 files: \(tiered.failures.first ?? "")") }
        BenchFiles.settle()
        let recallStarted = Date()
        let recalled = try await gatewayA.recall(large, threads: 8)
        let recallSeconds = Date().timeIntervalSince(recallStarted) + Stopwatch.seconds { BenchFiles.settle() }
        table.add("tiering: full recall, 8 threads", Double(recalled.bytes) / recallSeconds / 1e6, "MB/s", peer: Double(largeMiB << 20) / cpSeconds / 1e6,
                  note: "\(largeMiB) MiB in 16 files from file://, every chunk verified; peer: cp -r of the same bytes")

        // Time to first byte of reads that trigger a partial recall.
        if PreContentMonitor.isSupported(at: a) {
            let share = try await CloudShare.open(try StoreLocator.open(shareURL))
            let runtime = try TieringRuntime(endpoint: endpointA, share: share, state: gatewayA.state)
            defer { runtime.stop() }
            var firstBytes: [Double] = []
            for index in 0..<200 {
                let path = "d\(index % 100)/f\(index)"
                try await runtime.tier(path)
                // The read blocks until the recall (on the cooperative pool) answers: off the pool.
                let full = a + "/" + path
                firstBytes.append(try await BenchFiles.onThread { () throws -> Double in
                    let fd = open(full, O_RDONLY)
                    defer { close(fd) }
                    var byte: UInt8 = 0
                    let start = Date()
                    guard pread(fd, &byte, 1, 4096) == 1 else { throw BenchError("read of the stub \(full) failed: errno \(errno)") }
                    return Date().timeIntervalSince(start)
                })
            }
            firstBytes.sort()
            table.add("tiering: first byte of a partial recall p50", firstBytes[firstBytes.count / 2] * 1000, "ms", note: "fanotify pre-content, file://, 200 stubs of 16 KiB")
            table.add("tiering: first byte of a partial recall p95", firstBytes[firstBytes.count * 95 / 100] * 1000, "ms", note: "")
        } else {
            FileHandle.standardError.write(Data("tiering: fanotify pre-content events unavailable here; first-byte figure not measured\n".utf8))
        }

        // Policy evaluation over a million files (entries read from RocksDB, sorted, selected).
        let files = BenchFiles.setting("TIERGATE_BENCH_POLICY_FILES", 1_000_000)
        let state = try LocalState(path: root + "/policy-db")
        var batch = state.batch(9)
        for index in 0..<files {
            batch.setEntry("dir\(index % 1000)/file\(index)", EntryRecord(kind: .file, fileID: String(format: "%032x", index), size: 1 << 20, mtime: Int64(index) * 1_000_000,
                                                                          ctime: 0, inode: UInt64(index), mode: 0o644, uid: 0, gid: 0, fingerprint: .init(high: 0, low: 0), version: 1))
            if batch.count >= 100_000 { try state.commit(batch, sync: false); batch = state.batch(9) }
        }
        try state.commit(batch, sync: false)
        let volume = try TieringPolicy.volume(of: root)
        let policyStarted = Date()
        let entries = try state.entries(9)
        let heat = try state.heatStore(9).all()
        let picked = TieringPolicy.evaluate(entries: entries, heat: heat, volume: volume, freeSpacePercent: 99, dateDays: 30)
        let policySeconds = Date().timeIntervalSince(policyStarted)
        table.add("tiering: policy evaluation over \(files) files", policySeconds, "s", note: "read entries + heat from RocksDB, sort coldest first, select (\(picked.count) picked)")
        state.close()
    }
}
