import Backends
import Hashing
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

/// Files and folders renamed in one pass of the real CLI (a whole walk, every record in memory): moves
/// into other folders, a folder renamed and a file inside it renamed too, a swap through a third name.
/// The other server, a restore with `get`, a new namespace-only endpoint (which replays the log) and
/// `share verify` all see the tree as the first server holds it.
@Suite(.serialized) struct RenamePassProcessTests {
    /// Each item under `root` but the endpoint's own folder: "folder" or a file's size and SHA-256, and
    /// its mode.
    static func tree(_ root: String) -> [String: String] {
        var result: [String: String] = [:]
        let walker = FileManager.default.enumerator(atPath: root)
        while let path = walker?.nextObject() as? String {
            if path.hasPrefix(".tiergate") { continue }
            var info = stat()
            guard lstat(root + "/" + path, &info) == 0 else { continue }
            let bytes = (info.st_mode & S_IFMT) == S_IFDIR ? nil : FileManager.default.contents(atPath: root + "/" + path).map { [UInt8]($0) }
            result[path] = (bytes.map { "\($0.count) bytes, \(SHA256.hash($0).hex.prefix(12))" } ?? "folder") + ", mode " + String(info.st_mode & 0o7777, radix: 8)
        }
        return result
    }

    /// What differs between two trees, for a message.
    static func difference(_ got: [String: String], _ expected: [String: String]) -> [String] {
        Set(got.keys).union(expected.keys).sorted().filter { got[$0] != expected[$0] }.map { "\($0): \(got[$0] ?? "missing") (expected \(expected[$0] ?? "nothing"))" }
    }

    /// Endpoints `a` (holding what the scratch has there) and `b` of the share at `url`, each synced once.
    static func twoServers(_ scratch: Scratch, _ url: String) throws -> (a: String, b: String) {
        let a = scratch.path + "/a", b = scratch.path + "/b"
        for (root, name) in [(a, "a"), (b, "b")] {
            try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
            try TiergateProcess.expect(0, ["endpoint", "add", root, "--share", url, "--state-dir", scratch.path + "/state-" + name, "--server-name", name], logs: scratch.path)
            try TiergateProcess.expect(0, ["sync", "--state-dir", scratch.path + "/state-" + name], logs: scratch.path)
        }
        return (a, b)
    }

    /// Runs `command` with `sh` in `folder`; returns its exit status.
    static func shell(_ command: String, in folder: String) throws -> Int32 {
        let shell = Process()
        shell.executableURL = URL(fileURLWithPath: "/bin/sh")
        shell.arguments = ["-c", "cd '\(folder)' && \(command)"]
        try shell.run()
        shell.waitUntilExit()
        return shell.terminationStatus
    }

    /// A folder renamed, a file in it renamed, and another item put at that file's old name (a file moved
    /// there, a new file, a new folder): the item now there takes the old record, not the file that left
    /// it. (Following the moved record by its inode to a path something else now holds committed the
    /// newcomer's content under the renamed file's new name: a file lost, another's content wrong.)
    @Test(arguments: ["mv x/s x/t", "echo 2 > x/t", "mkdir x/t"])
    func aNameVacatedInsideARenamedFolderAndTakenAgainKeepsBothItems(taker: String) throws {
        let scratch = Scratch(), logs = scratch.path
        let url = "file://" + scratch.path + "/share"
        try TiergateProcess.expect(0, ["share", "create", url], logs: logs)
        scratch.write("a/u/t", Array("1\n".utf8))
        scratch.write("a/u/s", Array("3\n".utf8))
        let (a, b) = try Self.twoServers(scratch, url)
        #expect(try Self.shell("mv u x && mv x/t x/u && \(taker)", in: a) == 0)
        try TiergateProcess.expect(0, ["sync", "--state-dir", scratch.path + "/state-a"], logs: logs)
        try TiergateProcess.expect(0, ["sync", "--state-dir", scratch.path + "/state-b"], logs: logs)
        let expected = Self.tree(a)
        #expect(FileManager.default.contents(atPath: a + "/x/u") == Data("1\n".utf8), "the renamed file, as written")
        #expect(Self.difference(Self.tree(b), expected).isEmpty, "the other server: \(Self.difference(Self.tree(b), expected))")
        try TiergateProcess.expect(0, ["get", url, scratch.path + "/restored"], logs: logs)
        let restored = Self.tree(scratch.path + "/restored")
        #expect(Self.difference(restored, expected).isEmpty, "get: \(Self.difference(restored, expected))")
    }

    /// A file put where a folder was, or a folder where a file was, in one pass: the other server, which
    /// changed nothing, takes the new item without a conflict (the share's operations leave the name
    /// before anything takes it), and a moved item is a rename. (A file at a folder's old name reached
    /// the other server before the folder's items left it, so its unchanged folder was moved aside as a
    /// conflict copy and uploaded back.)
    @Test(arguments: [
        ("mv u t/n49 && mv t/n21 u", "renamed 2, deleted 0;"),
        ("mv r r2 && echo 9 > r", "renamed 1, deleted 0;"),
        ("rm -r u && echo 9 > u", "renamed 0, deleted 1;"),
        ("mv u/f f2 && rm -r u && mv f2 u", "renamed 0, deleted 1;"),
        ("mv t/n21 t/m && mkdir t/n21 && echo 5 > t/n21/z", "renamed 1, deleted 0;"),
        ("mv t/n21 t/m && mv u t/n21", "renamed 2, deleted 0;"),
        // A folder renamed and its name taken by another folder moved there: two renames.
        ("mv u x && mv t u", "renamed 2, deleted 0;"),
        // A swap through a third name: one of the two arrives as a rename, the other as new.
        ("mv u x && mv t/n21 u && mv x t/n21", "renamed 1, deleted 1;"),
    ])
    func anItemOfAnotherKindTakingANameArrivesWithoutAConflict(change: String, renames: String) throws {
        let scratch = Scratch(), logs = scratch.path
        let url = "file://" + scratch.path + "/share"
        try TiergateProcess.expect(0, ["share", "create", url], logs: logs)
        scratch.write("a/u/f", Array("1\n".utf8))
        scratch.write("a/u/sub/g", Array("2\n".utf8))
        scratch.write("a/t/n21", Array("3\n".utf8))
        try FileManager.default.createDirectory(atPath: scratch.path + "/a/r", withIntermediateDirectories: true)
        let (a, b) = try Self.twoServers(scratch, url)
        #expect(try Self.shell(change, in: a) == 0)
        let upload = try TiergateProcess.expect(0, ["sync", "--state-dir", scratch.path + "/state-a"], logs: logs)
        #expect(upload.contains(renames), "\(upload)")
        let download = try TiergateProcess.expect(0, ["sync", "--state-dir", scratch.path + "/state-b"], logs: logs)
        #expect(download.contains("uploaded 0 ") && download.contains(" 0 conflicts, 0 items not syncing"), "\(download)")
        let expected = Self.tree(a)
        #expect(Self.difference(Self.tree(b), expected).isEmpty, "the other server: \(Self.difference(Self.tree(b), expected))")
        try TiergateProcess.expect(0, ["get", url, scratch.path + "/restored"], logs: logs)
        let restored = Self.tree(scratch.path + "/restored")
        #expect(Self.difference(restored, expected).isEmpty, "get: \(Self.difference(restored, expected))")
        try TiergateProcess.expect(0, ["share", "verify", url], logs: logs)
    }

    /// A commit that puts a file at a synced, empty folder's path without deleting the folder first (as
    /// servers before this order wrote): the folder, holding nothing, gives way without a conflict.
    @Test func aFileArrivingAtAnEmptySyncedFolderReplacesIt() async throws {
        let scratch = Scratch(), logs = scratch.path
        let url = "file://" + scratch.path + "/share"
        try TiergateProcess.expect(0, ["share", "create", url], logs: logs)
        let b = scratch.path + "/b"
        try FileManager.default.createDirectory(atPath: b + "/u", withIntermediateDirectories: true)
        try TiergateProcess.expect(0, ["endpoint", "add", b, "--share", url, "--state-dir", scratch.path + "/state-b", "--server-name", "b"], logs: logs)
        try TiergateProcess.expect(0, ["sync", "--state-dir", scratch.path + "/state-b"], logs: logs)

        let writer = try await CloudShare.open(LocalStore(root: scratch.path + "/share"))
        let bytes = randomBytes(3000, seed: 5)
        let uploader = writer.makeUploader()
        try await uploader.add(id: SHA256.hash(bytes), bytes: bytes)
        let entry = NamespaceEntry(kind: .file, fileID: NamespaceEntry.newFileID(), size: Int64(bytes.count), mode: 0o644, mtime: 1_000_000_000,
                                   uid: getuid(), gid: getgid(), chunks: [ChunkRef(id: SHA256.hash(bytes), length: UInt32(bytes.count))],
                                   fingerprint: XXH3.hash128(bytes).description)
        let log = writer.log
        _ = try await writer.appendCommit(author: "w", authorName: "w", operations: [.upsert("u", entry)], uploader: uploader) { try await log.append($0) }

        let pass = try TiergateProcess.expect(0, ["sync", "--state-dir", scratch.path + "/state-b"], logs: logs)
        #expect(pass.contains(" 0 conflicts, 0 items not syncing") && pass.contains("uploaded 0 "), "\(pass)")
        #expect(scratch.read("b/u") == bytes)
        #expect(Set(Self.tree(b).keys) == ["u"])
    }

    /// One server deletes a file and a folder that the other renames (neither modifies them): the renamed
    /// items are kept, whichever server's pass reaches the share first, as a modify is kept against a
    /// delete. (When the rename came first, the delete followed the items to their new names.) An item
    /// the deleting server moved, not deleted, ends where it moved it.
    @Test(arguments: [true, false])
    func aRenameRacingADeleteKeepsTheItemInEitherOrder(renameFirst: Bool) throws {
        let scratch = Scratch()
        let url = "file://" + scratch.path + "/share"
        try TiergateProcess.expect(0, ["share", "create", url], logs: scratch.path)
        scratch.write("a/f", Array("f0\n".utf8))
        scratch.write("a/d/x", Array("x0\n".utf8))
        scratch.write("a/d/sub/y", Array("y0\n".utf8))
        scratch.write("a/m", Array("m0\n".utf8))
        let (a, b) = try Self.twoServers(scratch, url)
        #expect(try Self.shell("rm f && rm -r d && mv m m-moved-by-a", in: a) == 0)
        #expect(try Self.shell("mv f f2 && mv d d2 && mv m m-moved-by-b", in: b) == 0)
        let order = renameFirst ? ["b", "a"] : ["a", "b"]
        for _ in 0..<2 {
            for name in order { try TiergateProcess.expect(0, ["sync", "--state-dir", scratch.path + "/state-" + name], logs: scratch.path) }
        }
        let expected = Self.tree(a)
        #expect(scratch.read("a/f2") == Array("f0\n".utf8) && scratch.read("a/d2/x") == Array("x0\n".utf8)
                && scratch.read("a/d2/sub/y") == Array("y0\n".utf8), "\(expected.keys.sorted())")
        #expect(Set(expected.keys).intersection(["f", "d", "m", "m-moved-by-a", "m-moved-by-b"]).count == 1, "m once: \(expected.keys.sorted())")
        #expect(Self.difference(Self.tree(b), expected).isEmpty, "the other server: \(Self.difference(Self.tree(b), expected))")
        try TiergateProcess.expect(0, ["get", url, scratch.path + "/restored"], logs: scratch.path)
        #expect(Self.difference(Self.tree(scratch.path + "/restored"), expected).isEmpty)
    }

    /// The same race when the commit that last wrote the renamed file can no longer be read: the deleting
    /// server cannot fetch it again, so its delete goes on (its own, as before); the pass neither fails
    /// nor stops, and both servers end alike.
    @Test func aRenameRacingADeleteWhoseContentCannotBeReadLetsTheDeleteGoOn() throws {
        let scratch = Scratch()
        let url = "file://" + scratch.path + "/share"
        try TiergateProcess.expect(0, ["share", "create", url], logs: scratch.path)
        scratch.write("a/f", Array("f0\n".utf8))
        let (a, b) = try Self.twoServers(scratch, url)
        scratch.write("a/g", Array("g0\n".utf8))
        for name in ["a", "b"] { try TiergateProcess.expect(0, ["sync", "--state-dir", scratch.path + "/state-" + name], logs: scratch.path) }
        #expect(try Self.shell("rm f", in: a) == 0)
        #expect(try Self.shell("mv f f2", in: b) == 0)
        try TiergateProcess.expect(0, ["sync", "--state-dir", scratch.path + "/state-b"], logs: scratch.path)
        try FileManager.default.removeItem(atPath: scratch.path + "/share/log/00000000000000000001")
        for _ in 0..<2 {
            for name in ["a", "b"] { try TiergateProcess.expect(0, ["sync", "--state-dir", scratch.path + "/state-" + name], logs: scratch.path) }
        }
        #expect(Self.tree(a) == ["g": "3 bytes, \(SHA256.hash(Array("g0\n".utf8)).hex.prefix(12)), mode 644"], "\(Self.tree(a))")
        #expect(Self.difference(Self.tree(b), Self.tree(a)).isEmpty, "\(Self.difference(Self.tree(b), Self.tree(a)))")
    }

    @Test func renamesOfFilesAndFoldersInOnePassArriveEverywhere() throws {
        let scratch = Scratch(), logs = scratch.path
        let url = "file://" + scratch.path + "/share"
        try TiergateProcess.expect(0, ["share", "create", url], logs: logs)
        for folder in 0..<6 {
            scratch.write("a/p\(folder)/x", randomBytes(1000 + folder, seed: UInt64(folder + 1)))
            scratch.write("a/p\(folder)/sub/y", randomBytes(2000 + folder, seed: UInt64(folder + 11)))
        }
        for file in 0..<4 { scratch.write("a/t\(file)", randomBytes(500 + file, seed: UInt64(file + 21))) }
        scratch.write("a/q/keep", randomBytes(300, seed: 31))
        let (a, b) = try Self.twoServers(scratch, url), c = scratch.path + "/c"
        #expect(Self.difference(Self.tree(b), Self.tree(a)).isEmpty, "the first download: \(Self.difference(Self.tree(b), Self.tree(a)))")
        for (from, to) in [("p0", "r0"), ("p1", "q/p1"), ("p2", "swap"), ("p3", "p2"), ("swap", "p3"), ("t0", "p4/t0"),
                           ("t1", "t1-renamed"), ("p5/x", "p5/sub/x2"), ("p4", "r4"), ("r4/x", "r4/x-renamed")] {
            #expect(rename(a + "/" + from, a + "/" + to) == 0, "mv \(from) \(to)")
        }
        let pass = try TiergateProcess.expect(0, ["sync", "--state-dir", scratch.path + "/state-a"], logs: logs)
        // Seven renames (the swap through a third name reads as two folders whose content changed), and
        // the file renamed inside a renamed folder is a rename too, not a delete and an upload.
        #expect(pass.contains("whole tree") && pass.contains("renamed 7, deleted 0;"), "\(pass)")
        try TiergateProcess.expect(0, ["sync", "--state-dir", scratch.path + "/state-b"], logs: logs)
        let expected = Self.tree(a)
        #expect(Self.difference(Self.tree(b), expected).isEmpty, "the other server: \(Self.difference(Self.tree(b), expected))")
        try TiergateProcess.expect(0, ["get", url, scratch.path + "/restored"], logs: logs)
        let restored = Self.tree(scratch.path + "/restored")
        #expect(Self.difference(restored, expected).isEmpty, "get: \(Self.difference(restored, expected))")
        try FileManager.default.createDirectory(atPath: c, withIntermediateDirectories: true)
        try TiergateProcess.expect(0, ["endpoint", "add", c, "--share", url, "--state-dir", scratch.path + "/state-c", "--server-name", "c"], logs: logs)
        try TiergateProcess.expect(0, ["endpoint", "tiering", c, "--free-space", "0", "--download", "namespace-only", "--state-dir", scratch.path + "/state-c"], logs: logs)
        try TiergateProcess.expect(0, ["sync", "--state-dir", scratch.path + "/state-c"], logs: logs)
        #expect(Set(Self.tree(c).keys) == Set(expected.keys), "the new namespace-only endpoint")
        try TiergateProcess.expect(0, ["share", "verify", url], logs: logs)
        #expect(try TiergateProcess.expect(0, ["sync", "--state-dir", scratch.path + "/state-a"], logs: logs).contains("uploaded 0"), "settled")
    }
}
