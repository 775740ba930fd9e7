import CloudShare
import Foundation
import Gateway
import Testing

/// `share servers` and `share forget-server` with real `tiergate` processes: two servers on one share, one
/// released for good, which then refuses to sync (and changes nothing) until its endpoint is added again.
@Suite(.serialized) struct ServerRegistryTests {
    @Test func aForgottenServerRefusesToSyncUntilItsEndpointIsAddedAgain() throws {
        let scratch = Scratch()
        let logs = scratch.path + "/logs"
        try FileManager.default.createDirectory(atPath: logs, withIntermediateDirectories: true)
        let share = "file://" + scratch.path + "/share"
        @discardableResult
        func cli(_ arguments: [String], expect status: Int32 = 0) throws -> String {
            try TiergateProcess.expect(status, arguments, logs: logs)
        }
        try cli(["share", "create", share])
        for name in ["alpha", "beta"] {
            let endpoint = scratch.path + "/" + name
            try FileManager.default.createDirectory(atPath: endpoint, withIntermediateDirectories: true)
            try Data("from \(name)\n".utf8).write(to: URL(fileURLWithPath: endpoint + "/\(name).txt"))
            try cli(["endpoint", "add", endpoint, "--share", share, "--state-dir", scratch.path + "/state-" + name, "--server-name", name])
            try cli(["sync", "--state-dir", scratch.path + "/state-" + name])
        }
        let listed = try cli(["share", "servers", share, "--json"])
        let servers = try JSONDecoder().decode([ServerRegistration].self, from: Data(listed.utf8))
        #expect(servers.map(\.name) == ["alpha", "beta"] && servers.allSatisfy { $0.isOnline() })
        #expect(try cli(["share", "servers", share]).contains("beta ("))

        // Release beta by name; alpha goes on.
        #expect(try cli(["share", "forget-server", share, "beta"]).contains("forgot beta"))
        #expect(try cli(["share", "forget-server", share, "gamma"], expect: 1).contains("no server 'gamma'"))
        let after = try JSONDecoder().decode([ServerRegistration].self, from: Data(try cli(["share", "servers", share, "--json"]).utf8))
        #expect(after.map(\.name) == ["alpha"])
        try Data("alpha again\n".utf8).write(to: URL(fileURLWithPath: scratch.path + "/alpha/more.txt"))
        try cli(["sync", "--state-dir", scratch.path + "/state-alpha"])

        // beta refuses, says why, and neither uploads its change nor applies alpha's.
        try Data("beta's edit\n".utf8).write(to: URL(fileURLWithPath: scratch.path + "/beta/edit.txt"))
        let refused = try cli(["sync", "--state-dir", scratch.path + "/state-beta"], expect: 1)
        #expect(refused.contains("forget-server") && refused.contains("add it again"), "\(refused)")
        #expect(!FileManager.default.fileExists(atPath: scratch.path + "/beta/more.txt"))
        let status = try cli(["status", "--json", "--state-dir", scratch.path + "/state-beta"])
        #expect(status.contains("\"health\" : \"Error\""), "\(status)")
        try cli(["sync", "--state-dir", scratch.path + "/state-alpha"])
        #expect(!FileManager.default.fileExists(atPath: scratch.path + "/alpha/edit.txt"))

        // Removed and added again, beta syncs: its edit reaches alpha, alpha's file reaches beta.
        try cli(["endpoint", "remove", scratch.path + "/beta", "--state-dir", scratch.path + "/state-beta"])
        try cli(["endpoint", "add", scratch.path + "/beta", "--share", share, "--state-dir", scratch.path + "/state-beta"])
        try cli(["sync", "--state-dir", scratch.path + "/state-beta"])
        try cli(["sync", "--state-dir", scratch.path + "/state-alpha"])
        #expect(FileManager.default.contents(atPath: scratch.path + "/alpha/edit.txt") == Data("beta's edit\n".utf8))
        #expect(FileManager.default.contents(atPath: scratch.path + "/beta/more.txt") == Data("alpha again\n".utf8))
    }
}
