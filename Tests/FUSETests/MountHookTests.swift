import CFuse3
import Foundation
import Glibc
import Testing
@testable import FUSE

/// The Gateway's hooks are called at the right moments, and only stubs pay for recall hooks.
@Suite struct MountHookTests {
    /// Waits up to two seconds for `condition`: release (and so `closedAfterWrite`) reaches the daemon
    /// asynchronously after close(2).
    func eventually(_ condition: () -> Bool) -> Bool {
        for _ in 0..<200 {
            if condition() { return true }
            usleep(10_000)
        }
        return condition()
    }

    func changes(_ hooks: RecordingHooks) -> [RecordingHooks.Call] {
        hooks.recorded.filter { if case .didChange = $0 { true } else { false } }
    }

    /// A backing file that looks like a stub: the right size, holes only, and the stub mark.
    func makeStub(_ path: String, size: Int) throws {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw Errno.current }
        defer { close(descriptor) }
        guard ftruncate(descriptor, off_t(size)) == 0,
              fsetxattr(descriptor, PassthroughCore.stubMarker, "tiered", 6, 0) == 0 else { throw Errno.current }
    }

    @Test func changesThroughTheMountAreReportedWithTheirPaths() throws {
        let hooks = RecordingHooks()
        let fixture = try MountFixture(hooks: hooks)
        defer { fixture.stop() }
        #expect(mkdir(fixture.mounted("dir"), 0o755) == 0)
        let descriptor = open(fixture.mounted("dir/f"), O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
        try #require(descriptor >= 0)
        try writeAll(descriptor, [1])
        try writeAll(descriptor, [2])
        close(descriptor)
        #expect(eventually { changes(hooks).contains(.didChange(.closedAfterWrite, "dir/f", previous: nil)) })
        #expect(rename(fixture.mounted("dir/f"), fixture.mounted("dir/g")) == 0)
        #expect(chmod(fixture.mounted("dir/g"), 0o600) == 0)
        #expect(truncate(fixture.mounted("dir/g"), 0) == 0)
        #expect(setxattr(fixture.mounted("dir/g"), "user.tag", "1", 1, 0) == 0)
        #expect(link(fixture.mounted("dir/g"), fixture.mounted("h")) == 0)
        #expect(unlink(fixture.mounted("dir/g")) == 0)
        #expect(unlink(fixture.mounted("h")) == 0)
        #expect(rmdir(fixture.mounted("dir")) == 0)

        #expect(changes(hooks) == [
            .didChange(.directoryCreated, "dir", previous: nil),
            .didChange(.created, "dir/f", previous: nil),
            // The kernel writes a full file directly (passthrough): modified at the open, whatever the
            // number of writes, and again at the release.
            .didChange(.modified, "dir/f", previous: nil),
            .didChange(.modified, "dir/f", previous: nil),
            .didChange(.closedAfterWrite, "dir/f", previous: nil),
            .didChange(.renamed, "dir/g", previous: "dir/f"),
            .didChange(.attributesChanged, "dir/g", previous: nil),
            .didChange(.modified, "dir/g", previous: nil),
            .didChange(.attributesChanged, "dir/g", previous: nil),
            .didChange(.linked, "h", previous: nil),
            .didChange(.removed, "dir/g", previous: nil),
            .didChange(.removed, "h", previous: nil),
            .didChange(.directoryRemoved, "dir", previous: nil),
        ])
    }

    @Test func opensAreReportedWithTheirFlags() throws {
        let hooks = RecordingHooks()
        let fixture = try MountFixture(hooks: hooks)
        defer { fixture.stop() }
        try writeFile(fixture.backing("hot.txt"), [1, 2, 3])
        _ = try readFile(fixture.mounted("hot.txt"))
        let opens = hooks.recorded.compactMap { call -> (String?, Int32)? in
            if case let .didOpen(path, flags) = call { (path, flags) } else { nil }
        }
        #expect(opens.count == 1)
        #expect(opens.first?.0 == "hot.txt")
        #expect((opens.first?.1 ?? -1) & O_ACCMODE == O_RDONLY)
    }

    @Test func hotFilesNeverCallTheRecallHooks() throws {
        let hooks = RecordingHooks()
        let fixture = try MountFixture(hooks: hooks)
        defer { fixture.stop() }
        try writeFile(fixture.mounted("hot"), pattern(100_000))
        #expect(try readFile(fixture.mounted("hot")) == pattern(100_000))
        #expect(!hooks.recorded.contains { call in
            switch call {
            case .beforeRead, .beforeWrite: true
            default: false
            }
        })
    }

    @Test func stubReadsAreRecalledBeforeDataIsServed() throws {
        let hooks = RecordingHooks()
        let fixture = try MountFixture(hooks: hooks)
        defer { fixture.stop() }
        hooks.endpoint.withLock { $0 = fixture.endpoint }
        hooks.recalledContent.withLock { $0 = pattern(10_000, seed: 9) }
        try makeStub(fixture.backing("stub.bin"), size: 10_000)

        // stat shows the real size before any recall.
        #expect(try status(fixture.mounted("stub.bin")).st_size == 10_000)
        #expect(try readFile(fixture.mounted("stub.bin")) == pattern(10_000, seed: 9))
        let reads = hooks.recorded.filter { if case .beforeRead = $0 { true } else { false } }
        #expect(reads.count == 1)
        if case let .beforeRead(path, offset, length) = reads.first {
            #expect(path == "stub.bin" && offset == 0 && length >= 4096)
        }
        // The recall removed the mark: later reads do not ask again.
        hooks.reset()
        #expect(try readFile(fixture.mounted("stub.bin")) == pattern(10_000, seed: 9))
        #expect(!hooks.recorded.contains { if case .beforeRead = $0 { true } else { false } })
    }

    @Test func writesIntoAStubWaitForTheWholeRecall() throws {
        let hooks = RecordingHooks()
        let fixture = try MountFixture(hooks: hooks, configuration: .init(keepCache: false))
        defer { fixture.stop() }
        hooks.endpoint.withLock { $0 = fixture.endpoint }
        hooks.recalledContent.withLock { $0 = pattern(4096, seed: 1) }
        try makeStub(fixture.backing("doc"), size: 4096)
        let descriptor = open(fixture.mounted("doc"), O_WRONLY | O_CLOEXEC)
        try #require(descriptor >= 0)
        #expect(pwrite(descriptor, [UInt8]([7, 7, 7]), 3, 4093) == 3)
        close(descriptor)
        #expect(hooks.recorded.contains(.beforeWrite("doc", .write(offset: 4093, length: 3))))
        var expected = pattern(4096, seed: 1)
        expected.replaceSubrange(4093..<4096, with: [7, 7, 7])
        #expect(try readFile(fixture.backing("doc")) == expected)
    }

    @Test func truncatingAStubTellsTheGatewayFirst() throws {
        let hooks = RecordingHooks()
        let fixture = try MountFixture(hooks: hooks)
        defer { fixture.stop() }
        try makeStub(fixture.backing("s1"), size: 8192)
        try makeStub(fixture.backing("s2"), size: 8192)
        let descriptor = open(fixture.mounted("s1"), O_WRONLY | O_TRUNC | O_CLOEXEC)
        try #require(descriptor >= 0)
        close(descriptor)
        #expect(truncate(fixture.mounted("s2"), 100) == 0)
        #expect(hooks.recorded.contains(.beforeWrite("s1", .truncate(size: 0))))
        #expect(hooks.recorded.contains(.beforeWrite("s2", .truncate(size: 100))))
    }

    @Test func failedRecallFailsTheReadWithItsErrno() throws {
        let hooks = RecordingHooks()
        let fixture = try MountFixture(hooks: hooks)
        defer { fixture.stop() }
        hooks.failure.withLock { $0 = Errno(ETIMEDOUT) }
        try makeStub(fixture.backing("far"), size: 5000)
        let descriptor = open(fixture.mounted("far"), O_RDONLY | O_CLOEXEC)
        try #require(descriptor >= 0)
        defer { close(descriptor) }
        var buffer = [UInt8](repeating: 0, count: 100)
        #expect(errnoOf { read(descriptor, &buffer, 100) } == ETIMEDOUT)
        #expect(errnoOf { pwrite(descriptor, [UInt8]([1]), 1, 0) } == EBADF)  // read-only descriptor
        // The stub is untouched.
        #expect(try readFile(fixture.backing("far")) == [UInt8](repeating: 0, count: 5000))
    }

    @Test func backingFileChangedDropsCachedPagesAndRechecksTheStubMark() throws {
        let hooks = RecordingHooks()
        let fixture = try MountFixture(hooks: hooks)
        defer { fixture.stop() }
        try writeFile(fixture.backing("f"), Array("version-1".utf8))
        #expect(try readFile(fixture.mounted("f")) == Array("version-1".utf8))
        // Same size and (within the timestamp granularity) possibly the same mtime: only an explicit
        // invalidation makes the change visible at once.
        let descriptor = open(fixture.backing("f"), O_WRONLY | O_CLOEXEC)
        _ = pwrite(descriptor, "version-2", 9, 0)
        close(descriptor)
        fixture.session.backingFileChanged(FileIdentity(try status(fixture.backing("f"))))
        #expect(try readFile(fixture.mounted("f")) == Array("version-2".utf8))
    }
}
