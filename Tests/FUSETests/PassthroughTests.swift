import CFuse3
import Foundation
import Glibc
import Testing
@testable import FUSE

/// Full files are read, written and mapped by the kernel on the endpoint directly (FUSE passthrough);
/// stubs still go through the daemon and its hooks, and changes are still reported.
@Suite struct PassthroughTests {
    func eventually(_ condition: () -> Bool) -> Bool {
        for _ in 0..<200 {
            if condition() { return true }
            usleep(10_000)
        }
        return condition()
    }

    func changes(_ hooks: RecordingHooks, _ path: String) -> [MountChange.Kind] {
        hooks.recorded.compactMap { call in
            if case let .didChange(kind, changed, _) = call, changed == path { kind } else { nil }
        }
    }

    /// Passthrough needs root (the daemon mounts the device itself) and Linux 6.9.
    func requirePassthrough(_ fixture: MountFixture) throws {
        _ = try status(fixture.mountpoint)  // the first request completes INIT
        try #require(fixture.session.isPassingThrough, "FUSE passthrough was not negotiated (root and Linux ≥ 6.9 with CONFIG_FUSE_PASSTHROUGH needed)")
    }

    @Test func readsOfAFullFileNeverReachTheCore() throws {
        let fixture = try MountFixture()
        defer { fixture.stop() }
        try requirePassthrough(fixture)
        try writeFile(fixture.backing("hot.bin"), pattern(3 << 20, seed: 4))
        #expect(try readFile(fixture.mounted("hot.bin")) == pattern(3 << 20, seed: 4))
        #expect(fixture.core.servedReadCount == 0)
        // A second handle on the same file shares its backing registration.
        let first = open(fixture.mounted("hot.bin"), O_RDONLY | O_CLOEXEC)
        let second = open(fixture.mounted("hot.bin"), O_RDWR | O_CLOEXEC)
        try #require(first >= 0 && second >= 0)
        var byte: UInt8 = 0
        #expect(pread(first, &byte, 1, 1) == 1 && byte == pattern(3 << 20, seed: 4)[1])
        #expect(pwrite(second, [UInt8]([0xEE]), 1, 1) == 1)
        #expect(pread(first, &byte, 1, 1) == 1 && byte == 0xEE)
        close(first)
        close(second)
        #expect(fixture.core.servedReadCount == 0 && fixture.core.servedWriteCount == 0)
    }

    @Test func writesThroughAPassthroughHandleAreReportedAndLandInTheEndpoint() throws {
        let hooks = RecordingHooks()
        let fixture = try MountFixture(hooks: hooks)
        defer { fixture.stop() }
        try requirePassthrough(fixture)
        try writeFile(fixture.mounted("new.txt"), pattern(200_000, seed: 1))
        try writeFile(fixture.backing("old.txt"), [1, 2, 3])
        let descriptor = open(fixture.mounted("old.txt"), O_WRONLY | O_APPEND | O_CLOEXEC)
        try #require(descriptor >= 0)
        #expect(changes(hooks, "old.txt") == [.modified])  // at the open, before any write
        try writeAll(descriptor, [4, 5])
        close(descriptor)

        #expect(eventually { changes(hooks, "old.txt").last == .closedAfterWrite })
        #expect(changes(hooks, "old.txt") == [.modified, .modified, .closedAfterWrite])
        #expect(eventually { changes(hooks, "new.txt").last == .closedAfterWrite })
        #expect(changes(hooks, "new.txt") == [.created, .modified, .modified, .closedAfterWrite])
        #expect(try readFile(fixture.backing("new.txt")) == pattern(200_000, seed: 1))
        #expect(try readFile(fixture.backing("old.txt")) == [1, 2, 3, 4, 5])
        #expect(try status(fixture.mounted("old.txt")).st_size == 5)
        #expect(fixture.core.servedWriteCount == 0)
        // Reads only: no change reported.
        hooks.reset()
        #expect(try readFile(fixture.mounted("old.txt")) == [1, 2, 3, 4, 5])
        #expect(changes(hooks, "old.txt").isEmpty)
    }

    @Test func stubsAreNeverPassedThroughAndTheirReadsRecall() throws {
        let hooks = RecordingHooks()
        let fixture = try MountFixture(hooks: hooks)
        defer { fixture.stop() }
        try requirePassthrough(fixture)
        hooks.endpoint.withLock { $0 = fixture.endpoint }
        hooks.recalledContent.withLock { $0 = pattern(10_000, seed: 7) }
        let descriptor = open(fixture.backing("stub.bin"), O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
        try #require(descriptor >= 0)
        #expect(ftruncate(descriptor, 10_000) == 0)
        #expect(fsetxattr(descriptor, PassthroughCore.stubMarker, "tiered", 6, 0) == 0)
        close(descriptor)

        // Held open through the daemon while the recall makes it full: a second open of the same file
        // goes through the daemon too (the kernel refuses mixing the two on one inode).
        let held = open(fixture.mounted("stub.bin"), O_RDONLY | O_CLOEXEC)
        try #require(held >= 0)
        var buffer = [UInt8](repeating: 0, count: 10_000)
        #expect(read(held, &buffer, buffer.count) == 10_000)
        #expect(buffer == pattern(10_000, seed: 7))
        #expect(hooks.recorded.contains { if case .beforeRead = $0 { true } else { false } })
        let reads = fixture.core.servedReadCount
        #expect(reads > 0)
        let second = open(fixture.mounted("stub.bin"), O_RDWR | O_CLOEXEC)
        #expect(second >= 0)
        #expect(pwrite(second, [UInt8]([9]), 1, 0) == 1)
        #expect(fixture.core.servedWriteCount == 1)
        close(second)
        close(held)
        // Once every handle is closed, the now full file is passed through.
        #expect(eventually { fixture.core.openFileCount == 0 })
        let before = fixture.core.servedReadCount
        var expected = pattern(10_000, seed: 7)
        expected[0] = 9
        #expect(try readFile(fixture.mounted("stub.bin")) == expected)
        #expect(fixture.core.servedReadCount == before)
    }

    @Test func mappedFilesAreReadAndWrittenThroughTheMount() throws {
        let fixture = try MountFixture()
        defer { fixture.stop() }
        try requirePassthrough(fixture)
        let size = 1 << 20
        let descriptor = open(fixture.mounted("map.bin"), O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        try #require(descriptor >= 0)
        #expect(ftruncate(descriptor, off_t(size)) == 0)
        let mapped = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, descriptor, 0)
        try #require(mapped != MAP_FAILED)
        let bytes = pattern(size, seed: 3)
        bytes.withUnsafeBytes { mapped!.copyMemory(from: $0.baseAddress!, byteCount: size) }
        #expect(msync(mapped, size, MS_SYNC) == 0)
        #expect(munmap(mapped, size) == 0)
        close(descriptor)
        #expect(try readFile(fixture.backing("map.bin")) == bytes)

        // Changed behind the mount, then mapped for reading through it.
        try writeFile(fixture.backing("map.bin"), pattern(size, seed: 5))
        let reader = open(fixture.mounted("map.bin"), O_RDONLY | O_CLOEXEC)
        try #require(reader >= 0)
        defer { close(reader) }
        let view = mmap(nil, size, PROT_READ, MAP_SHARED, reader, 0)
        try #require(view != MAP_FAILED)
        defer { munmap(view, size) }
        #expect(Array(UnsafeRawBufferPointer(start: view, count: size)) == pattern(size, seed: 5))
    }

    @Test func withPassthroughOffEveryReadAndWriteGoesThroughTheDaemon() throws {
        let hooks = RecordingHooks()
        let fixture = try MountFixture(hooks: hooks, options: MountOptions(stopGracePeriod: .seconds(2), passthrough: false))
        defer { fixture.stop() }
        try writeFile(fixture.backing("behind"), pattern(100_000, seed: 2))
        #expect(try readFile(fixture.mounted("behind")) == pattern(100_000, seed: 2))
        #expect(!fixture.session.isPassingThrough)
        #expect(fixture.core.servedReadCount > 0)
        try writeFile(fixture.mounted("file"), pattern(100_000))
        #expect(fixture.core.servedWriteCount > 0)
        #expect(try readFile(fixture.backing("file")) == pattern(100_000))
        // Through the daemon, the change is reported at the first write, not at the open.
        #expect(eventually { changes(hooks, "file").last == .closedAfterWrite })
        #expect(changes(hooks, "file") == [.created, .modified, .closedAfterWrite])
    }

    @Test func aPassedThroughHandleOutlivesTheConnection() throws {
        let fixture = try MountFixture(options: MountOptions(stopGracePeriod: .milliseconds(300)))
        defer { fixture.stop() }
        try requirePassthrough(fixture)
        try writeFile(fixture.mounted("held"), [1])
        let descriptor = open(fixture.mounted("held"), O_RDWR | O_CLOEXEC)
        try #require(descriptor >= 0)
        defer { close(descriptor) }
        fixture.session.stop()  // busy: aborted after the grace period
        // The kernel keeps the backing file of an open passthrough file; new opens fail.
        var byte: UInt8 = 0
        #expect(pread(descriptor, &byte, 1, 0) == 1 && byte == 1)
        #expect(pwrite(descriptor, [UInt8]([2]), 1, 1) == 1)
        #expect(try readFile(fixture.backing("held")) == [1, 2])
        #expect(open(fixture.mounted("held"), O_RDONLY | O_CLOEXEC) == -1)
    }

    @Test func mountOptionsAreSplitBetweenMountFlagsAndTheKernel() {
        let options = MountOptions(allowOther: true)
        let mount = options.kernelMount(device: 7, rootMode: S_IFDIR | 0o755, uid: 0, gid: 0)
        #expect(mount == KernelMount(source: "tiergate", type: "fuse.tiergate", flags: UInt(MS_NOSUID | MS_NODEV),
                                     data: "fd=7,rootmode=40000,user_id=0,group_id=0,default_permissions,allow_other"))
    }
}
