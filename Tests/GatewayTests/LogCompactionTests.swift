import Foundation
import Gateway
import Testing

/// Log compaction with the real binary: servers write a snapshot every `--snapshot-interval` commits, a new
/// endpoint starts from it and ends with the same tree, past points still restore, and `share verify` finds a
/// snapshot that differs from the log.
@Suite(.serialized) struct LogCompactionTests {
    @Test func snapshotsFollowTheIntervalAndNewEndpointsAndVerifyAgreeWithTheLog() throws {
        let scratch = Scratch()
        let logs = scratch.path + "/logs", alpha = scratch.path + "/alpha", beta = scratch.path + "/beta"
        for directory in [logs, alpha, beta] { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) }
        let folder = scratch.path + "/share", share = "file://" + folder
        @discardableResult
        func cli(_ arguments: [String], expect status: Int32 = 0) throws -> String {
            try TiergateProcess.expect(status, arguments, logs: logs)
        }
        func snapshots() -> [String] { ((try? FileManager.default.contentsOfDirectory(atPath: folder + "/snapshots")) ?? []).sorted() }

        try cli(["share", "create", share, "--snapshot-interval", "3"])
        try cli(["endpoint", "add", alpha, "--share", share, "--state-dir", scratch.path + "/state-alpha", "--server-name", "alpha"])
        for pass in 1...7 {
            try Data("pass \(pass)\n".utf8).write(to: URL(fileURLWithPath: alpha + "/file-\(pass).txt"))
            try Data("edited in pass \(pass)\n".utf8).write(to: URL(fileURLWithPath: alpha + "/edited.txt"))
            if pass == 5 { try FileManager.default.removeItem(atPath: alpha + "/file-2.txt") }
            try cli(["sync", "--state-dir", scratch.path + "/state-alpha"])
        }
        #expect(snapshots() == ["00000000000000000003", "00000000000000000006"], "\(snapshots())")

        // A new endpoint starts from the newest snapshot and the log after it: the same tree as alpha.
        try cli(["endpoint", "add", beta, "--share", share, "--state-dir", scratch.path + "/state-beta", "--server-name", "beta"])
        try cli(["sync", "--state-dir", scratch.path + "/state-beta"])
        let alphaNames = try FileManager.default.contentsOfDirectory(atPath: alpha).filter { !$0.hasPrefix(".") }.sorted()
        let betaNames = try FileManager.default.contentsOfDirectory(atPath: beta).filter { !$0.hasPrefix(".") }.sorted()
        #expect(alphaNames == betaNames && !betaNames.contains("file-2.txt"), "\(alphaNames) vs \(betaNames)")
        for name in alphaNames {
            #expect(FileManager.default.contents(atPath: alpha + "/" + name) == FileManager.default.contents(atPath: beta + "/" + name), "\(name)")
        }
        // A point between snapshots still restores exactly.
        try cli(["get", share, scratch.path + "/at4", "--at", "4"])
        #expect(FileManager.default.contents(atPath: scratch.path + "/at4/edited.txt") == Data("edited in pass 4\n".utf8))
        #expect(FileManager.default.fileExists(atPath: scratch.path + "/at4/file-2.txt") && !FileManager.default.fileExists(atPath: scratch.path + "/at4/file-5.txt"))
        #expect(try cli(["share", "verify", share]).contains("result: clean"), "a clean share with snapshots")

        // A snapshot that is not the log replayed is reported (and only that one).
        let path = folder + "/snapshots/00000000000000000006"
        var snapshot = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as! [String: Any]
        var entries = snapshot["entries"] as! [String: Any]
        entries["file-2.txt"] = entries["file-1.txt"]
        snapshot["entries"] = entries
        try JSONSerialization.data(withJSONObject: snapshot).write(to: URL(fileURLWithPath: path))
        let report = try cli(["share", "verify", share], expect: 1)
        #expect(report.contains("snapshot differs from the log") && report.contains("snapshots/00000000000000000006") && report.contains("file-2.txt"), "\(report)")
        #expect(!report.contains("snapshots/00000000000000000003"), "\(report)")
    }
}
