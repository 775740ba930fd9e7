import Backends
import CloudShare
import Dispatch
import Fanotify
import FUSE
import Foundation
@testable import Gateway
import Glibc
import Synchronization
import Testing

/// A value threads may change together.
final class Shared<Value: Sendable>: Sendable {
    let value: Mutex<Value>
    init(_ value: Value) { self.value = Mutex(value) }
}

/// Concurrent readers of one stub share one recall, on both access paths.
@Suite(.serialized) struct SharedRecallTests {
    /// A tiered 3 MiB file `doc.bin` on a one-endpoint group; a recall engine to read it with, over a
    /// share whose reads take 20 ms (so concurrent fills overlap).
    func tieredFile() async throws -> (SyncGroup, [UInt8], RecallEngine) {
        let (group, content) = try await tieredGroup(name: "doc.bin", seed: 95)
        let share = try await CloudShare.open(try StoreLocator.open(group.url))
        try await Tierer(share: share, state: group.gateways[0].state, endpoint: group.endpoints[0]).tier("doc.bin")
        let slow = try await CloudShare.open(FaultInjectingStore(try StoreLocator.open(group.url), getDelay: .milliseconds(20)))
        return (group, content, RecallEngine(share: slow, state: group.gateways[0].state, endpoint: group.endpoints[0]))
    }

    /// Runs `body(i)` on `count` threads released together; waits for all off the cooperative pool.
    func together(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) async throws {
        try await offPool {
            let start = DispatchSemaphore(value: 0)
            let done = DispatchGroup()
            for index in 0..<count {
                done.enter()
                Thread {
                    start.wait()
                    body(index)
                    done.leave()
                }.start()
            }
            for _ in 0..<count { start.signal() }
            done.wait()
        }
    }

    @Test func concurrentMountReadsOfOneChunkFetchItOnce() async throws {
        let (group, content, recaller) = try await tieredFile()
        let hooks = MountRecallHooks(endpoint: group.endpoints[0], state: group.gateways[0].state, recaller: recaller)
        var info = stat()
        stat(group.root(0) + "/doc.bin", &info)
        let file = MountedFile(path: "doc.bin", identity: FileIdentity(device: UInt64(info.st_dev), inode: UInt64(info.st_ino)))
        let failures = Shared(0)
        // Eight readers of the same range at once (through a mount, each handle's read of a page).
        try await together(8) { _ in
            do throws(Errno) {
                try hooks.beforeRead(file, offset: 8192, length: 4096)
            } catch {
                failures.value.withLock { $0 += 1 }
            }
        }
        #expect(failures.value.withLock { $0 } == 0)
        let figures = recaller.currentFigures
        #expect(figures.recalls == 1 && figures.hits == 7, "one fetch, seven readers served by it: \(figures)")
        let back = try readAll(group.root(0) + "/doc.bin")
        #expect(back.prefix(16384) == content.prefix(16384))
    }

    @Test func aSequentialReaderOfAStubThroughTheMountGetsReadAhead() async throws {
        let (group, content, recaller) = try await tieredFile()
        let hooks = MountRecallHooks(endpoint: group.endpoints[0], state: group.gateways[0].state, recaller: recaller)
        let path = group.root(0) + "/doc.bin"
        var info = stat()
        stat(path, &info)
        let file = MountedFile(path: "doc.bin", identity: FileIdentity(device: UInt64(info.st_dev), inode: UInt64(info.st_ino)))
        let afterFirst = try await offPool { () throws -> StubFile.State? in
            try hooks.beforeRead(file, offset: 0, length: 128 << 10)
            let marker = StubFile.marker(atPath: path)
            try hooks.beforeRead(file, offset: 128 << 10, length: 128 << 10)   // sequential: read-ahead starts
            return marker
        }
        #expect(afterFirst == .partial, "the first read recalls only its chunks")
        // The rest of the 3 MiB file (inside the 8 MiB window) arrives without further reads.
        var whole = false
        for _ in 0..<100 where !whole {
            try await Task.sleep(for: .milliseconds(50))
            whole = StubFile.marker(atPath: path) == nil
        }
        #expect(whole, "read-ahead recalled the rest of the stub")
        #expect(try readAll(path) == content)
    }

    @Test func aMountReadOfAStubMarkedForFanotifyRecallsWithoutWaitingForItself() async throws {
        let (group, content, _) = try await tieredFile()
        guard PreContentMonitor.isSupported(at: group.root(0)) else {
            Issue.record("fanotify pre-content events are unavailable here: the test cannot run")
            return
        }
        // The daemon with both access paths: the endpoint's stubs marked, and the mount's hooks on the
        // same recall engine. The mount's writes into the marked stub raise events the daemon answers.
        let share = try await CloudShare.open(FaultInjectingStore(try StoreLocator.open(group.url), getDelay: .milliseconds(20)))
        let runtime = try TieringRuntime(endpoint: group.endpoints[0], share: share, state: group.gateways[0].state)
        defer { runtime.stop() }
        #expect(try await runtime.markStubs() == 1)
        let hooks = MountRecallHooks(endpoint: group.endpoints[0], state: group.gateways[0].state, recaller: runtime.recaller)
        let path = group.root(0) + "/doc.bin"
        var info = stat()
        stat(path, &info)
        let file = MountedFile(path: "doc.bin", identity: FileIdentity(device: UInt64(info.st_dev), inode: UInt64(info.st_ino)))
        try await offPool { try hooks.beforeRead(file, offset: 0, length: 4096) }
        #expect(runtime.recaller.currentFigures.recalls == 1)
        try await offPool { try hooks.beforeWrite(file, .write(offset: 100, length: 10)) }
        #expect(StubFile.marker(atPath: path) == nil, "a write recalls the whole stub first")
        #expect(try readAll(path) == content)
    }

    @Test func concurrentFanotifyReadersAndAWholeRecallShareTheWork() async throws {
        let (group, content, _) = try await tieredFile()
        let path = group.root(0) + "/doc.bin"
        guard PreContentMonitor.isSupported(at: group.root(0)) else {
            Issue.record("fanotify pre-content events are unavailable here: the shared-recall test cannot run")
            return
        }
        let share = try await CloudShare.open(FaultInjectingStore(try StoreLocator.open(group.url), getDelay: .milliseconds(20)))
        let runtime = try TieringRuntime(endpoint: group.endpoints[0], share: share, state: group.gateways[0].state)
        defer { runtime.stop() }
        _ = try await runtime.markStubs()
        let reads = Shared<[[UInt8]]>([])
        try await together(8) { _ in
            let fd = open(path, O_RDONLY)
            defer { close(fd) }
            var buffer = [UInt8](repeating: 0, count: 4096)
            _ = pread(fd, &buffer, 4096, 1_000_000)
            reads.value.withLock { $0.append(buffer) }
        }
        #expect(reads.value.withLock { $0.allSatisfy { $0 == Array(content[1_000_000..<1_004_096]) } })
        let figures = runtime.recaller.currentFigures
        #expect(figures.recalls == 1 && figures.hits == 7, "one fetch for eight readers: \(figures)")
        // A whole-file recall next to readers of the rest: exact content, no byte written twice.
        async let whole = runtime.recaller.recall("doc.bin")
        try await together(4) { index in
            let fd = open(path, O_RDONLY)
            defer { close(fd) }
            var buffer = [UInt8](repeating: 0, count: 4096)
            _ = pread(fd, &buffer, 4096, off_t(index * 700_000 + 5000))
        }
        let written = try await whole
        #expect(try readAll(path) == content)
        #expect(StubFile.marker(atPath: path) == nil)
        let bytes = runtime.recaller.currentFigures.bytes
        #expect(bytes == Int64(content.count), "every byte recalled exactly once (\(bytes) in all, \(written) by the whole recall)")
    }
}
