import Foundation
import Glibc
import Testing
@testable import FUSE

/// The passthrough core driven directly, without a mount: its contracts hold before the kernel is involved.
@Suite struct CoreTests {
    let root: String
    let core: PassthroughCore
    let hooks = RecordingHooks()

    init() throws {
        root = try makeTemporaryDirectory("core")
        core = try PassthroughCore(endpoint: root, hooks: hooks)
    }

    func name(_ text: String) -> [UInt8] { Array(text.utf8) }

    @Test func lookupsCountReferencesAndForgetReleasesTheInode() throws {
        defer { try? FileManager.default.removeItem(atPath: root) }
        try writeFile(root + "/f", [1])
        let first = try core.lookup(parent: 1, name: name("f"))
        let second = try core.lookup(parent: 1, name: name("f"))
        #expect(first.inode == second.inode)
        #expect(first.inode != 1)
        #expect(first.attributes.st_ino == (try status(root + "/f")).st_ino)
        #expect(core.knownInodeCount == 2)
        core.forget(first.inode, count: 1)
        #expect(try core.getattr(first.inode, handle: nil).st_size == 1)
        core.forget(first.inode, count: 1)
        #expect(core.knownInodeCount == 1)
        #expect(throws: Errno.stale) { try core.getattr(first.inode, handle: nil) }
        // The root is never forgotten.
        core.forget(1, count: 100)
        #expect(try core.getattr(1, handle: nil).st_mode & S_IFMT == S_IFDIR)
    }

    @Test(arguments: [("..", Errno.invalidArgument), (".", .invalidArgument), ("a/b", .invalidArgument),
                      ("", .invalidArgument), (String(repeating: "x", count: 256), .nameTooLong)])
    func namesThatAreNotOneComponentAreRejected(text: String, error: Errno) throws {
        defer { try? FileManager.default.removeItem(atPath: root) }
        #expect(throws: error) { try core.lookup(parent: 1, name: name(text)) }
        #expect(throws: error) { try core.mkdir(parent: 1, name: name(text), mode: 0o755, caller: .current) }
    }

    @Test func symbolicLinksAreNeverFollowedOutOfTheEndpoint() throws {
        defer { try? FileManager.default.removeItem(atPath: root) }
        let outside = try makeTemporaryDirectory("outside")
        defer { try? FileManager.default.removeItem(atPath: outside) }
        #expect(symlink(outside, root + "/escape") == 0)
        let link = try core.lookup(parent: 1, name: name("escape"))
        #expect(link.attributes.st_mode & S_IFMT == S_IFLNK)
        #expect(throws: Errno(ENOTDIR)) { try core.mkdir(parent: link.inode, name: name("planted"), mode: 0o755, caller: .current) }
        #expect(throws: Errno(ENOTDIR)) { try core.create(parent: link.inode, name: name("planted"), mode: 0o644, flags: O_WRONLY, caller: .current) }
        #expect(throws: Errno.invalidArgument) { try core.open(link.inode, flags: O_RDONLY, caller: .current) }
        #expect(try FileManager.default.contentsOfDirectory(atPath: outside).isEmpty)
        #expect(try core.readlink(link.inode) == name(outside))
    }

    @Test func listingsResumeAtTheOffsetsTheyHandOut() throws {
        defer { try? FileManager.default.removeItem(atPath: root) }
        for index in 0..<50 { try writeFile(root + "/n\(index)", []) }
        let handle = try core.opendir(1)
        defer { core.releasedir(1, handle: handle) }
        var seen: [String] = []
        var offset: Int64 = 0
        var rounds = 0
        while true {
            var batch = 0
            try core.readdir(1, handle: handle, offset: offset, plus: true) { entry in
                guard batch < 7 else { return false }
                batch += 1
                seen.append(String(decoding: entry.name, as: UTF8.self))
                offset = entry.nextOffset
                return true
            }
            rounds += 1
            if batch == 0 { break }
        }
        #expect(rounds > 7)
        #expect(seen.count == 52)
        #expect(Set(seen) == Set((0..<50).map { "n\($0)" } + [".", ".."]))
        // Only the entries handed out hold references (refused ones were given back).
        #expect(core.knownInodeCount == 51)
    }

    @Test func unknownHandlesAndInodesAreRejected() throws {
        defer { try? FileManager.default.removeItem(atPath: root) }
        var buffer = [UInt8](repeating: 0, count: 8)
        #expect(throws: Errno.badFileDescriptor) {
            try buffer.withUnsafeMutableBytes { bytes in try core.read(1, handle: 999, offset: 0, into: bytes) }
        }
        #expect(throws: Errno.stale) { try core.lookup(parent: 777, name: name("x")) }
        #expect(throws: Errno.badFileDescriptor) { try core.readdir(1, handle: 5, offset: 0, plus: false) { _ in true } }
    }

    @Test func createOpenWriteReleaseRoundTrip() throws {
        defer { try? FileManager.default.removeItem(atPath: root) }
        let (entry, opened) = try core.create(parent: 1, name: name("new"), mode: 0o640, flags: O_RDWR, caller: .current)
        #expect(entry.attributes.st_mode & 0o777 == 0o640)
        let written = try [UInt8]("hello".utf8).withUnsafeBytes { try core.write(entry.inode, handle: opened.handle, offset: 0, from: $0) }
        #expect(written == 5)
        var buffer = [UInt8](repeating: 0, count: 16)
        let count = try buffer.withUnsafeMutableBytes { try core.read(entry.inode, handle: opened.handle, offset: 1, into: $0) }
        #expect(Array(buffer.prefix(count)) == Array("ello".utf8))
        core.release(entry.inode, handle: opened.handle)
        #expect(core.openFileCount == 0)
        #expect(try readFile(root + "/new") == Array("hello".utf8))
        #expect(hooks.recorded.contains(.didChange(.closedAfterWrite, "new", previous: nil)))
    }

    @Test func hookPathsFollowRenamesMadeThroughTheCore() throws {
        defer { try? FileManager.default.removeItem(atPath: root) }
        let directory = try core.mkdir(parent: 1, name: name("a"), mode: 0o755, caller: .current)
        let (file, opened) = try core.create(parent: directory.inode, name: name("f"), mode: 0o644, flags: O_WRONLY, caller: .current)
        core.release(file.inode, handle: opened.handle)
        try core.rename(parent: 1, name: name("a"), newParent: 1, newName: name("b"), flags: [])
        #expect(core.path(of: file.inode) == "b/f")
        #expect(hooks.recorded.contains(.didChange(.renamed, "b", previous: "a")))
    }

    @Test(arguments: [("user.color", ExtendedAttributeName.user), ("user.tiergate.state", .reserved),
                      ("user.tiergate.", .reserved), ("trusted.x", .unsupported), ("security.capability", .unsupported),
                      ("system.posix_acl_access", .accessControlList), ("system.posix_acl_default", .accessControlList),
                      ("system.posix_acl_access.x", .unsupported), ("system.posix_acl", .unsupported), ("system.nfs4_acl", .unsupported),
                      ("user.", .unsupported), ("user", .unsupported)])
    func extendedAttributeNamesAreClassified(text: String, expected: ExtendedAttributeName) {
        #expect(ExtendedAttributeName.classify(Array(text.utf8)) == expected)
    }
}
