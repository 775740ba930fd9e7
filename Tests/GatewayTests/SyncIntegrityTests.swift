import Backends
import CloudShare
import Foundation
@testable import Gateway
import Glibc
import Testing

/// What must never happen to acknowledged data: a failed fetch recorded as applied, an unreadable item
/// committed as a delete, one bad item holding the cursor, a malformed record crashing the process,
/// attributes that never converge, an endpoint syncing against another share, a status that says
/// Healthy while the share is gone.
@Suite(.serialized) struct SyncIntegrityTests {
    /// Moves every pack of the share aside (so no chunk can be fetched) and returns a closure that puts them back.
    static func hidePacks(_ group: SyncGroup) throws -> () throws -> Void {
        let packs = group.scratch.path + "/share/packs", hidden = group.scratch.path + "/hidden-packs"
        try FileManager.default.moveItem(atPath: packs, toPath: hidden)
        try FileManager.default.createDirectory(atPath: packs, withIntermediateDirectories: false)
        return {
            try FileManager.default.removeItem(atPath: packs)
            try FileManager.default.moveItem(atPath: hidden, toPath: packs)
        }
    }

    /// Two servers that synced `synced`; then server 0 commits `newer` and every pack is hidden, so
    /// server 1 cannot fetch it (with `passOnOne`, server 1 has tried once: those operations are pending).
    static func serverOneBehind(synced: [String: String], newer: [String: String], passOnOne: Bool = true) async throws
        -> (group: SyncGroup, restore: () throws -> Void) {
        let group = try await SyncGroup(servers: 2)
        for (path, text) in synced { group.write(0, path, text) }
        try await group.converge()
        for (path, text) in newer { group.write(0, path, text) }
        try await group.sync(0)
        let restore = try hidePacks(group)
        if passOnOne { try await group.sync(1) }
        return (group, restore)
    }

    static func mode(_ path: String) -> mode_t {
        var info = stat()
        return lstat(path, &info) == 0 ? info.st_mode & 0o7777 : 0
    }

    static func mtime(_ path: String) -> Int64 {
        var info = stat()
        guard lstat(path, &info) == 0 else { return 0 }
        return Int64(info.st_mtim.tv_sec) * 1_000_000_000 + Int64(info.st_mtim.tv_nsec)
    }

    static func setMtime(_ path: String, nanoseconds: Int64) {
        var times = [Posix.timespec(nanoseconds: nanoseconds), Posix.timespec(nanoseconds: nanoseconds)]
        #expect(utimensat(AT_FDCWD, path, &times, AT_SYMLINK_NOFOLLOW) == 0)
    }

    @Test func aFailedDownloadOfAnUpdateIsNeverRecordedAsAppliedNorUploadedOverTheNewerVersion() async throws {
        let group = try await SyncGroup(servers: 2)
        group.write(0, "a.txt", "version one of a")
        group.write(0, "b.txt", "version one of b")
        try await group.converge()
        group.write(0, "a.txt", "version two of a, newer")
        group.write(0, "b.txt", "version two of b, newer")
        try await group.sync(0)

        let restore = try Self.hidePacks(group)
        let report = try await group.sync(1)
        #expect(group.read(1, "a.txt") == "version one of a", "nothing could be fetched")
        let head = try await CommitLog(store: try StoreLocator.open(group.url)).head()
        #expect(report.cursor == head, "the cursor moves past a commit whose items failed")
        let errors = try group.gateways[1].itemErrors().map(\.error.path)
        #expect(errors.contains("a.txt") && errors.contains("b.txt"), "both failed items are listed: \(errors)")
        let status = await group.gateways[1].status()
        #expect(status[0].health == "Error")

        // A local attribute change on the stale copy must not upload its old bytes over version two.
        chmod(group.root(1) + "/a.txt", 0o600)
        try await group.sync(1)
        try restore()
        try await group.sync(1)
        #expect(group.read(1, "a.txt") == "version two of a, newer")
        #expect(group.read(1, "b.txt") == "version two of b, newer")
        try await group.converge()
        #expect(group.read(0, "a.txt") == "version two of a, newer", "the stale copy never replaced the newer version")
        #expect(try group.gateways[1].itemErrors().isEmpty)
    }

    /// A folder replaced by a file here while the share's newer version of an item in it could not be
    /// fetched: the pending item is not deleted with the folder (a failure is never a delete); once it
    /// arrives, both it and the file are kept.
    @Test func aFolderReplacedByAFileOverAnItemStillToFetchKeepsBoth() async throws {
        let (group, restore) = try await Self.serverOneBehind(synced: ["d/x.txt": "version one"], newer: ["d/x.txt": "version two, newer"])
        #expect(try group.gateways[1].itemErrors().map(\.error.path) == ["d/x.txt"])

        try FileManager.default.removeItem(atPath: group.root(1) + "/d")
        group.write(1, "d", "a file where the folder was")
        try await group.sync(1)
        let namespace = try await CloudShare.open(try StoreLocator.open(group.url)).namespace()
        #expect(namespace.entries["d/x.txt"] != nil, "the item still to fetch was deleted with its folder")

        try restore()
        try await group.converge()
        try await group.converge()
        for server in 0..<2 {
            #expect(group.read(server, "d/x.txt") == "version two, newer")
            let copies = try FileManager.default.contentsOfDirectory(atPath: group.root(server)).filter { $0.hasPrefix("d-") }
            #expect(copies.map { group.read(server, $0) } == ["a file where the folder was"], "server \(server): \(copies)")
        }
    }

    /// A folder deleted, replaced by a file or renamed here while the share's newer version of an item in
    /// it could not be fetched yet: the item is never deleted with its folder, and once it arrives both
    /// servers hold it (at the folder's new name after a rename) and what was done here.
    @Test(arguments: ["delete", "replace", "rename"], [true, false])
    func aFolderChangedOverAnItemStillToFetchLosesNothing(change: String, edited: Bool) async throws {
        let (group, restore) = try await Self.serverOneBehind(synced: ["p/q": "version one", "p/other": "unchanged"],
                                                              newer: (edited ? ["p/q": "version two, newer"] : [:]).merging(["p/new": "new in p"]) { $1 })
        #expect(try Set(group.gateways[1].itemErrors().map(\.error.path)) == (edited ? ["p/q", "p/new"] : ["p/new"]))

        switch change {
        case "delete":
            try FileManager.default.removeItem(atPath: group.root(1) + "/p")
        case "replace":
            try FileManager.default.removeItem(atPath: group.root(1) + "/p")
            group.write(1, "p", "a file where the folder was")
        default:
            try FileManager.default.moveItem(atPath: group.root(1) + "/p", toPath: group.root(1) + "/p2")
        }
        try await group.sync(1)
        try restore()
        for _ in 0..<3 { try await group.converge() }
        let folder = change == "rename" ? "p2" : "p"
        for server in 0..<2 {
            // Unchanged by server 0, q goes with the folder server 1 deleted; changed, it stays.
            let q = edited ? "version two, newer" : change == "rename" ? "version one" : nil
            #expect(group.read(server, folder + "/q") == q, "server \(server)")
            #expect(group.read(server, folder + "/new") == "new in p", "server \(server)")
            if change == "rename" {
                #expect(!FileManager.default.fileExists(atPath: group.root(server) + "/p"), "server \(server): the old folder came back")
            }
            if change == "replace" {
                let copies = try FileManager.default.contentsOfDirectory(atPath: group.root(server)).filter { $0.hasPrefix("p-") }
                #expect(copies.map { group.read(server, $0) } == ["a file where the folder was"], "server \(server): \(copies)")
            }
        }
        #expect(RenamePassProcessTests.tree(group.root(0)) == RenamePassProcessTests.tree(group.root(1)))
        #expect(try group.gateways[1].itemErrors().isEmpty)
    }

    /// A folder renamed over an item still to fetch, and its old name taken in the same pass by another
    /// folder moved there: both are renames, the pending item goes with the first, and the second keeps
    /// its own item. (The name taken hid the first rename: the stale copy was committed under the new
    /// name, the moved folder's file became a conflict copy, and the share's edit landed in it.)
    @Test func aFolderRenamedOverAnItemStillToFetchWhileItsNameIsTakenAgainLosesNothing() async throws {
        let (group, restore) = try await Self.serverOneBehind(synced: ["p/q": "version one", "o/q": "the other folder's"],
                                                              newer: ["p/q": "version two, newer"])
        try FileManager.default.moveItem(atPath: group.root(1) + "/p", toPath: group.root(1) + "/p2")
        try FileManager.default.moveItem(atPath: group.root(1) + "/o", toPath: group.root(1) + "/p")
        let pass = try await group.sync(1)
        #expect(pass.renamed == 2 && pass.deleted == 0, "\(pass.summary)")
        try restore()
        for _ in 0..<2 { try await group.converge() }
        for server in 0..<2 {
            #expect(group.read(server, "p2/q") == "version two, newer", "server \(server)")
            #expect(group.read(server, "p/q") == "the other folder's", "server \(server)")
        }
        #expect(RenamePassProcessTests.tree(group.root(0)) == RenamePassProcessTests.tree(group.root(1)))
    }

    /// Server 0 moves folders out of `d` and replaces it by a file while server 1 edits or adds a file
    /// deep in it and commits first: the edit makes `d` a folder again on server 0 (its file moves aside),
    /// whose commit then renames the old folder away and puts the edit back at its path. Server 1 takes
    /// the edit at that path from the share, not as "identical" to the copy the rename just moved away
    /// (it was judged before the rename, and server 1 ended without it).
    @Test(arguments: ["d/s1/s2/x", "d/s1/s2/new"])
    func aFileJudgedBeforeAnEarlierRenameOfItsCommitIsFetched(edited: String) async throws {
        let group = try await SyncGroup(servers: 2)
        group.write(0, "d/s1/s2/x", "x0")
        group.write(0, "d/t/u/w", "w0")
        group.write(0, "d/r", "r0")
        try FileManager.default.createDirectory(atPath: group.root(0) + "/e", withIntermediateDirectories: true)
        try await group.converge()
        let root = group.root(0)
        try FileManager.default.moveItem(atPath: root + "/d/s1", toPath: root + "/e/s1")
        try FileManager.default.moveItem(atPath: root + "/d/t/u", toPath: root + "/u")
        try FileManager.default.removeItem(atPath: root + "/d")
        group.write(0, "d", "a file where the folder was")
        group.write(1, edited, "written on server 1")
        try await group.sync(1)
        for _ in 0..<3 { try await group.converge() }
        #expect(RenamePassProcessTests.tree(group.root(0)) == RenamePassProcessTests.tree(group.root(1)),
                "\(RenamePassProcessTests.difference(RenamePassProcessTests.tree(group.root(1)), RenamePassProcessTests.tree(group.root(0))))")
        for server in 0..<2 {
            let contents = Set(RenamePassProcessTests.tree(group.root(server)).keys.compactMap { group.read(server, $0) })
            #expect(contents.isSuperset(of: ["written on server 1", "w0", "a file where the folder was"]), "server \(server): \(contents)")
        }
    }

    /// A daemon with a share operation it could not apply retries it by itself, backing off: once the
    /// content can be read again the item arrives with nothing else changing (it waited for the next local
    /// change, or the 30-minute rescan), and a retry that fails again does not wake the watcher for
    /// another pass at once (touching the folder's mtime did: five passes a second).
    @Test func aDaemonRetriesAnOperationItCouldNotApplyByItselfAndBacksOff() async throws {
        let (group, restore) = try await Self.serverOneBehind(synced: ["d/f": "version one"], newer: ["d/f": "version two, newer"], passOnOne: false)
        group.release()
        let state = group.scratch.path + "/state1"
        let daemon = try TiergateProcess(["serve", "--state-dir", state, "--poll-interval", "0.2"], logs: group.scratch.path)
        defer {
            daemon.send(SIGTERM)
            _ = daemon.exitStatus()
        }
        #expect(daemon.waitFor("trigger=start", inErrorOutput: true))
        sleep(5)
        let errors = try TiergateProcess.expect(0, ["errors", "--json", "--state-dir", state], logs: group.scratch.path)
        let listed = try JSONSerialization.jsonObject(with: Data(errors.utf8)) as? [[String: Any]]
        let attempts = (listed?.first { $0["path"] as? String == "d/f" }?["attempts"] as? String).flatMap { Int($0) }
        #expect(attempts.map { $0 >= 2 && $0 <= 4 } == true, "attempts in the first 5 s: \(attempts.map(String.init) ?? "none")")
        try restore()
        let deadline = Date().addingTimeInterval(30)
        while group.read(1, "d/f") != "version two, newer" && Date() < deadline { usleep(200_000) }
        #expect(group.read(1, "d/f") == "version two, newer", "\(daemon.errorOutput.suffix(1500))")
    }

    @Test func anItemBehindAPathTooLongForTheKernelIsNeverCommittedAsADelete() async throws {
        // Server 1's root is deep enough that root + relative path exceeds PATH_MAX (4,096 bytes); the
        // same relative path fits on server 0.
        let deep = (0..<9).map { _ in String(repeating: "r", count: 250) }.joined(separator: "/")
        let group = try await SyncGroup(servers: 2, prepare: { index, root in
            if index == 1 { try! FileManager.default.createDirectory(atPath: root + "/" + deep, withIntermediateDirectories: true) }
        })
        let relative = (0..<9).map { "folder-\($0)-" + String(repeating: "x", count: 200) }.joined(separator: "/") + "/kept.txt"
        #expect(SafePath.problem(with: relative) == nil && group.root(1).utf8.count + deep.utf8.count + relative.utf8.count > 4096)
        let long = try await SyncGroup.withDeepEndpoint(group, index: 1, deep: deep)
        long.write(0, relative, "must survive")
        try await long.converge()
        try await long.converge()
        #expect(long.read(0, relative) == "must survive", "the file was deleted by the server that could not stat it")
        let namespace = try await CloudShare.open(try StoreLocator.open(long.url)).namespace()
        #expect(namespace.entries[relative] != nil)
    }

    @Test func anOperationThatCannotBeAppliedBecomesAPerItemErrorAndTheCursorAndUploadsMoveOn() async throws {
        let group = try await SyncGroup(servers: 2)
        let outside = group.scratch.path + "/outside"
        try FileManager.default.createDirectory(atPath: outside, withIntermediateDirectories: true)
        // A symlink on server 1 where server 0 has a folder; an mtime before 1970.
        try FileManager.default.createSymbolicLink(atPath: group.root(1) + "/d", withDestinationPath: outside)
        group.write(0, "d/x.txt", "in a folder")
        group.write(0, "old.txt", "written long ago")
        Self.setMtime(group.root(0) + "/old.txt", nanoseconds: -86_400_000_000_123)
        try await group.sync(0)
        try await group.sync(1)
        let head = try await CommitLog(store: try StoreLocator.open(group.url)).head()
        #expect(try await group.sync(1).cursor == head)
        #expect(group.read(1, "old.txt") == "written long ago")
        #expect(Self.mtime(group.root(1) + "/old.txt") == -86_400_000_000_123)
        #expect(try FileManager.default.contentsOfDirectory(atPath: outside).isEmpty, "nothing written through the symlink")
        // The kind conflict keeps both sides: the folder takes the name, the symlink moves aside.
        #expect(group.read(1, "d/x.txt") == "in a folder")
        #expect((try? FileManager.default.destinationOfSymbolicLink(atPath: group.root(1) + "/d-Server1")) == outside)
        // Server 1's own changes still reach the share.
        group.write(1, "from-one.txt", "uploads are not blocked")
        try await group.converge()
        #expect(group.read(0, "from-one.txt") == "uploads are not blocked")
    }

    @Test func malformedRecordsAreRefusedPerItemAndNeverCrash() async throws {
        let group = try await SyncGroup(servers: 1)
        let log = CommitLog(store: try StoreLocator.open(group.url))
        let file = NamespaceEntry(kind: .file, fileID: NamespaceEntry.newFileID(), size: 10, mode: 0o644, mtime: 0, uid: 0, gid: 0)
        let malformed: [NamespaceOperation] = [
            NamespaceOperation(op: .rename, path: "renamed.txt", from: nil, entry: nil),
            NamespaceOperation(op: .rename, path: "x", from: "", entry: nil),
            NamespaceOperation(op: .upsert, path: "no-entry.txt", from: nil, entry: nil),
            NamespaceOperation(op: .upsert, path: "sizes-disagree.txt", from: nil, entry: file),
            NamespaceOperation(op: .delete, path: "", from: nil, entry: nil),
            NamespaceOperation(op: .delete, path: "/", from: nil, entry: nil),
            NamespaceOperation(op: .rename, path: "../escape", from: "a", entry: nil),
        ]
        _ = try await log.append(Commit(author: "hostile", authorName: "Hostile", operations: malformed))
        var random = SeededGenerator(state: 7)
        for _ in 0..<20 {
            let operations = (0..<8).map { _ in Self.randomOperation(using: &random) }
            _ = try await log.append(Commit(author: "fuzz", authorName: "Fuzz", operations: operations))
        }
        let head = try await log.head()
        let first = try await group.sync(0)
        let errors = try group.gateways[0].itemErrors().map(\.error)
        #expect(first.cursor >= head, "\(first.summary); errors: \(errors)")
        let second = try await group.sync(0)
        #expect(second.commits == 0, "the second pass settles: \(second.summary)")
        group.write(0, "after.txt", "still syncing")
        try await group.sync(0)
        let namespace = try await CloudShare.open(try StoreLocator.open(group.url)).namespace()
        #expect(namespace.entries["after.txt"] != nil)
    }

    static func randomOperation(using random: inout SeededGenerator) -> NamespaceOperation {
        let names = ["a", "b", "a/b", "", "/", "..", "a/../b", ".tiergate", ".tiergate/staging/x", "x.tmp", "c/d/e", "a//b", String(repeating: "n", count: 300)]
        func name() -> String { names.randomElement(using: &random)! }
        let kind: NamespaceEntry.Kind = Bool.random(using: &random) ? .file : .directory
        let entry = NamespaceEntry(kind: kind, fileID: NamespaceEntry.newFileID(), size: Int64.random(in: -2..<3, using: &random),
                                   mode: UInt32.random(in: 0..<0o10000, using: &random), mtime: Int64.random(in: Int64.min / 2..<Int64.max / 2, using: &random),
                                   uid: 0, gid: 0)
        switch Int.random(in: 0..<3, using: &random) {
        case 0: return NamespaceOperation(op: .upsert, path: name(), from: nil, entry: Bool.random(using: &random) ? entry : nil)
        case 1: return NamespaceOperation(op: .delete, path: name(), from: nil, entry: nil)
        default: return NamespaceOperation(op: .rename, path: name(), from: Bool.random(using: &random) ? name() : nil, entry: nil)
        }
    }

    @Test func chmodAndTouchReachTheOtherServers() async throws {
        let group = try await SyncGroup(servers: 2)
        group.write(0, "a.txt", "same bytes")
        try await group.converge()
        chmod(group.root(0) + "/a.txt", 0o640)
        Self.setMtime(group.root(0) + "/a.txt", nanoseconds: 1_500_000_000_123_456_789)
        try await group.converge()
        #expect(Self.mode(group.root(1) + "/a.txt") == 0o640)
        #expect(Self.mtime(group.root(1) + "/a.txt") == 1_500_000_000_123_456_789)
        Self.setMtime(group.root(1) + "/a.txt", nanoseconds: 1_600_000_000_000_000_000)
        try await group.converge()
        #expect(Self.mtime(group.root(0) + "/a.txt") == 1_600_000_000_000_000_000, "a touch alone converges")
    }

    /// Folders converge like files: their mtimes after a download are the share's (applying children
    /// moved them), a touch of a folder reaches the other servers, and a settled group commits nothing.
    @Test func folderMtimesConvergeAndSettle() async throws {
        let group = try await SyncGroup(servers: 3)
        group.write(0, "docs/a.txt", "a")
        group.write(0, "docs/deep/b.txt", "b")
        try await group.converge()
        group.write(1, "docs/c.txt", "c")                 // a child added on another server moves docs there
        try FileManager.default.removeItem(atPath: group.root(2) + "/docs/a.txt")
        try await group.converge()
        try await group.converge()
        let folders = ["docs", "docs/deep"]
        for folder in folders {
            let times = group.endpoints.indices.map { Self.mtime(group.root($0) + "/" + folder) }
            #expect(Set(times).count == 1, "\(folder) has one mtime on every server: \(times)")
        }
        Self.setMtime(group.root(2) + "/docs/deep", nanoseconds: 1_400_000_000_000_000_000)
        try await group.converge()
        for index in group.endpoints.indices {
            #expect(Self.mtime(group.root(index) + "/docs/deep") == 1_400_000_000_000_000_000, "a folder's touch reaches server \(index)")
        }
        for index in group.endpoints.indices {
            #expect(try await group.sync(index).commits == 0, "server \(index) has nothing more to commit")
        }
    }

    /// A folder's chmod that a download into the same folder meets before the scan does is still
    /// committed (putting the folder's mtime back must not take the local mode as synced).
    @Test func aFolderChmodMetByADownloadIntoItStillReachesTheOthers() async throws {
        let group = try await SyncGroup(servers: 2)
        group.write(0, "d/a.txt", "a")
        try await group.converge()
        group.write(1, "d/b.txt", "b")
        try await group.sync(1)
        chmod(group.root(0) + "/d", 0o750)
        try await group.converge()
        #expect(Self.mode(group.root(1) + "/d") == 0o750, "the chmod reached the other server")
        #expect(Self.mode(group.root(0) + "/d") == 0o750)
    }

    /// A `chown` of a file or a folder reaches the other servers (run as root, as the daemon is), a
    /// folder's owner changed where a download meets it first still does, and a settled group commits
    /// nothing.
    /// A set-user-ID program given to another owner keeps its mode there (a change of owner clears the
    /// set-ID bits, so the owner goes first), as a file and as a stub.
    @Test(arguments: [false, true]) func ownersOfFilesAndFoldersConverge(namespaceOnly: Bool) async throws {
        try #require(geteuid() == 0, "owners are applied only by root: run the tests as root")
        func owner(_ path: String) -> String {
            var info = stat()
            return stat(path, &info) == 0 ? "\(info.st_uid):\(info.st_gid)" : "missing"
        }
        let group = try await SyncGroup(servers: 2)
        if namespaceOnly {
            group.endpoints[1] = try group.gateways[1].setTiering("1", TieringConfig(volumeFreeSpacePercent: 0, download: .namespaceOnly))
        }
        group.write(0, "d/a.txt", "a")
        group.write(0, "e/b.txt", "b")
        group.write(0, "bin/tool", "#!/bin/sh\n")
        #expect(chown(group.root(0) + "/bin/tool", 65534, 65533) == 0 && chmod(group.root(0) + "/bin/tool", 0o6755) == 0)
        try await group.converge()
        #expect(owner(group.root(1) + "/bin/tool") == "65534:65533")
        #expect(Self.mode(group.root(1) + "/bin/tool") == 0o6755, "the set-ID bits survive the change of owner")
        if namespaceOnly { #expect(StubFile.marker(atPath: group.root(1) + "/bin/tool") == .tiered, "a stub") }
        #expect(chown(group.root(0) + "/d/a.txt", 65534, 65534) == 0)
        #expect(chown(group.root(0) + "/d", 65534, 65533) == 0)
        try await group.converge()
        #expect(owner(group.root(1) + "/d/a.txt") == "65534:65534", "the file's owner reached the other server")
        #expect(owner(group.root(1) + "/d") == "65534:65533", "the folder's owner reached the other server")
        // A folder's chown here, then a download into it before the scan: the owner still goes out.
        group.write(1, "e/c.txt", "c")
        try await group.sync(1)
        #expect(chown(group.root(0) + "/e", 65533, 65533) == 0)
        try await group.converge()
        #expect(owner(group.root(0) + "/e") == "65533:65533", "the folder keeps the owner given here")
        #expect(owner(group.root(1) + "/e") == "65533:65533", "and it reached the other server")
        #expect(try await group.sync(0).commits == 0, "settled: no commit back and forth")
        #expect(try await group.sync(1).commits == 0)
    }

    /// Every permission bit reaches the other server, as a file and as a stub: modes the umask would
    /// narrow, modes without the owner's write bit (a stub's markers are set before it gets its mode),
    /// and the sticky and set-ID bits.
    @Test(arguments: [false, true]) func everyModeArrives(namespaceOnly: Bool) async throws {
        let group = try await SyncGroup(servers: 2)
        if namespaceOnly {
            group.endpoints[1] = try group.gateways[1].setTiering("1", TieringConfig(volumeFreeSpacePercent: 0, download: .namespaceOnly))
        }
        let modes: [mode_t] = [0o000, 0o400, 0o444, 0o600, 0o640, 0o644, 0o666, 0o707, 0o777, 0o1644, 0o2755, 0o4711]
        for mode in modes {
            group.write(0, "m/\(String(mode, radix: 8))", "mode")
            #expect(chmod(group.root(0) + "/m/\(String(mode, radix: 8))", mode) == 0)
        }
        try await group.converge()
        for mode in modes {
            let path = group.root(1) + "/m/\(String(mode, radix: 8))"
            #expect(Self.mode(path) == mode, "\(String(mode, radix: 8)) arrived as \(String(Self.mode(path), radix: 8))")
            if namespaceOnly { #expect(StubFile.marker(atPath: path) == .tiered, "\(String(mode, radix: 8)) is a stub") }
        }
        #expect(try await group.sync(1).commits == 0, "settled: no commit back")
    }

    /// A file's access ACL (read from the descriptor its content is read from) and a folder's default ACL
    /// reach the other server, and so does a later change of the file's ACL alone.
    @Test(arguments: [false, true]) func posixACLsReachTheOtherServer(namespaceOnly: Bool) async throws {
        for program in ["setfacl", "getfacl"] where access("/usr/bin/\(program)", X_OK) != 0 {
            Issue.record("\(program) is not installed (package acl): the ACL test cannot run")
            return
        }
        func setfacl(_ arguments: [String]) throws {
            let process = try Process.run(URL(fileURLWithPath: "/usr/bin/setfacl"), arguments: arguments)
            process.waitUntilExit()
            #expect(process.terminationStatus == 0, "setfacl \(arguments)")
        }
        /// `getfacl`'s entries for `path` (numeric ids, no header), or nil when it fails.
        func acl(_ path: String) throws -> String? {
            let process = Process(), output = Pipe()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/getfacl")
            process.arguments = ["-n", "--omit-header", path]
            process.standardOutput = output
            try process.run()
            let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            return process.terminationStatus == 0 ? text : nil
        }
        let group = try await SyncGroup(servers: 2)
        if namespaceOnly {
            // The other server's files arrive as stubs: a stub carries the file's ACLs.
            group.endpoints[1] = try group.gateways[1].setTiering("1", TieringConfig(volumeFreeSpacePercent: 0, download: .namespaceOnly))
        }
        try FileManager.default.createDirectory(atPath: group.root(0) + "/d", withIntermediateDirectories: true)
        group.write(0, "d/f.txt", "guarded")
        try setfacl(["-m", "u:65534:rw", group.root(0) + "/d/f.txt"])
        try setfacl(["-d", "-m", "u:65534:rx", group.root(0) + "/d"])
        // A file without ACLs moved into the folder: made on the other server in a folder whose default
        // ACL new files inherit, it still has none.
        group.write(0, "e.txt", "moved in")
        #expect(rename(group.root(0) + "/e.txt", group.root(0) + "/d/e.txt") == 0)
        try await group.converge()
        for (path, entry) in [("d/f.txt", "user:65534:rw-"), ("d", "default:user:65534:r-x")] {
            let source = try acl(group.root(0) + "/" + path)
            #expect(source?.contains(entry) == true, "\(path) has \(entry) here: \(source ?? "no ACL")")
            let copy = try acl(group.root(1) + "/" + path)
            #expect(copy == source, "\(path): the same ACL on the other server: \(copy ?? "none") vs \(source ?? "none")")
        }
        #expect(try acl(group.root(1) + "/d/e.txt") == acl(group.root(0) + "/d/e.txt"), "no inherited ACL on the other server")
        try setfacl(["-m", "u:65534:r", group.root(0) + "/d/f.txt"])
        try await group.converge()
        #expect(try acl(group.root(1) + "/d/f.txt")?.contains("user:65534:r--") == true, "the changed ACL on the other server")
        // The applied ACL is recorded as synced: a later change of the ctime alone commits nothing.
        var info = stat()
        #expect(stat(group.root(1) + "/d/f.txt", &info) == 0 && chmod(group.root(1) + "/d/f.txt", info.st_mode & 0o7777) == 0)
        #expect(try await group.sync(1).commits == 0, "the ACL the share gave is not committed back")
        if namespaceOnly {
            // An ACL changed on a stub reaches the share (only its ctime moves; nothing is recalled).
            try setfacl(["-m", "u:65533:r", group.root(1) + "/d/f.txt"])
            try await group.converge()
            #expect(try acl(group.root(0) + "/d/f.txt")?.contains("user:65533:r--") == true, "the stub's new ACL on the other server")
            #expect(StubFile.marker(atPath: group.root(1) + "/d/f.txt") == .tiered, "still a stub")
            _ = try await group.gateways[1].recall(group.root(1) + "/d/f.txt")
        }
        #expect(group.read(1, "d/f.txt") == "guarded")
        #expect(try await group.sync(1).commits == 0, "a recalled stub has the share's ACL: nothing to commit")
        // A folder's ACL changed alone (its mtime stays), and a file's ACL removed.
        try setfacl(["-d", "-m", "u:65534:rwx", group.root(0) + "/d"])
        try setfacl(["-b", group.root(0) + "/d/f.txt"])
        try await group.converge()
        #expect(try acl(group.root(1) + "/d")?.contains("default:user:65534:rwx") == true, "the folder's changed default ACL")
        #expect(try acl(group.root(1) + "/d/f.txt")?.contains("65534") == false, "the file's ACL removed on the other server")
        #expect(try acl(group.root(1) + "/d/f.txt") == acl(group.root(0) + "/d/f.txt"))
        #expect(try await group.sync(0).commits == 0, "settled: no commit back and forth")
        #expect(try await group.sync(1).commits == 0)
    }

    /// Pairs of names one to the share: composed and decomposed, and an ASCII name beside one that is
    /// canonically equivalent to it (GREEK QUESTION MARK is a semicolon), so a folder is searched for
    /// twins whenever one of its names is beyond ASCII.
    @Test(arguments: [("caf\u{E9}.txt", "cafe\u{301}.txt"), ("a;b.txt", "a\u{37E}b.txt")])
    func namesThatDifferOnlyInUnicodeNormalizationSettle(_ pair: (String, String)) async throws {
        let group = try await SyncGroup(servers: 2)
        let (composed, decomposed) = pair
        #expect(Array(composed.utf8) != Array(decomposed.utf8))
        #expect(composed == decomposed, "the share takes them for one name")
        for (name, text) in [(composed, "composed"), (decomposed, "decomposed")] {
            let fd = open(group.root(0) + "/" + name, O_WRONLY | O_CREAT | O_EXCL, 0o644)
            #expect(fd >= 0)
            _ = text.withCString { write(fd, $0, strlen($0)) }
            close(fd)
        }
        try await group.converge()
        #expect(try await group.sync(0).commits == 0, "a settled pair commits nothing more")
        #expect(try await group.sync(1).commits == 0)
        let names = try FileManager.default.contentsOfDirectory(atPath: group.root(1)).filter { !$0.hasPrefix(".") }
        #expect(names.count == 1, "one of the pair syncs: \(names)")
        let twins = try group.gateways[0].itemErrors().filter { $0.error.reason.contains("Unicode normalization") }
        #expect(twins.count == 1, "the other is reported")
    }

    /// A crash between making a stub and recording it leaves a file with stub markers the database does
    /// not know. Its holes must never be read as content: not uploaded, not kept as a conflict copy.
    @Test func aStubTheDatabaseDoesNotKnowIsNeverReadAsContent() async throws {
        let group = try await SyncGroup(servers: 2)
        group.endpoints[1] = try group.gateways[1].setTiering("1", TieringConfig(volumeFreeSpacePercent: 0, download: .namespaceOnly))
        let content = String(repeating: "real content, never zeros ", count: 2000)
        group.write(0, "f.txt", content)
        try await group.sync(0)
        try await group.sync(1)
        #expect(StubFile.marker(atPath: group.root(1) + "/f.txt") != nil, "a stub was made")
        // The crash: the stub is on disk, its entry and the cursor were never recorded.
        var batch = group.gateways[1].state.batch(group.endpoints[1].id)
        batch.removeEntry("f.txt")
        batch.setCursor(0, record: "")
        try group.gateways[1].state.commit(batch, sync: true)
        try await group.converge()
        #expect(Set(group.tree(1).keys) == ["f.txt"], "no conflict copy: \(group.tree(1).keys.sorted())")
        #expect(group.read(0, "f.txt") == content)
        let share = try await CloudShare.open(try StoreLocator.open(group.url))
        let namespace = try await share.namespace()
        #expect(namespace.entries.keys.sorted() == ["f.txt"])
        var bytes: [UInt8] = []
        for chunk in namespace.entries["f.txt"]?.chunks ?? [] { bytes += try await share.readChunk(chunk.id) }
        #expect(String(decoding: bytes, as: UTF8.self) == content, "the share still holds the real content")
    }

    @Test func identicalBytesWrittenOnTwoServersEndWithTheSameAttributes() async throws {
        let group = try await SyncGroup(servers: 2)
        group.write(0, "y.bin", "the same new bytes")
        group.write(1, "y.bin", "the same new bytes")
        chmod(group.root(1) + "/y.bin", 0o600)
        try await group.sync(0)
        try await group.sync(1)
        try await group.sync(0)
        #expect(Self.mode(group.root(0) + "/y.bin") == Self.mode(group.root(1) + "/y.bin"))
        #expect(Self.mtime(group.root(0) + "/y.bin") == Self.mtime(group.root(1) + "/y.bin"))
    }

    @Test func aLocalFileWhereTheShareHasAFolderMovesAsideAndBothAreKept() async throws {
        let group = try await SyncGroup(servers: 2)
        group.write(0, "d/inside.txt", "from the folder")
        group.write(1, "d", "a local file named like the folder")
        try await group.sync(0)
        try await group.converge()
        #expect(group.read(1, "d/inside.txt") == "from the folder")
        #expect(group.read(1, "d-Server1") == "a local file named like the folder")
        #expect(group.read(0, "d-Server1") == "a local file named like the folder")
        let errors = try group.gateways.flatMap { try $0.itemErrors() }.map(\.error)
        #expect(errors.isEmpty, "nothing is left failing: \(errors)")
        for index in 0..<2 { #expect(await group.gateways[index].status()[0].health == "Healthy") }
    }

    @Test func reAddingAnEndpointWhoseFilesMatchTheShareMakesNoConflictCopies() async throws {
        let group = try await SyncGroup(servers: 2)
        group.write(0, "a.txt", "first")
        try await group.sync(0)
        group.write(0, "a.txt", "second, current")
        group.write(0, "b.txt", "unchanged")
        try await group.converge()
        _ = try group.gateways[1].removeEndpoint(group.root(1))
        group.endpoints[1] = try await group.gateways[1].addEndpoint(path: group.root(1), shareURL: group.url)
        try await group.converge()
        #expect(Set(group.tree(1).keys) == ["a.txt", "b.txt"], "no conflict copies: \(group.tree(1).keys.sorted())")
    }

    /// A new endpoint whose folder holds other bytes under a name the share has: the download never
    /// places the share's file over them (the database does not know the name, so the file is placed
    /// without replacing); both versions are kept, under the name and a conflict name.
    @Test func aNewEndpointKeepsItsOwnFileUnderANameTheShareHas() async throws {
        let group = try await SyncGroup(servers: 2)
        group.write(0, "a.txt", "the share's")
        group.write(0, "b.txt", "only in the share")
        try await group.converge()
        _ = try group.gateways[1].removeEndpoint(group.root(1))
        group.write(1, "a.txt", "this server's own, written while it was not an endpoint")
        group.endpoints[1] = try await group.gateways[1].addEndpoint(path: group.root(1), shareURL: group.url)
        try await group.converge()
        let tree = group.tree(1)
        #expect(tree.count == 3, "a.txt, b.txt and one conflict copy: \(tree.keys.sorted())")
        #expect(Set(tree.values) == ["the share's", "only in the share", "this server's own, written while it was not an endpoint"])
        #expect(group.tree(0) == tree)
    }

    @Test func anEndpointRefusesAStoreHoldingAnotherShare() async throws {
        let group = try await SyncGroup(servers: 1)
        group.write(0, "a.txt", "mine")
        try await group.sync(0)
        try FileManager.default.removeItem(atPath: group.scratch.path + "/share")
        // The share is gone: the pass fails, and status and errors say so.
        await #expect(throws: (any Error).self) { try await group.sync(0) }
        let status = await group.gateways[0].status()
        #expect(status[0].health == "Error")
        #expect(try group.gateways[0].itemErrors().contains { $0.error.kind == "sync" })
        // A new, empty share at the same URL is another share: refused, nothing committed into it.
        _ = try await CloudShare.create(in: try StoreLocator.open(group.url))
        group.release()
        group.gateways = [try Gateway(directory: StateDirectory(path: group.scratch.path + "/state0"))]
        await #expect(throws: (any Error).self) { try await group.sync(0) }
        let head = try await CommitLog(store: try StoreLocator.open(group.url)).head()
        #expect(head == 0, "nothing was committed into the other share")
    }
}

extension SyncGroup {
    /// Re-points endpoint `index` of `group` at the deep folder made by its `prepare` step.
    static func withDeepEndpoint(_ group: SyncGroup, index: Int, deep: String) async throws -> SyncGroup {
        let path = group.root(index) + "/" + deep
        _ = try group.gateways[index].removeEndpoint(group.root(index))
        group.endpoints[index] = try await group.gateways[index].addEndpoint(path: path, shareURL: group.url)
        return group
    }
}
