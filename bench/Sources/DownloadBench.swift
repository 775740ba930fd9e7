import Backends
import Chunking
import CloudShare
import Foundation
import Gateway
import Glibc
import ObjectStoreServers

/// A new endpoint's first sync (the download path) of 1 GiB of small-chunk data, from a share on moto
/// S3, on Ceph RGW and on SeaweedFS (real stores on loopback, started as the tests start them), beside the
/// same from `file://`, in the same run. Half the data is small files (one chunk each),
/// half is large files cut into 64 KiB chunks, so both the batching of small files and the coalescing of
/// one file's adjacent chunks count. The requests moto served are counted per kind of object, so the row
/// shows the pack GETs a download sent beside the chunks it read.
enum DownloadBench {
    static let group = BenchGroup(name: "downloads", summary: "first sync of 1 GiB of small-chunk data (16 KiB–256 KiB chunks) from S3 (moto, Ceph RGW, SeaweedFS) beside file://; MB/s, pack GETs per chunk") { table in
        try await run(table)
    }

    /// Wall time of one download and the pack GETs the server saw (nil on `file://`).
    struct Measurement {
        var seconds: Double
        var packGets: Int?
        var requests: Int?
    }

    static func run(_ table: BenchTable) async throws {
        let mib = BenchFiles.setting("TIERGATE_BENCH_DOWNLOAD_MIB", 1024)
        let runs = max(1, BenchFiles.setting("TIERGATE_BENCH_DOWNLOAD_RUNS", 2))
        // The replaced per-chunk loop takes minutes from S3; it runs only when asked for.
        let replaced = BenchFiles.setting("TIERGATE_BENCH_DOWNLOAD_REPLACED", 0) != 0
        let root = BenchFiles.fresh("downloads")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let moto = try CountedServer.moto(repository: BackendBench.repository, log: root + "/moto.log")
        setenv("AWS_ACCESS_KEY_ID", moto.accessKeyID, 1)
        setenv("AWS_SECRET_ACCESS_KEY", moto.secretAccessKey, 1)
        unsetenv("AWS_SESSION_TOKEN")

        let tree = root + "/tree"
        try FileManager.default.createDirectory(atPath: tree + "/small", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: tree + "/large", withIntermediateDirectories: true)
        let smallSize = 32 << 10
        let smallCount = (mib << 19) / smallSize
        BenchFiles.smallFiles(at: tree + "/small", count: smallCount, size: smallSize)
        BenchFiles.largeFiles(at: tree + "/large", count: 8, size: (mib << 19) / 8)
        let files = smallCount + 8, bytes = Int64(mib) << 20
        let chunking = try ChunkingParameters(minSize: 16 << 10, averageSize: 64 << 10, maxSize: 256 << 10)

        let local = "file://\(root)/share", s3 = "s3://\(moto.bucket)/downloads?endpoint=\(moto.endpoint)&region=\(moto.region)"
        // The real stores: their URLs name a credentials file, so moto's keys in the environment do not apply.
        var real: [(name: String, url: String)] = []
        for server in RealS3Server.allCases {
            let running = try await server.running()
            real.append((running.version, try await running.freshBucket(prefix: "downloads")))
        }
        var chunks = 0
        for (index, url) in ([local, s3] + real.map(\.url)).enumerated() {
            let share = try await CloudShare.create(in: StoreLocator.open(url), manifest: ShareManifest(chunking: chunking))
            let gateway = try Gateway(directory: StateDirectory(path: root + "/state-upload-\(index)"), serverName: "upload")
            let endpoint = try await gateway.addEndpoint(path: tree, shareURL: url)
            let report = try await gateway.sync(endpoint)
            guard report.result == "success", report.uploaded >= files else { throw BenchError("the upload to \(StoreLocator.redacted(url)) ended: \(report.result)") }
            chunks = Set(try await share.namespace().entries.values.flatMap { $0.chunks.map(\.id) }).count
        }

        var best: [String: Measurement] = [:], perChunk: [String: Measurement] = [:]
        for run in 0..<runs {
            for (index, url) in ([local, s3] + real.map(\.url)).enumerated() {
                let measured = try await download(url, into: root + "/down-\(run)", state: root + "/state-\(run)-\(index)", files: files,
                                                  moto: url == s3 ? moto : nil)
                if best[url].map({ measured.seconds < $0.seconds }) ?? true { best[url] = measured }
                guard replaced, url == local || url == s3 else { continue }
                let old = try await perChunkDownload(url, into: root + "/old-\(run)", moto: url == s3 ? moto : nil)
                if perChunk[url].map({ old.seconds < $0.seconds }) ?? true { perChunk[url] = old }
            }
        }
        for (name, url) in real {
            let fromFile = best[local]!, fromStore = best[url]!
            let ratio = fromStore.seconds / fromFile.seconds
            table.add("downloads: \(mib) MiB, coalesced reads ← \(name), MB/s", Double(bytes) / fromStore.seconds / 1e6, "MB/s", peer: Double(bytes) / fromFile.seconds / 1e6,
                      note: "\(BenchTable.format(fromStore.seconds)) s, \(BenchTable.format(ratio))× the file:// time (goal ≤ 2×: \(ratio <= 2 ? "met" : "not met")); peer: the same from file://")
        }
        let name = "downloads: \(mib) MiB (\(files) files, \(chunks) chunks of 16–256 KiB)"
        for (label, results) in [("coalesced reads", best), ("one GET per chunk (the replaced loop)", perChunk)] where !results.isEmpty {
            let fromFile = results[local]!, fromS3 = results[s3]!
            let ratio = fromS3.seconds / fromFile.seconds
            table.add(name + ", \(label) ← file://, MB/s", Double(bytes) / fromFile.seconds / 1e6, "MB/s", note: "\(BenchTable.format(fromFile.seconds)) s")
            table.add(name + ", \(label) ← S3 (moto), MB/s", Double(bytes) / fromS3.seconds / 1e6, "MB/s", peer: Double(bytes) / fromFile.seconds / 1e6,
                      note: "\(BenchTable.format(fromS3.seconds)) s, \(BenchTable.format(ratio))× the file:// time (goal ≤ 2×: \(ratio <= 2 ? "met" : "not met")); peer: the same from file://")
            if let gets = fromS3.packGets {
                table.add(name + ", \(label) ← S3 (moto), pack GETs per chunk", Double(gets) / Double(chunks), "GET/chunk",
                          note: "\(gets) ranged GETs of packs for \(chunks) chunks; \(fromS3.requests ?? 0) requests in all")
            }
        }
    }

    /// What a download did before reads were coalesced, for the figures beside it: 16 files at a time,
    /// each written chunk by chunk, one `readChunk` (one ranged GET) per chunk.
    static func perChunkDownload(_ url: String, into folder: String, moto: CountedServer?) async throws -> Measurement {
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let share = try await CloudShare.open(StoreLocator.open(url))
        let files = try await share.namespace().entries.filter { $0.value.kind == .file }.map { ($0.key, $0.value) }
        for path in Set(files.map { ($0.0 as NSString).deletingLastPathComponent }) {
            try FileManager.default.createDirectory(atPath: folder + "/" + path, withIntermediateDirectories: true)
        }
        BenchFiles.settle()
        let before = try await moto?.packGets(prefix: "downloads"), requestsBefore = try await moto?.requests()
        let started = Date()
        try await withThrowingTaskGroup(of: Void.self) { group in
            var pending = files[...]
            func start() {
                guard let (path, entry) = pending.popFirst() else { return }
                group.addTask {
                    let fd = open(folder + "/" + path, O_WRONLY | O_CREAT | O_EXCL, 0o600)
                    guard fd >= 0 else { throw BenchError("cannot create \(path)") }
                    defer { close(fd) }
                    for chunk in entry.chunks {
                        let bytes = try await share.readChunk(chunk.id)
                        try bytes.withUnsafeBytes { try Posix.writeAll(fd, $0, path: path) }
                    }
                }
            }
            for _ in 0..<16 { start() }
            while try await group.next() != nil { start() }
        }
        let seconds = Date().timeIntervalSince(started)
        let after = try await moto?.packGets(prefix: "downloads"), requestsAfter = try await moto?.requests()
        return Measurement(seconds: seconds, packGets: after.flatMap { after in before.map { after - $0 } },
                           requests: requestsAfter.flatMap { after in requestsBefore.map { after - $0 - 1 } })
    }

    /// A new endpoint's first sync from the share at `url` into an empty folder (removed afterwards).
    static func download(_ url: String, into folder: String, state: String, files: Int, moto: CountedServer?) async throws -> Measurement {
        defer {
            try? FileManager.default.removeItem(atPath: folder)
            try? FileManager.default.removeItem(atPath: state)
        }
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let gateway = try Gateway(directory: StateDirectory(path: state), serverName: "download")
        let endpoint = try await gateway.addEndpoint(path: folder, shareURL: url)
        BenchFiles.settle()
        let before = try await moto?.packGets(prefix: "downloads"), requestsBefore = try await moto?.requests()
        let started = Date()
        let report = try await gateway.sync(endpoint)
        let seconds = Date().timeIntervalSince(started)
        let after = try await moto?.packGets(prefix: "downloads"), requestsAfter = try await moto?.requests()
        guard report.result == "success", report.downloaded >= files else {
            throw BenchError("the download from \(StoreLocator.redacted(url)) wrote \(report.downloaded) of \(files) files: \(report.result)")
        }
        return Measurement(seconds: seconds, packGets: after.flatMap { after in before.map { after - $0 } },
                           requests: requestsAfter.flatMap { after in requestsBefore.map { after - $0 - 1 } })
    }
}

extension CountedServer {
    /// The ranged GETs of packs moto served for the share under `prefix` of its bucket (its counter per
    /// share and kind of object, `Tests/support/s3_moto_server.py`).
    func packGets(prefix: String) async throws -> Int {
        let response = try await HTTPClient().execute(HTTPRequest(method: "GET", url: "\(endpoint)/__requests?prefix=\(bucket)/\(prefix)"))
        guard response.status == 200, let counts = try? JSONDecoder().decode([String: Int].self, from: Data(response.body)) else {
            throw BenchError("moto's request counter answered HTTP \(response.status)")
        }
        return counts["GET packs"] ?? 0
    }
}
