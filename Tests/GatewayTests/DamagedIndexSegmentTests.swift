import Foundation
import Glibc
import Testing

/// A share whose index segment of one pack is damaged keeps working: the pack's chunks are found from
/// the pack's own trailer, with the real `tiergate` binary.
@Suite(.serialized) struct DamagedIndexSegmentTests {
    /// Two trees stored with `tiergate put` into a share of 1 MiB packs (several packs, small files
    /// sharing them); returns the share's folder and the expected files (share path → content).
    static func makeShare(_ scratch: Scratch) throws -> (folder: String, url: String, files: [String: Data]) {
        let folder = scratch.path + "/share", url = "file://" + scratch.path + "/share"
        #expect(try runTiergate(["share", "create", url, "--pack-size", String(1 << 20)]) == 0)
        var files: [String: Data] = [:]
        for (index, tree) in ["one", "two"].enumerated() {
            for file in 0..<3 {
                let bytes = randomBytes(600_000 + file * 450_000, seed: UInt64(100 * index + file + 1))
                scratch.write("source/\(tree)/big\(file).bin", bytes)
                files["\(tree)/big\(file).bin"] = Data(bytes)
            }
            for file in 0..<5 {
                let bytes = Array("\(tree) small \(file)\n".utf8)
                scratch.write("source/\(tree)/small/\(file).txt", bytes)
                files["\(tree)/small/\(file).txt"] = Data(bytes)
            }
            let put = try TiergateProcess.run(["put", url, scratch.path + "/source/" + tree, "--to", tree], logs: scratch.path)
            #expect(put.status == 0, "\(put.output)")
        }
        return (folder, url, files)
    }

    /// The index segments in a `file://` share folder (pack ids), sorted.
    static func segments(_ folder: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: folder + "/index")) ?? []).sorted()
    }

    /// Every regular file under `root` (relative path → content), skipping Tiergate's own folder.
    static func files(_ root: String) -> [String: Data] {
        MigrationTests.files(root)
    }

    @Test func aTruncatedIndexSegmentStopsNoCommandAndTheFilesInItsPackStillRead() async throws {
        let scratch = Scratch()
        let (folder, url, expected) = try Self.makeShare(scratch)
        let segments = Self.segments(folder)
        #expect(segments.count >= 2, "the test needs several packs: \(segments)")
        let damaged = try #require(segments.first)
        #expect(truncate(folder + "/index/" + damaged, 10) == 0)

        let restored = scratch.path + "/restored"
        let get = try TiergateProcess.run(["get", url, restored], logs: scratch.path)
        #expect(get.status == 0, "\(get.output)")
        let got = Self.files(restored)
        #expect(Set(got.keys) == Set(expected.keys), "\(get.output)")
        for (path, content) in expected { #expect(got[path] == content, "\(path) differs after get") }

        let info = try TiergateProcess.run(["share", "info", url], logs: scratch.path)
        #expect(info.status == 0, "\(info.output)")
        #expect(info.output.contains("namespace:    \(expected.count) files"), "\(info.output)")

        let endpoint = scratch.path + "/endpoint", state = scratch.path + "/state"
        try FileManager.default.createDirectory(atPath: endpoint, withIntermediateDirectories: true)
        let add = try TiergateProcess.run(["endpoint", "add", endpoint, "--share", url, "--state-dir", state, "--server-name", "alpha"], logs: scratch.path)
        #expect(add.status == 0, "\(add.output)")
        let sync = try TiergateProcess.run(["sync", "--state-dir", state], logs: scratch.path)
        #expect(sync.status == 0, "\(sync.output)")
        let synced = Self.files(endpoint)
        #expect(Set(synced.keys) == Set(expected.keys), "\(sync.output)")
        for (path, content) in expected { #expect(synced[path] == content, "\(path) differs on the new endpoint") }
    }
}
