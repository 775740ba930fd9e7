import Foundation
import Gateway
import Testing

/// `tiergate share history` and `tiergate get --at … --path …` with the real binary: files, folders, deleted
/// files and renamed folders restore as they were at a past sequence or time.
@Suite(.serialized) struct PointInTimeRestoreTests {
    @Test func versionsOfFilesAndFoldersRestoreAsTheyWere() throws {
        let scratch = Scratch()
        let logs = scratch.path + "/logs", endpoint = scratch.path + "/endpoint", state = scratch.path + "/state"
        try FileManager.default.createDirectory(atPath: logs, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: endpoint + "/reports", withIntermediateDirectories: true)
        let share = "file://" + scratch.path + "/share"
        @discardableResult
        func cli(_ arguments: [String], expect status: Int32 = 0) throws -> String {
            let result = try TiergateProcess.run(arguments, logs: logs)
            guard result.status == status else {
                throw GatewayError("tiergate \(arguments.joined(separator: " ")) ended with \(result.status.map(String.init) ?? "a signal"), not \(status): \(result.output)")
            }
            return result.output
        }
        func write(_ path: String, _ text: String) throws { try Data(text.utf8).write(to: URL(fileURLWithPath: endpoint + "/" + path)) }
        func read(_ path: String) -> String? { FileManager.default.contents(atPath: path).map { String(decoding: $0, as: UTF8.self) } }
        func history(_ path: String) throws -> [ShareHistory.Version] {
            try JSONDecoder().decode([ShareHistory.Version].self, from: Data(try cli(["share", "history", share, path, "--json"]).utf8))
        }

        try cli(["share", "create", share])
        try write("plan.txt", "version one\n")
        try write("gone.txt", "deleted later\n")
        try write("reports/q1.txt", "first quarter\n")
        try cli(["endpoint", "add", endpoint, "--share", share, "--state-dir", state, "--server-name", "alpha"])
        try cli(["sync", "--state-dir", state])
        sleep(1)
        let betweenOneAndTwo = Date()
        sleep(1)
        try write("plan.txt", "version two, longer\n")
        try cli(["sync", "--state-dir", state])
        try FileManager.default.removeItem(atPath: endpoint + "/gone.txt")
        try FileManager.default.moveItem(atPath: endpoint + "/reports", toPath: endpoint + "/archive")
        try cli(["sync", "--state-dir", state])

        let plan = try history("plan.txt")
        #expect(plan.map(\.change) == ["created", "modified"] && plan.map(\.author) == ["alpha", "alpha"], "\(plan)")
        #expect(plan.map(\.size) == [12, 20])
        #expect(try history("gone.txt").map(\.change) == ["created", "deleted"])
        let q1 = try history("reports/q1.txt")
        #expect(q1.map(\.change) == ["created", "renamed to archive/q1.txt"], "\(q1)")
        #expect(try history("archive/q1.txt").map(\.change) == ["renamed from reports/q1.txt"])
        #expect(try cli(["share", "history", share, "plan.txt"]).contains("#\(plan[1].sequence)"))
        #expect(try cli(["share", "history", share, "never.txt"], expect: 1).contains("never was in the share"))

        // A file as it was after its first version.
        let one = scratch.path + "/one"
        try cli(["get", share, one, "--at", String(plan[0].sequence), "--path", "plan.txt"])
        #expect(read(one + "/plan.txt") == "version one\n")
        #expect(!FileManager.default.fileExists(atPath: one + "/gone.txt"), "only the path asked for")
        // A deleted file and a renamed folder, as of a time between the first and second pass.
        let then = scratch.path + "/then"
        let stamp = ISO8601DateFormatter().string(from: betweenOneAndTwo)
        try cli(["get", share, then, "--at", stamp])
        #expect(read(then + "/plan.txt") == "version one\n")
        #expect(read(then + "/gone.txt") == "deleted later\n")
        #expect(read(then + "/reports/q1.txt") == "first quarter\n")
        #expect(!FileManager.default.fileExists(atPath: then + "/archive"))
        // A folder at its old name, alone.
        let folder = scratch.path + "/folder"
        try cli(["get", share, folder, "--at", "#\(q1[0].sequence)", "--path", "reports"])
        #expect(read(folder + "/reports/q1.txt") == "first quarter\n" && !FileManager.default.fileExists(atPath: folder + "/plan.txt"))
        // The head is unchanged by all this.
        let now = scratch.path + "/now"
        try cli(["get", share, now])
        #expect(read(now + "/plan.txt") == "version two, longer\n" && read(now + "/archive/q1.txt") == "first quarter\n")
        #expect(!FileManager.default.fileExists(atPath: now + "/gone.txt"))

        // Bad points say what is wrong.
        #expect(try cli(["get", share, scratch.path + "/x", "--at", "99"], expect: 1).contains("there is no sequence 99"))
        #expect(try cli(["get", share, scratch.path + "/x", "--at", "yesterday"], expect: 64).contains("neither a log sequence"))
        #expect(try cli(["get", share, scratch.path + "/x", "--at", "1", "--path", "archive"], expect: 1).contains("not in the share at that point"))
    }
}
