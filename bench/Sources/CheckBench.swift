import Foundation
import Glibc

/// `tiergate check` on a warm 100,000-entry tree, beside `find PATH -printf '%s\n'` (which also stats
/// every entry) on the same tree in the same run.
enum CheckBench {
    static let group = BenchGroup(name: "check", summary: "tiergate check over a warm 100,000-entry tree; beside find -printf '%s\\n'") { table in
        try run(table)
    }

    static func run(_ table: BenchTable) throws {
        guard FileManager.default.isExecutableFile(atPath: SyncBench.tiergate) else { throw BenchError("\(SyncBench.tiergate) is not built (bench/run builds it)") }
        guard let find = BenchFiles.which("find") else { throw BenchError("find is not on PATH") }
        let folders = 1_000
        let entries = BenchFiles.setting("TIERGATE_BENCH_CHECK_ENTRIES", 100_000)
        let root = BenchFiles.fresh("check")
        defer { try? FileManager.default.removeItem(atPath: root) }
        // 1,000 folders holding the rest as small files: every entry is one name, one stat.
        let filesPerFolder = (entries - folders) / folders
        let content = [UInt8](repeating: 0x61, count: 100)
        for folder in 0..<folders {
            let directory = root + "/d\(folder)"
            mkdir(directory, 0o755)
            for index in 0..<filesPerFolder {
                let fd = open(directory + "/f\(index)", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
                guard fd >= 0 else { throw BenchError("open \(directory)/f\(index): errno \(errno)") }
                _ = content.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                close(fd)
            }
        }
        let total = folders * (filesPerFolder + 1)
        BenchFiles.settle()
        // Warm the dentry and inode caches, then keep the best of three runs of each, interleaved.
        _ = try quietly(find, [root, "-printf", "%s\\n"])
        var checkBest = Double.infinity, findBest = Double.infinity
        for _ in 0..<3 {
            checkBest = min(checkBest, try quietly(SyncBench.tiergate, ["check", root]))
            findBest = min(findBest, try quietly(find, [root, "-printf", "%s\\n"]))
        }
        let walkRate = try walkRate(root)
        table.add("check: \(total) entries, whole process", Double(total) / checkBest, "entries/s", peer: Double(total) / findBest,
                  note: "tiergate check PATH (walk + system probes), best of 3; peer: find PATH -printf '%s\\n' >/dev/null")
        table.add("check: \(total) entries, the walk alone", walkRate, "entries/s", peer: Double(total) / findBest,
                  note: "entriesPerSecond of check's own summary (--json)")
    }

    /// Wall time of `executable arguments…` with its output discarded; exit status 0 or 1 (check's
    /// "errors found") both count as having run.
    static func quietly(_ executable: String, _ arguments: [String]) throws -> Double {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        let started = Date()
        try process.run()
        process.waitUntilExit()
        guard process.terminationReason == .exit, process.terminationStatus <= 1 else {
            throw BenchError("\(executable) \(arguments.joined(separator: " ")) failed with \(process.terminationStatus)")
        }
        return Date().timeIntervalSince(started)
    }

    /// The walk's rate as check measures it.
    static func walkRate(_ root: String) throws -> Double {
        guard let output = PeerTool.output([SyncBench.tiergate, "check", root, "--json"]),
              let document = try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any],
              let summary = document["summary"] as? [String: Any], let rate = summary["entriesPerSecond"] as? Double else {
            throw BenchError("tiergate check --json printed no summary")
        }
        return rate
    }
}
