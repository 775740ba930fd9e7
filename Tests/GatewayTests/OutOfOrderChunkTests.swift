import Backends
import CloudShare
import Foundation
import Gateway
import Glibc
import Hashing
import Testing

/// A file whose chunks lie in two packs arrives whole however the reads are ordered: chunks are read in
/// pack order, written where they belong, and the ones that came early are read back from the file for
/// its fingerprint. With the real binary, through `tiergate get` and a new endpoint's first sync.
@Suite(.serialized) struct OutOfOrderChunkTests {
    @Test func filesWhoseChunksArriveOutOfOrderAreRestoredAndSyncedWhole() async throws {
        let scratch = Scratch()
        let logs = scratch.path + "/logs"
        try FileManager.default.createDirectory(atPath: logs, withIntermediateDirectories: true)
        let url = "file://" + scratch.path + "/share"
        try TiergateProcess.expect(0, ["share", "create", url], logs: logs)
        let share = try await CloudShare.open(try StoreLocator.open(url))
        // Two chunks, each in a pack of its own; two files that use them in both orders.
        let x = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 1) }, y = (0..<200_000).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ 5) }
        var packs: [String] = []
        for bytes in [x, y] {
            let uploader = share.makeUploader()
            _ = try await uploader.add(id: SHA256.hash(bytes), bytes: bytes)
            try await uploader.finish()
            packs += try await StoreLocator.open(url).listAll(prefix: "packs/").map { String($0.key.split(separator: "/").last!) }
        }
        let refX = ChunkRef(id: SHA256.hash(x), length: UInt32(x.count)), refY = ChunkRef(id: SHA256.hash(y), length: UInt32(y.count))
        func entry(_ chunks: [ChunkRef]) -> NamespaceEntry {
            NamespaceEntry(kind: .file, fileID: UUID().uuidString, size: Int64(chunks.reduce(0) { $0 + Int($1.length) }), mode: 0o644,
                           mtime: 1_700_000_000_000_000_000, uid: 0, gid: 0, chunks: chunks)
        }
        _ = try await share.log.append(Commit(author: "cloud", authorName: "Cloud", packs: Array(Set(packs)),
                                              operations: [.upsert("xy.bin", entry([refX, refY])), .upsert("yx.bin", entry([refY, refX]))]))

        try TiergateProcess.expect(0, ["get", url, scratch.path + "/restored"], logs: logs)
        let endpoint = scratch.path + "/endpoint", state = scratch.path + "/state"
        try FileManager.default.createDirectory(atPath: endpoint, withIntermediateDirectories: true)
        try TiergateProcess.expect(0, ["endpoint", "add", endpoint, "--share", url, "--state-dir", state], logs: logs)
        let synced = try TiergateProcess.expect(0, ["sync", "--state-dir", state], logs: logs)
        for folder in [scratch.path + "/restored", endpoint] {
            let xy = FileManager.default.contents(atPath: folder + "/xy.bin").map { [UInt8]($0) == x + y } ?? false
            let yx = FileManager.default.contents(atPath: folder + "/yx.bin").map { [UInt8]($0) == y + x } ?? false
            #expect(xy && yx, "\(folder): \(synced)")
        }
    }
}
