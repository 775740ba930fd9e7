import Backends
import CloudShare
import Foundation
import Gateway
import Glibc
import Testing

/// A scratch directory for one test, removed at the end.
final class Scratch {
    let path: String
    init() {
        path = NSTemporaryDirectory() + "tiergate-gw-" + UUID().uuidString
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }

    func write(_ relative: String, _ bytes: [UInt8]) {
        let url = URL(fileURLWithPath: path + "/" + relative)
        try! FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try! Data(bytes).write(to: url)
    }

    func read(_ relative: String) -> [UInt8]? {
        (try? Data(contentsOf: URL(fileURLWithPath: path + "/" + relative))).map { [UInt8]($0) }
    }
}

func randomBytes(_ count: Int, seed: UInt64) -> [UInt8] {
    var state = seed | 1
    var out = [UInt8](repeating: 0, count: count)
    for index in out.indices {
        state ^= state << 13; state ^= state >> 7; state ^= state << 17
        out[index] = UInt8(truncatingIfNeeded: state)
    }
    return out
}

@Suite struct TreeRoundTripTests {
    @Test func aTreeStoredIntoAShareReadsBackByteIdentical() async throws {
        let scratch = Scratch()
        let source = scratch.path + "/src"
        var expected: [String: [UInt8]] = [:]
        for index in 0..<60 {
            let path = "dir\(index % 4)/file-\(index)"
            expected[path] = randomBytes(index * 997, seed: UInt64(index) + 3)
            scratch.write("src/" + path, expected[path]!)
        }
        expected["big"] = randomBytes(3 << 20, seed: 99)
        expected["big-copy"] = expected["big"]
        scratch.write("src/big", expected["big"]!)
        scratch.write("src/big-copy", expected["big"]!)
        expected["empty"] = []
        scratch.write("src/empty", [])
        scratch.write("src/thumbs.db", [1])
        symlink("/etc/passwd", source + "/link")

        let store = LocalStore(root: scratch.path + "/share")
        let chunking = try ChunkingParametersForTests.small()
        let share = try await CloudShare.create(in: store, manifest: ShareManifest(chunking: chunking, packSize: 1 << 20))
        let report = try await Migration.run(source: source, share: share)
        #expect(report.copied == expected.count)
        #expect(Set(report.skipped.map(\.path)) == ["thumbs.db", "link"])
        #expect(report.newBytes < report.bytesRead - (3 << 20) + 4096, "the copy of 'big' is deduplicated")

        let restored = try await TreeExport.run(share: try await CloudShare.open(store), destination: scratch.path + "/out")
        #expect(restored.files == expected.count)
        #expect(restored.skipped.isEmpty)
        for (path, bytes) in expected {
            #expect(scratch.read("out/" + path) == bytes, "\(path)")
        }
        let info = try await share.info()
        #expect(info.files == expected.count)
        #expect(info.logicalBytes == Int64(expected.values.reduce(0) { $0 + $1.count }))
        #expect(info.dedupRatio > 1.3)
    }

    @Test func hostileNamesFromTheCloudAreRefusedAndNothingIsWrittenOutside() async throws {
        let scratch = Scratch()
        let store = LocalStore(root: scratch.path + "/share")
        let share = try await CloudShare.create(in: store)
        let entry = NamespaceEntry(kind: .file, fileID: "x", size: 0, mode: 0o644, mtime: 0, uid: 0, gid: 0)
        let hostile = ["../escape", "a/../../escape", "/etc/evil", "a//b", "dot/./x", String(repeating: "n", count: 256), "planted/through-link"]
        var operations = hostile.map { NamespaceOperation.upsert($0, entry) }
        operations.append(.upsert("fine", entry))
        _ = try await share.log.append(Commit(author: "cloud", authorName: "Cloud", operations: operations))
        // A symlink planted inside the destination must not redirect a write.
        try FileManager.default.createDirectory(atPath: scratch.path + "/out", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: scratch.path + "/outside", withIntermediateDirectories: true)
        symlink(scratch.path + "/outside", scratch.path + "/out/planted")

        let report = try await TreeExport.run(share: share, destination: scratch.path + "/out")
        #expect(report.files == 1)
        #expect(Set(report.skipped.map(\.path)) == Set(hostile))
        #expect(try FileManager.default.contentsOfDirectory(atPath: scratch.path + "/outside").isEmpty)
        #expect(!FileManager.default.fileExists(atPath: scratch.path + "/escape"))
    }
}

import Chunking
enum ChunkingParametersForTests {
    static func small() throws -> ChunkingParameters {
        try ChunkingParameters(minSize: 16 << 10, averageSize: 64 << 10, maxSize: 256 << 10)
    }
}
