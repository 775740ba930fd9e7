import Backends
import CloudShare
import Foundation
import Gateway
import Glibc
import Testing

/// Nothing outside an endpoint is read or written, whatever local users do to the tree meanwhile, and
/// names the share holds that this server does not sync are neither written locally nor deleted.
@Suite(.serialized) struct ContainmentTests {
    @Test func aSymlinkInPlaceOfTheStateFolderIsRefusedAndNothingOutsideIsTouched() async throws {
        let group = try await SyncGroup(servers: 1)
        group.write(0, "a.txt", "a")
        try await group.sync(0)
        group.release()
        let victim = group.scratch.path + "/victim"
        try FileManager.default.createDirectory(atPath: victim + "/staging", withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: victim + "/staging/precious", contents: Data("keep me".utf8))
        try FileManager.default.removeItem(atPath: group.root(0) + "/.tiergate")
        try FileManager.default.createSymbolicLink(atPath: group.root(0) + "/.tiergate", withDestinationPath: victim)
        let gateway = try Gateway(directory: StateDirectory(path: group.scratch.path + "/state0"))
        await #expect(throws: (any Error).self) { try await gateway.sync(group.endpoints[0]) }
        #expect(FileManager.default.contents(atPath: victim + "/staging/precious") == Data("keep me".utf8))
        #expect(try FileManager.default.contentsOfDirectory(atPath: victim + "/staging") == ["precious"])
    }

    /// A synced folder replaced by a symlink to a folder outside the endpoint, then new files from the
    /// share under it: the download never writes through the link (the parent folders are opened
    /// beneath the root without following any symlink, however many levels deep).
    @Test func aDownloadUnderAFolderReplacedByASymlinkWritesNothingOutside() async throws {
        let group = try await SyncGroup(servers: 2)
        group.write(0, "d/e/old.txt", "old")
        try await group.converge()
        let outside = group.scratch.path + "/outside"
        try FileManager.default.createDirectory(atPath: outside + "/e", withIntermediateDirectories: true)
        try FileManager.default.removeItem(atPath: group.root(1) + "/d")
        try FileManager.default.createSymbolicLink(atPath: group.root(1) + "/d", withDestinationPath: outside)
        group.write(0, "d/e/new.txt", "new")
        group.write(0, "d/top.txt", "top")
        try await group.sync(0)
        try? await group.sync(1)
        try? await group.sync(1)
        #expect(try FileManager.default.contentsOfDirectory(atPath: outside + "/e") == [])
        #expect(try FileManager.default.contentsOfDirectory(atPath: outside) == ["e"])
    }

    /// The parent of a path is opened beneath the root without following a symlink at any level, whether
    /// it exists (one openat2) or has folders to create (the walk); a real parent opens.
    @Test func parentFoldersAreNeverReachedThroughASymlink() throws {
        let scratch = Scratch()
        let root = scratch.path + "/root", outside = scratch.path + "/outside"
        try FileManager.default.createDirectory(atPath: root + "/a/b", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: outside + "/b", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: root + "/link", withDestinationPath: outside)
        try FileManager.default.createSymbolicLink(atPath: root + "/a/deep", withDestinationPath: outside)
        let rootFD = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        try #require(rootFD >= 0)
        defer { close(rootFD) }
        for path in ["link/x", "link/b/x", "a/deep/x", "a/deep/b/x", "link/new/x"] {
            for create in [false, true] {
                #expect(throws: PosixError.self, "\(path), create: \(create)") { _ = try SafePath.openParent(rootFD: rootFD, path: path, create: create) }
            }
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: outside) == ["b"])
        let parent = try SafePath.openParent(rootFD: rootFD, path: "a/b/x", create: false)
        close(parent.fd)
        #expect(parent.name == "x")
    }

    @Test func reservedAndSkippedNamesFromTheShareAreNeitherWrittenNorDeleted() async throws {
        let group = try await SyncGroup(servers: 1)
        let names = [".tiergate", ".tiergate/staging/x", "thumbs.db", "x.tmp", "~$doc.docx", "Desktop.ini", "lost+found", ".nfs1234", "dir/.tiergate"]
        let empty = { NamespaceEntry(kind: .file, fileID: NamespaceEntry.newFileID(), size: 0, mode: 0o644, mtime: 0, uid: 0, gid: 0) }
        let log = CommitLog(store: try StoreLocator.open(group.url))
        _ = try await log.append(Commit(author: "cloud", authorName: "Cloud",
                                        operations: names.map { .upsert($0, empty()) } + [.upsert("ok.txt", empty())]))
        try await group.sync(0)
        var info = stat()
        #expect(lstat(group.root(0) + "/.tiergate", &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR, "the state folder is untouched")
        for name in names where name != ".tiergate" && !name.hasPrefix(".tiergate/") {
            #expect(!FileManager.default.fileExists(atPath: group.root(0) + "/" + name), "\(name) was written locally")
        }
        #expect(FileManager.default.fileExists(atPath: group.root(0) + "/ok.txt"))
        let refused = Set(try group.gateways[0].itemErrors().filter { $0.error.kind == "refused" }.map(\.error.path))
        #expect(refused == Set(names), "each is listed: \(refused.sorted())")
        group.write(0, "local.txt", "a local change makes the next upload")
        try await group.sync(0)
        try await group.sync(0)
        let namespace = try await CloudShare.open(try StoreLocator.open(group.url)).namespace()
        for name in names { #expect(namespace.entries[name] != nil, "\(name) was deleted from the share") }
        let status = await group.gateways[0].status()
        #expect(status[0].health == "Healthy", "names this server does not sync do not make it unhealthy")
    }

    @Test func aLocalPathEveryServerWouldRefuseIsRefusedWhereItIsMade() async throws {
        let group = try await SyncGroup(servers: 1)
        let long = (0..<20).map { "folder-\($0)-" + String(repeating: "p", count: 190) }.joined(separator: "/")
        #expect(long.count > SafePath.maxPathLength)
        try FileManager.default.createDirectory(atPath: group.root(0) + "/" + long, withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: group.root(0) + "/" + long + "/deep.txt", contents: Data("deep".utf8))
        group.write(0, "short.txt", "short")
        try await group.sync(0)
        let namespace = try await CloudShare.open(try StoreLocator.open(group.url)).namespace()
        #expect(namespace.entries["short.txt"] != nil)
        #expect(!namespace.entries.keys.contains { $0.count > SafePath.maxPathLength }, "nothing over the limit was committed")
        let skipped = try group.gateways[0].itemErrors().filter { $0.error.kind == "skipped" && $0.error.reason.contains("longer than") }
        #expect(!skipped.isEmpty, "the item is reported")
    }

    /// A second process swaps a folder with a symlink to a root-only folder outside the endpoint
    /// (renameat2 RENAME_EXCHANGE in a loop) while the real CLI syncs: nothing from outside may reach the share.
    @Test func anUploadRacingASymlinkSwapNeverReadsOutsideTheEndpoint() async throws {
        let group = try await SyncGroup(servers: 1)
        let secret = group.scratch.path + "/secret"
        try FileManager.default.createDirectory(atPath: secret, withIntermediateDirectories: true)
        for index in 0..<20 { FileManager.default.createFile(atPath: secret + "/f\(index).txt", contents: Data("TOP SECRET \(index)".utf8)) }
        chmod(secret, 0o700)
        for index in 0..<20 { group.write(0, "d/f\(index).txt", "public \(index)") }
        try FileManager.default.createSymbolicLink(atPath: group.root(0) + "/dlink", withDestinationPath: secret)
        group.release()
        let swapper = Process()
        swapper.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        swapper.arguments = ["python3", "-c", """
            import ctypes, os, sys, time
            libc = ctypes.CDLL(None, use_errno=True)
            root = sys.argv[1].encode()
            end = time.time() + float(sys.argv[2])
            while time.time() < end:
                # renameat2(AT_FDCWD, d, AT_FDCWD, dlink, RENAME_EXCHANGE)
                libc.syscall(316, -100, root + b"/d", -100, root + b"/dlink", 2)
            """, group.root(0), "6"]
        try swapper.run()
        var rounds = 0
        while swapper.isRunning {
            // No writes here: through the swapped name they would land in the secret folder.
            _ = try runTiergate(["sync", "--state-dir", group.scratch.path + "/state0"])
            rounds += 1
        }
        swapper.waitUntilExit()
        #expect(rounds >= 3, "the CLI synced while names were swapped (\(rounds) rounds)")
        let share = try await CloudShare.open(try StoreLocator.open(group.url))
        let namespace = try await share.namespace()
        for (path, entry) in namespace.entries where entry.kind == .file {
            var content: [UInt8] = []
            for chunk in entry.chunks { content += try await share.readChunk(chunk.id) }
            #expect(!String(decoding: content, as: UTF8.self).contains("SECRET"), "\(path) holds a file from outside the endpoint")
        }
    }
}
