import Backends
import Foundation
import Gateway

/// The network limit schedule holding its rate: uploads to a `file://` store through a rule of 10 MB/s for
/// 30 s, beside the unlimited rate of the same uploads in the same run (the peer column).
enum LimitBench {
    static let group = BenchGroup(name: "limit", summary: "a 10 MB/s network limit rule over 30 s of uploads, beside unlimited") { table in
        try await run(table)
    }

    /// Seconds of limited uploads; `TIERGATE_BENCH_LIMIT_SECONDS` overrides the 30 s default.
    static var seconds: Double {
        ProcessInfo.processInfo.environment["TIERGATE_BENCH_LIMIT_SECONDS"].flatMap(Double.init) ?? 30
    }

    static let rate: Int64 = 10_000_000
    static let workers = 8
    static let objectSize = 1 << 20

    static func run(_ table: BenchTable) async throws {
        let root = BenchFiles.base + "/limit-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: root) }
        let store = LocalStore(root: root + "/share")
        // The real path: a rule in force every hour of every day in a server's config.json, read the way
        // the daemon reads it, so the schedule lookup runs once a second as it does in production.
        let state = StateDirectory(path: root + "/state")
        try state.addNetworkLimit(try NetworkLimitRule(days: Weekday.allCases, startHour: 0, endHour: 24, bytesPerSecond: rate))
        let limited = NetworkLimit(directory: state).wrap(store)

        let unlimited = try await uploads(to: store, for: 5)
        let achieved = try await uploads(to: limited, for: seconds)
        let deviation = (achieved / (Double(rate) / 1e6) - 1) * 100
        table.add("limit: uploads under a 10 MB/s rule", achieved, "MB/s", peer: unlimited,
                  note: String(format: "%.0f s, %d uploaders of 1 MiB puts to file://; deviation %+.1f %% (one second of burst included); peer: the same uploads unlimited, 5 s", seconds, workers, deviation))
    }

    /// MB/s of 1 MiB puts by ``workers`` concurrent uploaders that start puts until `duration` has passed;
    /// the clock stops when the last put ends. Each uploader rewrites one key, so the disk holds little.
    static func uploads(to store: any ObjectStore, for duration: Double) async throws -> Double {
        let bytes = [UInt8](repeating: 0x5A, count: objectSize)
        let started = Date()
        let total = try await withThrowingTaskGroup(of: Int.self) { group in
            for worker in 0..<workers {
                group.addTask {
                    var sent = 0
                    while Date().timeIntervalSince(started) < duration {
                        try await store.put("upload-\(worker)", bytes: bytes)
                        sent += bytes.count
                    }
                    return sent
                }
            }
            return try await group.reduce(0, +)
        }
        return Double(total) / 1e6 / Date().timeIntervalSince(started)
    }
}
