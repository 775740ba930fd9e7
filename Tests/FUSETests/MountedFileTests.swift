import CFuse3
import Foundation
import Glibc
import Testing
@testable import FUSE

/// File content and attributes through a real mount, checked against the backing endpoint.
@Suite struct MountedFileTests {
    @Test func createdFileIsWrittenThroughToTheEndpointAndReadBack() throws {
        let fixture = try MountFixture()
        defer { fixture.stop() }
        let content = pattern(3 << 20, seed: 7)  // several maximal write requests
        try writeFile(fixture.mounted("data.bin"), content)
        #expect(try readFile(fixture.backing("data.bin")) == content)
        #expect(try readFile(fixture.mounted("data.bin")) == content)
        #expect(try status(fixture.mounted("data.bin")).st_size == content.count)
    }

    @Test func splicedWriteRequestsStoreTheSameBytes() throws {
        let fixture = try MountFixture(options: MountOptions(spliceWrites: true, stopGracePeriod: .seconds(2)))
        defer { fixture.stop() }
        let content = pattern(5 << 20 + 123, seed: 4)
        try writeFile(fixture.mounted("spliced.bin"), content)
        #expect(try readFile(fixture.backing("spliced.bin")) == content)
        // Small writes and appends (which cannot be spliced) too.
        try writeFile(fixture.mounted("small"), [1, 2, 3])
        let descriptor = open(fixture.mounted("small"), O_WRONLY | O_APPEND | O_CLOEXEC)
        try #require(descriptor >= 0)
        try writeAll(descriptor, pattern(300_000))
        close(descriptor)
        #expect(try readFile(fixture.backing("small")) == [1, 2, 3] + pattern(300_000))
    }

    @Test func fileWrittenInTheEndpointIsReadThroughTheMount() throws {
        let fixture = try MountFixture()
        defer { fixture.stop() }
        let content = pattern(200_000, seed: 3)
        try writeFile(fixture.backing("outside.bin"), content)
        #expect(try readFile(fixture.mounted("outside.bin")) == content)
        #expect(try status(fixture.mounted("outside.bin")).st_ino == status(fixture.backing("outside.bin")).st_ino)
    }

    @Test func appendModeAddsAtTheEnd() throws {
        let fixture = try MountFixture()
        defer { fixture.stop() }
        try writeFile(fixture.mounted("log.txt"), Array("one\n".utf8))
        let descriptor = open(fixture.mounted("log.txt"), O_WRONLY | O_APPEND | O_CLOEXEC)
        try #require(descriptor >= 0)
        // A seek does not move appends.
        lseek(descriptor, 0, SEEK_SET)
        try writeAll(descriptor, Array("two\n".utf8))
        close(descriptor)
        #expect(try readFile(fixture.backing("log.txt")) == Array("one\ntwo\n".utf8))
    }

    @Test func truncateShrinksAndExtendsWithZeros() throws {
        let fixture = try MountFixture()
        defer { fixture.stop() }
        try writeFile(fixture.mounted("t.bin"), pattern(10_000))
        #expect(truncate(fixture.mounted("t.bin"), 100) == 0)
        #expect(try readFile(fixture.backing("t.bin")) == Array(pattern(10_000).prefix(100)))
        let descriptor = open(fixture.mounted("t.bin"), O_RDWR | O_CLOEXEC)
        try #require(descriptor >= 0)
        #expect(ftruncate(descriptor, 300) == 0)
        close(descriptor)
        #expect(try readFile(fixture.mounted("t.bin")) == Array(pattern(10_000).prefix(100)) + [UInt8](repeating: 0, count: 200))
    }

    @Test func exclusiveCreateFailsOnAnExistingFile() throws {
        let fixture = try MountFixture()
        defer { fixture.stop() }
        let first = open(fixture.mounted("lock"), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        #expect(first >= 0)
        close(first)
        #expect(errnoOf { open(fixture.mounted("lock"), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600) } == EEXIST)
        // Also when the file appeared behind the mount after the kernel cached the name as absent.
        #expect(errnoOf { access(fixture.mounted("later"), F_OK) } == ENOENT)
        try writeFile(fixture.backing("later"), [1])
        #expect(errnoOf { open(fixture.mounted("later"), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600) } == EEXIST)
    }

    @Test func openWithTruncateEmptiesTheFile() throws {
        let fixture = try MountFixture()
        defer { fixture.stop() }
        try writeFile(fixture.mounted("f"), pattern(5000))
        let descriptor = open(fixture.mounted("f"), O_WRONLY | O_TRUNC | O_CLOEXEC)
        try #require(descriptor >= 0)
        try writeAll(descriptor, [9, 9])
        close(descriptor)
        #expect(try readFile(fixture.backing("f")) == [9, 9])
        #expect(try readFile(fixture.mounted("f")) == [9, 9])
    }

    @Test func newFileGetsTheRequestedModeDespiteTheDaemonsUmask() throws {
        let fixture = try MountFixture()
        defer { fixture.stop() }
        let previous = umask(0)
        defer { umask(previous) }
        let descriptor = open(fixture.mounted("shared"), O_WRONLY | O_CREAT | O_CLOEXEC, 0o666)
        close(descriptor)
        #expect(mkdir(fixture.mounted("dir"), 0o777) == 0)
        #expect(try status(fixture.backing("shared")).st_mode & 0o777 == 0o666)
        #expect(try status(fixture.backing("dir")).st_mode & 0o777 == 0o777)
    }

    @Test func unlinkedFileStaysReadableAndWritableWhileOpen() throws {
        let fixture = try MountFixture()
        defer { fixture.stop() }
        try writeFile(fixture.mounted("tmp"), pattern(70_000, seed: 1))
        let descriptor = open(fixture.mounted("tmp"), O_RDWR | O_CLOEXEC)
        try #require(descriptor >= 0)
        defer { close(descriptor) }
        #expect(unlink(fixture.mounted("tmp")) == 0)
        #expect(errnoOf { access(fixture.mounted("tmp"), F_OK) } == ENOENT)
        #expect(errnoOf { access(fixture.backing("tmp"), F_OK) } == ENOENT)
        var info = stat()
        #expect(fstat(descriptor, &info) == 0)
        #expect(info.st_nlink == 0)
        #expect(info.st_size == 70_000)
        #expect(try readAll(descriptor) == pattern(70_000, seed: 1))
        #expect(pwrite(descriptor, [UInt8]([5, 6, 7]), 3, 0) == 3)
        var head = [UInt8](repeating: 0, count: 3)
        #expect(pread(descriptor, &head, 3, 0) == 3)
        #expect(head == [5, 6, 7])
    }

    @Test func chmodChownAndTimesReachTheEndpoint() throws {
        let fixture = try MountFixture()
        defer { fixture.stop() }
        try writeFile(fixture.mounted("a"), [1, 2, 3])
        #expect(chmod(fixture.mounted("a"), 0o640) == 0)
        #expect(try status(fixture.backing("a")).st_mode & 0o7777 == 0o640)
        #expect(chown(fixture.mounted("a"), 1234, 5678) == 0)
        let owned = try status(fixture.backing("a"))
        #expect(owned.st_uid == 1234 && owned.st_gid == 5678)
        #expect(lchown(fixture.mounted("a"), uid_t.max, 42) == 0)  // -1 keeps the owner
        #expect(try status(fixture.backing("a")).st_uid == 1234)
        #expect(try status(fixture.backing("a")).st_gid == 42)

        // Explicit times, then UTIME_NOW for mtime with UTIME_OMIT for atime.
        var times = [timespec(tv_sec: 1_000_000_000, tv_nsec: 123_456_789), timespec(tv_sec: 1_200_000_000, tv_nsec: 5)]
        #expect(utimensat(AT_FDCWD, fixture.mounted("a"), &times, 0) == 0)
        var backing = try status(fixture.backing("a"))
        #expect(backing.st_atim.tv_sec == 1_000_000_000 && backing.st_atim.tv_nsec == 123_456_789)
        #expect(backing.st_mtim.tv_sec == 1_200_000_000 && backing.st_mtim.tv_nsec == 5)
        times = [timespec(tv_sec: 0, tv_nsec: LinuxFlags.utimeOmit), timespec(tv_sec: 0, tv_nsec: LinuxFlags.utimeNow)]
        #expect(utimensat(AT_FDCWD, fixture.mounted("a"), &times, 0) == 0)
        backing = try status(fixture.backing("a"))
        #expect(backing.st_atim.tv_sec == 1_000_000_000)
        #expect(abs(backing.st_mtim.tv_sec - time(nil)) < 60)
        // And the mount reports what the endpoint holds.
        let mounted = try status(fixture.mounted("a"))
        #expect(mounted.st_mtim.tv_sec == backing.st_mtim.tv_sec && mounted.st_mode == backing.st_mode)
    }

    @Test func fsyncAndFdatasyncSucceedOnFilesAndDirectories() throws {
        let fixture = try MountFixture()
        defer { fixture.stop() }
        let descriptor = open(fixture.mounted("durable"), O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
        try #require(descriptor >= 0)
        try writeAll(descriptor, pattern(4096))
        #expect(fsync(descriptor) == 0)
        #expect(fdatasync(descriptor) == 0)
        close(descriptor)
        let directory = open(fixture.mountpoint, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        try #require(directory >= 0)
        #expect(fsync(directory) == 0)
        close(directory)
    }

    @Test func statfsReportsTheEndpointFileSystem() throws {
        let fixture = try MountFixture()
        defer { fixture.stop() }
        var mounted = statvfs()
        var backing = statvfs()
        #expect(statvfs(fixture.mountpoint, &mounted) == 0)
        #expect(statvfs(fixture.endpoint, &backing) == 0)
        #expect(mounted.f_blocks == backing.f_blocks)
        #expect(mounted.f_bsize == backing.f_bsize)
        #expect(mounted.f_namemax == backing.f_namemax)
    }

    @Test func fallocateReservesSpaceInTheEndpoint() throws {
        let fixture = try MountFixture()
        defer { fixture.stop() }
        let descriptor = open(fixture.mounted("reserved"), O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        try #require(descriptor >= 0)
        defer { close(descriptor) }
        #expect(CFuse3_fallocate(descriptor, 0, 0, 1 << 20) == 0)
        #expect(try status(fixture.backing("reserved")).st_size == 1 << 20)
    }

    @Test func deviceNodesAreMadeButNeverOpenedThroughTheMountAndFifosWork() throws {
        let fixture = try MountFixture()
        defer { fixture.stop() }
        // As root (CAP_MKNOD): the node is made with its device number; the mount is nodev.
        #expect(mknod(fixture.mounted("null"), S_IFCHR | 0o666, makedev(1, 3)) == 0)
        let node = try status(fixture.backing("null"))
        #expect(node.st_mode & S_IFMT == S_IFCHR && node.st_rdev == makedev(1, 3))
        #expect(errnoOf { open(fixture.mounted("null"), O_RDONLY | O_CLOEXEC) } == EACCES, "nodev: never opened through the mount")
        #expect(mkfifo(fixture.mounted("pipe"), 0o600) == 0)
        #expect(try status(fixture.backing("pipe")).st_mode & S_IFMT == S_IFIFO)
    }

    @Test func locksWorkBetweenDescriptorsOfTheMount() throws {
        let fixture = try MountFixture()
        defer { fixture.stop() }
        try writeFile(fixture.mounted("locked"), [0])
        let first = open(fixture.mounted("locked"), O_RDWR | O_CLOEXEC)
        let second = open(fixture.mounted("locked"), O_RDWR | O_CLOEXEC)
        defer { close(first); close(second) }
        #expect(flock(first, LOCK_EX | LOCK_NB) == 0)
        #expect(errnoOf { flock(second, LOCK_EX | LOCK_NB) } == EWOULDBLOCK)
        #expect(flock(first, LOCK_UN) == 0)
        #expect(flock(second, LOCK_EX | LOCK_NB) == 0)
    }
}

/// `makedev`, a macro Swift does not import.
func makedev(_ major: UInt32, _ minor: UInt32) -> dev_t {
    dev_t((major & 0xfff) << 8 | (minor & 0xff) | ((minor & ~0xff) << 12)) | (dev_t(major & ~0xfff) << 32)
}

/// Starting and ending mounts.
@Suite struct MountLifecycleTests {
    func isMounted(_ path: String) -> Bool {
        MountPoint.connection(of: path) != nil
    }

    @Test func stopUnmountsAndTheEndpointKeepsTheData() throws {
        let fixture = try MountFixture()
        try writeFile(fixture.mounted("kept"), [4, 2])
        #expect(isMounted(fixture.mountpoint))
        fixture.session.stop()
        #expect(!fixture.session.isRunning)
        #expect(!isMounted(fixture.mountpoint))
        #expect(try readFile(fixture.backing("kept")) == [4, 2])
        fixture.session.stop()  // a second stop is harmless
        fixture.stop()
    }

    @Test func stopEndsABusyMountAfterTheGracePeriod() throws {
        // A handle through the daemon: a passed-through one keeps using the endpoint file (PassthroughTests).
        let fixture = try MountFixture(options: MountOptions(stopGracePeriod: .milliseconds(300), passthrough: false))
        defer { fixture.stop() }
        try writeFile(fixture.mounted("held"), [1])
        let descriptor = open(fixture.mounted("held"), O_RDONLY | O_CLOEXEC)
        try #require(descriptor >= 0)
        defer { close(descriptor) }
        let started = ContinuousClock.now
        fixture.session.stop()
        #expect(ContinuousClock.now - started >= .milliseconds(300))
        #expect(!isMounted(fixture.mountpoint))
        var byte: UInt8 = 0
        #expect(read(descriptor, &byte, 1) == -1)  // the connection was aborted under it
    }

    @Test func sigtermStopsTheSessionCleanly() throws {
        let fixture = try MountFixture()
        defer { fixture.stop() }
        fixture.session.stopOnSignals([SIGTERM])
        #expect(kill(getpid(), SIGTERM) == 0)
        #expect(fixture.session.wait() == 0)
        #expect(!isMounted(fixture.mountpoint))
    }

    @Test func anUnmountByTheAdministratorEndsTheSession() throws {
        let fixture = try MountFixture()
        defer { fixture.stop() }
        #expect(umount2(fixture.mountpoint, 0) == 0 || errno == EPERM)
        if !isMounted(fixture.mountpoint) {
            #expect(fixture.session.wait() == 0)
            #expect(!fixture.session.isRunning)
        }
    }

    @Test func mountingOnAMissingDirectoryFailsWithAReason() throws {
        try MountFixture.requireFUSE()
        let core = try PassthroughCore(endpoint: NSTemporaryDirectory())
        #expect(throws: MountError.self) { try MountSession.mount(core, at: "/nonexistent/tiergate-mountpoint") }
    }
}
