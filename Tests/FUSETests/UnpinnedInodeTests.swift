import CFuse3
import Foundation
import Glibc
import Testing
@testable import FUSE

/// Past the descriptor budget, inodes are reopened by parent and name per request. With a budget of
/// two (the root and one directory), everything else runs that way, and must behave the same.
@Suite struct UnpinnedInodeTests {
    @Test func fileOperationsWorkWithoutPinnedDescriptors() throws {
        let fixture = try MountFixture(configuration: .init(pinnedInodeLimit: 2))
        defer { fixture.stop() }
        #expect(mkdir(fixture.mounted("a"), 0o755) == 0)
        #expect(mkdir(fixture.mounted("a/b"), 0o755) == 0)
        #expect(mkdir(fixture.mounted("a/b/c"), 0o755) == 0)
        for index in 0..<200 {
            try writeFile(fixture.mounted("a/b/c/f\(index)"), pattern(1000 + index, seed: UInt8(index & 0xff)))
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: fixture.mounted("a/b/c")).count == 200)
        for index in stride(from: 0, to: 200, by: 17) {
            #expect(try readFile(fixture.mounted("a/b/c/f\(index)")) == pattern(1000 + index, seed: UInt8(index & 0xff)))
        }
        #expect(fixture.core.knownInodeCount > 200)
        #expect(fixture.core.pinnedInodeCount <= 2)

        #expect(chmod(fixture.mounted("a/b/c/f1"), 0o600) == 0)
        #expect(setxattr(fixture.mounted("a/b/c/f1"), "user.k", "v", 1, 0) == 0)
        #expect(getxattr(fixture.backing("a/b/c/f1"), "user.k", nil, 0) == 1)
        #expect(truncate(fixture.mounted("a/b/c/f2"), 10) == 0)
        #expect(try status(fixture.backing("a/b/c/f2")).st_size == 10)
        #expect(link(fixture.mounted("a/b/c/f3"), fixture.mounted("a/hard")) == 0)
        #expect(symlink("b/c/f3", fixture.mounted("a/soft")) == 0)
        #expect(try readFile(fixture.mounted("a/soft")) == pattern(1003, seed: 3))
        #expect(rename(fixture.mounted("a/b/c"), fixture.mounted("a/moved")) == 0)
        #expect(try readFile(fixture.mounted("a/moved/f4")) == pattern(1004, seed: 4))
        #expect(try readFile(fixture.mounted("a/hard")) == pattern(1003, seed: 3))
    }

    @Test func unlinkedOpenFileStillAnswersFstatWithoutAPinnedDescriptor() throws {
        let fixture = try MountFixture(configuration: .init(pinnedInodeLimit: 1))
        defer { fixture.stop() }
        try writeFile(fixture.mounted("gone"), pattern(5000))
        let descriptor = open(fixture.mounted("gone"), O_RDWR | O_CLOEXEC)
        try #require(descriptor >= 0)
        defer { close(descriptor) }
        #expect(unlink(fixture.mounted("gone")) == 0)
        var info = stat()
        #expect(fstat(descriptor, &info) == 0)
        #expect(info.st_size == 5000)
        #expect(try readAll(descriptor) == pattern(5000))
    }

    @Test func fileReplacedBehindTheMountIsStaleThenFoundAgain() throws {
        let root = try makeTemporaryDirectory("unpinned")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let core = try PassthroughCore(endpoint: root, configuration: .init(pinnedInodeLimit: 1))
        try writeFile(root + "/f", [1])
        let old = try core.lookup(parent: 1, name: Array("f".utf8))
        try writeFile(root + "/f.new", [2, 2])
        #expect(rename(root + "/f.new", root + "/f") == 0)
        #expect(throws: Errno.stale) { try core.getattr(old.inode, handle: nil) }
        let new = try core.lookup(parent: 1, name: Array("f".utf8))
        #expect(new.inode != old.inode)
        #expect(try core.getattr(new.inode, handle: nil).st_size == 2)
    }

    @Test func pathsStayMountedWhenTheEndpointIsRenamedBehindTheMount() throws {
        let fixture = try MountFixture(configuration: .init(pinnedInodeLimit: 1))
        defer { fixture.stop() }
        #expect(mkdir(fixture.mounted("d"), 0o755) == 0)
        try writeFile(fixture.mounted("d/f"), [7])
        #expect(try readFile(fixture.mounted("d/f")) == [7])
        // Renamed by someone else (the sync engine): the kernel's cached names go stale, and the
        // next lookup finds the new names.
        #expect(rename(fixture.backing("d"), fixture.backing("e")) == 0)
        usleep(1_100_000)  // the entry timeout
        #expect(errnoOf { access(fixture.mounted("d/f"), F_OK) } == ENOENT)
        #expect(try readFile(fixture.mounted("e/f")) == [7])
    }
}
