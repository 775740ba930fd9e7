import CFuse3
import Foundation
import Glibc
import Testing
@testable import FUSE

/// Directories, renames and links through a real mount.
@Suite struct MountedNamespaceTests {
    @Test func directoriesAreCreatedListedAndRemoved() throws {
        let fixture = try MountFixture()
        defer { fixture.stop() }
        #expect(mkdir(fixture.mounted("d"), 0o755) == 0)
        #expect(mkdir(fixture.mounted("d/sub"), 0o700) == 0)
        for index in 0..<300 {  // more than one readdir buffer
            try writeFile(fixture.mounted("d/file-\(index)"), [UInt8(index & 0xff)])
        }
        var expected = Set((0..<300).map { "file-\($0)" })
        expected.insert("sub")
        #expect(Set(try FileManager.default.contentsOfDirectory(atPath: fixture.mounted("d"))) == expected)
        #expect(Set(try FileManager.default.contentsOfDirectory(atPath: fixture.backing("d"))) == expected)
        #expect(try status(fixture.backing("d/sub")).st_mode & S_IFMT == S_IFDIR)

        #expect(errnoOf { rmdir(fixture.mounted("d")) } == ENOTEMPTY)
        #expect(rmdir(fixture.mounted("d/sub")) == 0)
        for index in 0..<300 { #expect(unlink(fixture.mounted("d/file-\(index)")) == 0) }
        #expect(rmdir(fixture.mounted("d")) == 0)
        #expect(errnoOf { access(fixture.backing("d"), F_OK) } == ENOENT)
    }

    @Test func listingShowsDotEntriesAndTypes() throws {
        let fixture = try MountFixture()
        defer { fixture.stop() }
        try writeFile(fixture.mounted("f"), [])
        #expect(mkdir(fixture.mounted("d"), 0o755) == 0)
        #expect(symlink("f", fixture.mounted("l")) == 0)
        let stream = try #require(opendir(fixture.mountpoint))
        defer { closedir(stream) }
        var types: [String: UInt8] = [:]
        while let entry = readdir(stream) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            types[name] = entry.pointee.d_type
        }
        #expect(types["."] == UInt8(DT_DIR) && types[".."] == UInt8(DT_DIR))
        #expect(types["f"] == UInt8(DT_REG) && types["d"] == UInt8(DT_DIR) && types["l"] == UInt8(DT_LNK))
    }

    @Test func renameReplacesAnExistingTarget() throws {
        let fixture = try MountFixture()
        defer { fixture.stop() }
        try writeFile(fixture.mounted("new"), Array("new".utf8))
        try writeFile(fixture.mounted("old"), Array("old".utf8))
        let replacedInode = try status(fixture.mounted("old")).st_ino
        #expect(rename(fixture.mounted("new"), fixture.mounted("old")) == 0)
        #expect(try readFile(fixture.mounted("old")) == Array("new".utf8))
        #expect(try readFile(fixture.backing("old")) == Array("new".utf8))
        #expect(try status(fixture.mounted("old")).st_ino != replacedInode)
        #expect(errnoOf { access(fixture.mounted("new"), F_OK) } == ENOENT)
    }

    @Test func renameAcrossDirectoriesMovesTheFile() throws {
        let fixture = try MountFixture()
        defer { fixture.stop() }
        #expect(mkdir(fixture.mounted("a"), 0o755) == 0)
        #expect(mkdir(fixture.mounted("b"), 0o755) == 0)
        try writeFile(fixture.mounted("a/f"), [1, 2])
        #expect(rename(fixture.mounted("a/f"), fixture.mounted("b/g")) == 0)
        #expect(try readFile(fixture.backing("b/g")) == [1, 2])
        #expect(rename(fixture.mounted("b"), fixture.mounted("a/b")) == 0)
        #expect(try readFile(fixture.mounted("a/b/g")) == [1, 2])
    }

    @Test func renameNoReplaceRefusesAnExistingTarget() throws {
        let fixture = try MountFixture()
        defer { fixture.stop() }
        try writeFile(fixture.mounted("x"), [1])
        try writeFile(fixture.mounted("y"), [2])
        #expect(errnoOf { CFuse3_renameat2(AT_FDCWD, fixture.mounted("x"), AT_FDCWD, fixture.mounted("y"), RenameFlags.noReplace.rawValue) } == EEXIST)
        #expect(try readFile(fixture.backing("y")) == [2])
        #expect(CFuse3_renameat2(AT_FDCWD, fixture.mounted("x"), AT_FDCWD, fixture.mounted("z"), RenameFlags.noReplace.rawValue) == 0)
        #expect(try readFile(fixture.backing("z")) == [1])
    }

    @Test func renameExchangeSwapsTwoNames() throws {
        let fixture = try MountFixture()
        defer { fixture.stop() }
        try writeFile(fixture.mounted("x"), [1])
        #expect(mkdir(fixture.mounted("y"), 0o755) == 0)
        #expect(CFuse3_renameat2(AT_FDCWD, fixture.mounted("x"), AT_FDCWD, fixture.mounted("y"), RenameFlags.exchange.rawValue) == 0)
        #expect(try status(fixture.mounted("x")).st_mode & S_IFMT == S_IFDIR)
        #expect(try readFile(fixture.mounted("y")) == [1])
        #expect(try readFile(fixture.backing("y")) == [1])
    }

    /// A name replaced behind the mount, then renamed through it before the kernel looks it up again:
    /// the kernel's entry still holds the replaced file, while the rename moves what the name holds on
    /// the endpoint. The new name must then read and write that file, not the replaced one.
    @Test(arguments: [false, true]) func aNameReplacedBehindTheMountIsRenamedAsItIsNow(exchange: Bool) throws {
        let fixture = try MountFixture()
        defer { fixture.stop() }
        try writeFile(fixture.mounted("a"), pattern(5000, seed: 1))
        try writeFile(fixture.mounted("c"), pattern(700, seed: 3))
        #expect(try readFile(fixture.mounted("a")) == pattern(5000, seed: 1))  // the kernel caches "a"
        try writeFile(fixture.backing("b"), pattern(3000, seed: 2))
        #expect(rename(fixture.backing("b"), fixture.backing("a")) == 0)  // behind the mount
        if exchange {
            #expect(CFuse3_renameat2(AT_FDCWD, fixture.mounted("a"), AT_FDCWD, fixture.mounted("c"), RenameFlags.exchange.rawValue) == 0)
            #expect(try readFile(fixture.mounted("a")) == pattern(700, seed: 3))
        } else {
            #expect(rename(fixture.mounted("a"), fixture.mounted("c")) == 0)
        }
        #expect(try readFile(fixture.mounted("c")) == pattern(3000, seed: 2))
        var status = stat()
        #expect(stat(fixture.mounted("c"), &status) == 0 && status.st_size == 3000)
        let descriptor = open(fixture.mounted("c"), O_WRONLY | O_APPEND | O_CLOEXEC)
        try #require(descriptor >= 0)
        #expect(write(descriptor, [UInt8]([9, 9]), 2) == 2)
        #expect(fsync(descriptor) == 0)  // close does not wait for the daemon
        close(descriptor)
        #expect(try readFile(fixture.backing("c")) == pattern(3000, seed: 2) + [9, 9])
    }

    @Test func hardLinksShareOneFile() throws {
        let fixture = try MountFixture()
        defer { fixture.stop() }
        try writeFile(fixture.mounted("a"), [1, 2, 3])
        #expect(link(fixture.mounted("a"), fixture.mounted("b")) == 0)
        let first = try status(fixture.mounted("a"))
        let second = try status(fixture.mounted("b"))
        #expect(first.st_ino == second.st_ino)
        #expect(second.st_nlink == 2)
        #expect(try status(fixture.backing("b")).st_ino == first.st_ino)
        try writeFile(fixture.mounted("b"), [9])
        #expect(try readFile(fixture.mounted("a")) == [9])
        #expect(unlink(fixture.mounted("a")) == 0)
        #expect(try status(fixture.mounted("b")).st_nlink == 1)
    }

    @Test func symbolicLinksAreCreatedReadAndResolvedInTheMount() throws {
        let fixture = try MountFixture()
        defer { fixture.stop() }
        #expect(mkdir(fixture.mounted("dir"), 0o755) == 0)
        try writeFile(fixture.mounted("dir/target"), Array("via link".utf8))
        #expect(symlink("dir/target", fixture.mounted("link")) == 0)
        var buffer = [CChar](repeating: 0, count: 256)
        let count = readlink(fixture.mounted("link"), &buffer, buffer.count)
        #expect(String(decoding: buffer.prefix(max(count, 0)).map { UInt8(bitPattern: $0) }, as: UTF8.self) == "dir/target")
        #expect(try readFile(fixture.mounted("link")) == Array("via link".utf8))
        #expect(try status(fixture.backing("link")).st_mode & S_IFMT == S_IFLNK)
        // A link to a symlink, and the symlink's own owner (lchown), stay on the link itself.
        #expect(link(fixture.mounted("link"), fixture.mounted("link2")) == 0)
        #expect(try status(fixture.mounted("link2")).st_mode & S_IFMT == S_IFLNK)
        #expect(lchown(fixture.mounted("link"), 321, 654) == 0)
        #expect(try status(fixture.backing("link")).st_uid == 321)
        #expect(try status(fixture.backing("dir/target")).st_uid == 0)
    }

    @Test func filesCreatedForAnotherUserBelongToThatUser() throws {
        guard geteuid() == 0 else {
            Issue.record("needs root: the daemon hands new files to the calling user only when it runs as root")
            return
        }
        let fixture = try MountFixture()
        defer { fixture.stop() }
        #expect(chmod(fixture.mountpoint, 0o777) == 0)
        // A child process with another identity creates the files (setfsuid in a thread would not
        // reach the kernel's FUSE request credentials the same way).
        let result = try shell("setpriv --reuid=4321 --regid=4321 --clear-groups sh -c 'echo hi > f && mkdir d && ln -s f l'",
                               in: fixture.mountpoint)
        #expect(result.status == 0, "\(result.output)")
        for name in ["f", "d", "l"] {
            let owner = try status(fixture.backing(name))
            #expect(owner.st_uid == 4321 && owner.st_gid == 4321, "\(name)")
        }
    }
}
