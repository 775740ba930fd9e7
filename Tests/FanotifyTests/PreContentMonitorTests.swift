import CLinux
import Fanotify
import Foundation
import Glibc
import Testing

/// Real pre-content events on the temporary directory's filesystem (ext4 here): stubs are punched-out
/// files, the handler fills what is read, and readers in child processes and in this process see the
/// original bytes.
@Suite struct PreContentMonitorTests {
    let mebibyte = 1 << 20

    @Test func childProcessReadingAStubGetsTheRecalledBytesNotZeros() throws {
        guard let directory = preContentDirectory() else { return }
        defer { removeTree(directory) }
        let path = directory + "/stub.bin"
        let size = 3 * mebibyte + 12345
        try makeStub(at: path, size: size)

        let monitor = try PreContentMonitor(handler: fillingHandler())
        defer { monitor.stop() }
        try monitor.markFile(atPath: path)

        let result = try runChild("/bin/cat", [path])
        #expect(result.status == 0, "cat failed: \(result.errorOutput)")
        #expect(result.output.count == size)
        #expect(Array(result.output) == expectedBytes(0..<size), "cat must read the recalled bytes, not holes")
        #expect(monitor.statistics.events > 0)
    }

    @Test func inProcessReadOnAnotherThreadGetsTheRecalledBytes() throws {
        guard let directory = preContentDirectory() else { return }
        defer { removeTree(directory) }
        let path = directory + "/stub.bin"
        let size = 2 * mebibyte
        try makeStub(at: path, size: size)

        let monitor = try PreContentMonitor(handler: fillingHandler())
        defer { monitor.stop() }
        try monitor.markFile(atPath: path)

        let read = onAnotherThread { readRange(path, offset: 0, count: size) }
        #expect(try read.get() == expectedBytes(0..<size))
    }

    @Test func anAsyncHandlerAnswersAfterItsTaskFinishes() throws {
        guard let directory = preContentDirectory() else { return }
        defer { removeTree(directory) }
        let path = directory + "/stub.bin"
        try makeStub(at: path, size: 200_000)

        let fill = fillingHandler()
        let monitor = try PreContentMonitor { (event: PreContentEvent) async -> PreContentResponse in
            // A recall awaits the store; the event's descriptor must stay usable across the suspension.
            try? await Task.sleep(for: .milliseconds(20))
            return fill(event)
        }
        defer { monitor.stop() }
        try monitor.markFile(atPath: path)

        let child = try runChild("/bin/cat", [path])
        #expect(child.output == Data(expectedBytes(0..<200_000)))
    }

    @Test func deniedRecallFailsTheReadWithEIOAndLeavesTheStub() throws {
        guard let directory = preContentDirectory() else { return }
        defer { removeTree(directory) }
        let path = directory + "/stub.bin"
        try makeStub(at: path, size: mebibyte)

        let monitor = try PreContentMonitor { _ in .deny(errno: EIO) }
        defer { monitor.stop() }
        try monitor.markFile(atPath: path)

        let child = try runChild("/bin/cat", [path])
        #expect(child.status != 0)
        #expect(child.output.isEmpty)
        #expect(child.errorOutput.contains("Input/output error"), "cat reported: \(child.errorOutput)")

        let read = onAnotherThread { readRange(path, offset: 4096, count: 100) }
        #expect(throws: POSIXError(.EIO)) { try read.get() }
        #expect(allocatedBytes(path) == 0, "a failed recall writes nothing")
        #expect(monitor.statistics.denied >= 2)
    }

    @Test func denyWithAnErrnoTheKernelDoesNotAcceptFailsTheReadWithEPERM() throws {
        guard let directory = preContentDirectory() else { return }
        defer { removeTree(directory) }
        let path = directory + "/stub.bin"
        try makeStub(at: path, size: 65536)

        let monitor = try PreContentMonitor { _ in .deny(errno: ENODATA) }
        defer { monitor.stop() }
        try monitor.markFile(atPath: path)

        let read = onAnotherThread { readRange(path, offset: 0, count: 10) }
        #expect(throws: POSIXError(.EPERM)) { try read.get() }
        #expect(monitor.statistics.refusedResponses == 1)
    }

    @Test func readingOneMebibyteInTheMiddleRequestsOnlyThatRange() throws {
        guard let directory = preContentDirectory() else { return }
        defer { removeTree(directory) }
        let path = directory + "/stub.bin"
        let size = 16 * mebibyte
        try makeStub(at: path, size: size)

        let log = EventLog()
        // Fill exactly the requested range, so the allocation afterwards shows what was asked for.
        let monitor = try PreContentMonitor { event in
            log.append(event)
            guard let range = event.range else { return .deny(errno: EIO) }
            do {
                try event.write(expectedBytes(Int(range.offset)..<Int(range.end)), at: range.offset)
                return .allow
            } catch {
                return .deny(errno: EIO)
            }
        }
        defer { monitor.stop() }
        try monitor.markFile(atPath: path)

        let read = onAnotherThread { readRange(path, offset: 8 * mebibyte, count: mebibyte) }
        #expect(try read.get() == expectedBytes(8 * mebibyte..<9 * mebibyte))
        let ranges = log.all.map(\.range)
        #expect(ranges == [ByteRange(offset: Int64(8 * mebibyte), count: Int64(mebibyte))])
        #expect(allocatedBytes(path) == Int64(mebibyte), "only the range read was recalled")

        let fd = open(path, O_RDONLY | O_CLOEXEC)
        defer { close(fd) }
        #expect(lseek(fd, 0, CLINUX_SEEK_DATA) == off_t(8 * mebibyte))
        #expect(lseek(fd, off_t(8 * mebibyte), CLINUX_SEEK_HOLE) == off_t(9 * mebibyte))
    }

    @Test func writingIntoAStubProducesAnEventForTheWrittenPage() throws {
        guard let directory = preContentDirectory() else { return }
        defer { removeTree(directory) }
        let path = directory + "/stub.bin"
        try makeStub(at: path, size: mebibyte)

        let log = EventLog()
        let monitor = try PreContentMonitor(handler: fillingHandler(record: log.append))
        defer { monitor.stop() }
        try monitor.markFile(atPath: path)

        let written = onAnotherThread { () -> Int in
            let fd = open(path, O_WRONLY | O_CLOEXEC)
            defer { close(fd) }
            return pwrite(fd, "abcd", 4, 100_000)
        }
        #expect(written == 4)
        #expect(log.all.map(\.range) == [ByteRange(offset: 98304, count: 4096)])
        var expected = expectedBytes(0..<mebibyte)
        expected.replaceSubrange(100_000..<100_004, with: Array("abcd".utf8))
        let read = onAnotherThread { readRange(path, offset: 0, count: 131072) }
        #expect(try read.get() == Array(expected[0..<131072]), "the write lands on recalled content")
    }

    @Test func unmarkedFilesProduceNoEvents() throws {
        guard let directory = preContentDirectory() else { return }
        defer { removeTree(directory) }
        let marked = directory + "/marked.bin"
        let unmarked = directory + "/unmarked.bin"
        try makeStub(at: marked, size: 65536)
        try makeStub(at: unmarked, size: 65536)

        let log = EventLog()
        let monitor = try PreContentMonitor(handler: fillingHandler(record: log.append))
        defer { monitor.stop() }
        try monitor.markFile(atPath: marked)

        let plain = try runChild("/bin/cat", [unmarked])
        #expect(plain.status == 0)
        #expect(plain.output == Data(count: 65536), "an unmarked stub reads as holes")
        #expect(log.all.isEmpty)

        // The control: the monitor is alive and sees the marked file.
        let control = try runChild("/bin/cat", [marked])
        #expect(control.output == Data(expectedBytes(0..<65536)))
        #expect(!log.all.isEmpty)
        #expect(log.all.allSatisfy { $0.path == marked })
    }

    @Test func eventsNameThePathInodeSizeAndReadingProcess() throws {
        guard let directory = preContentDirectory() else { return }
        defer { removeTree(directory) }
        let path = directory + "/named.bin"
        try makeStub(at: path, size: 70000)
        var info = stat()
        stat(path, &info)

        let log = EventLog()
        let monitor = try PreContentMonitor(handler: fillingHandler(record: log.append))
        defer { monitor.stop() }
        try monitor.markFile(atPath: path)

        let child = try runChild("/bin/cat", [path])
        let event = try #require(log.all.first)
        #expect(event.path == path)
        #expect(event.inode == UInt64(info.st_ino))
        #expect(event.device == UInt64(info.st_dev))
        #expect(event.size == 70000)
        #expect(event.pid == child.pid)
        #expect(event.mask == CLINUX_FAN_PRE_ACCESS)
    }

    @Test func aSlowRecallDoesNotHoldUpReadsOfOtherFiles() throws {
        guard let directory = preContentDirectory() else { return }
        defer { removeTree(directory) }
        let slow = directory + "/slow.bin"
        let fast = directory + "/fast.bin"
        try makeStub(at: slow, size: 65536)
        try makeStub(at: fast, size: 65536)

        let fastDone = DispatchSemaphore(value: 0)
        let slowStarted = DispatchSemaphore(value: 0)
        let fill = fillingHandler()
        let monitor = try PreContentMonitor(workers: 4) { event in
            if event.path == slow {
                slowStarted.signal()
                // The slow recall finishes only after the other file's read went through.
                guard fastDone.wait(timeout: .now() + 20) == .success else { return .deny(errno: EIO) }
            }
            return fill(event)
        }
        defer { monitor.stop() }
        try monitor.markFile(atPath: slow)
        try monitor.markFile(atPath: fast)

        let slowRead = DispatchSemaphore(value: 0)
        let slowResult = ResultSlot()
        Thread {
            slowResult.set(readRange(slow, offset: 0, count: 65536))
            slowRead.signal()
        }.start()
        #expect(slowStarted.wait(timeout: .now() + 10) == .success)
        let fastResult = onAnotherThread { readRange(fast, offset: 0, count: 65536) }
        #expect(try fastResult.get() == expectedBytes(0..<65536))
        fastDone.signal()
        #expect(slowRead.wait(timeout: .now() + 20) == .success)
        #expect(try slowResult.get().get() == expectedBytes(0..<65536), "the slow read completes after the fast one")
    }

    @Test func unmarkingAFileEndsItsEvents() throws {
        guard let directory = preContentDirectory() else { return }
        defer { removeTree(directory) }
        let path = directory + "/stub.bin"
        try makeStub(at: path, size: 65536)

        let log = EventLog()
        let monitor = try PreContentMonitor(handler: fillingHandler(record: log.append))
        defer { monitor.stop() }
        try monitor.markFile(atPath: path)
        _ = try runChild("/bin/cat", [path])
        let seen = log.all.count
        #expect(seen > 0)

        try monitor.unmarkFile(atPath: path)
        try monitor.unmarkFile(atPath: path)  // idempotent
        let after = try runChild("/bin/cat", [path])
        #expect(after.output == Data(expectedBytes(0..<65536)), "recalled content stays")
        #expect(log.all.count == seen)
    }

    @Test func markingByDescriptorWorksLikeMarkingByPath() throws {
        guard let directory = preContentDirectory() else { return }
        defer { removeTree(directory) }
        let path = directory + "/stub.bin"
        try makeStub(at: path, size: 65536)

        let monitor = try PreContentMonitor(handler: fillingHandler())
        defer { monitor.stop() }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        try monitor.markFile(descriptor: fd, path: path)
        close(fd)
        let child = try runChild("/bin/cat", [path])
        #expect(child.output == Data(expectedBytes(0..<65536)))
    }

    @Test func afterStopReadsOfStubsSeeHolesInsteadOfBlocking() throws {
        guard let directory = preContentDirectory() else { return }
        defer { removeTree(directory) }
        let path = directory + "/stub.bin"
        try makeStub(at: path, size: 65536)

        let monitor = try PreContentMonitor(handler: fillingHandler())
        try monitor.markFile(atPath: path)
        monitor.stop()
        monitor.stop()  // a second stop is harmless
        #expect(throws: FanotifyError.self) { try monitor.markFile(atPath: path) }

        // The failure mode the daemon must avoid: without a live group the kernel serves the holes.
        let child = try runChild("/bin/cat", [path], timeout: 10)
        #expect(child.status == 0)
        #expect(child.output == Data(count: 65536))
    }

    @Test func aFilesystemMarkCoversEveryFileExceptThoseWithAnIgnoreMark() throws {
        guard let directory = preContentDirectory() else { return }
        defer { removeTree(directory) }
        guard let volume = LoopVolume.make(in: directory) else { return }
        defer { volume.remove() }
        let covered = volume.mountpoint + "/covered.bin"
        let exempt = volume.mountpoint + "/exempt.bin"
        try makeStub(at: covered, size: 65536)
        try makeStub(at: exempt, size: 65536)

        let log = EventLog()
        let monitor = try PreContentMonitor(handler: fillingHandler(record: log.append))
        defer { monitor.stop() }
        try monitor.markFilesystem(containing: volume.mountpoint)
        try monitor.ignoreFile(atPath: exempt)

        #expect(try runChild("/bin/cat", [covered]).output == Data(expectedBytes(0..<65536)))
        #expect(try runChild("/bin/cat", [exempt]).output == Data(count: 65536), "the ignored stub is not recalled")
        #expect(!log.all.isEmpty)
        #expect(log.all.allSatisfy { $0.path == covered })

        try monitor.unignoreFile(atPath: exempt)
        #expect(try runChild("/bin/cat", [exempt]).output == Data(expectedBytes(0..<65536)), "covered again")

        try monitor.unmarkFilesystem(containing: volume.mountpoint)
        let seen = log.all.count
        try makeStub(at: covered, size: 65536)
        #expect(try runChild("/bin/cat", [covered]).output == Data(count: 65536))
        #expect(log.all.count == seen, "no events once the filesystem mark is gone")
    }

    @Test func markingAFileOnTmpfsIsRefusedWithTheRequirementsNamed() throws {
        guard CLinux_filesystem_type("/dev/shm") == 0x0102_1994 /* TMPFS_MAGIC */ else {
            Issue.record("/dev/shm is not a tmpfs here, so the unsupported-filesystem message cannot be checked")
            return
        }
        let path = "/dev/shm/tiergate-fanotify-\(getpid())-\(UUID().uuidString.prefix(8))"
        close(open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0o644))
        defer { unlink(path) }
        #expect(!PreContentMonitor.isSupported(at: path))
        do {
            try PreContentMonitor.checkSupport(at: path)
            Issue.record("tmpfs unexpectedly accepted a pre-content mark")
        } catch let error as FanotifyError {
            #expect(error.code == .unsupported)
            #expect(error.errno == EOPNOTSUPP)
            #expect(error.description.hasPrefix("fanotify pre-content events need Linux ≥ 6.14, CAP_SYS_ADMIN"))
            #expect(error.description.contains(path))
        }
    }

    @Test func markingAMissingFileNamesThePath() throws {
        guard let directory = preContentDirectory() else { return }
        defer { removeTree(directory) }
        let monitor = try PreContentMonitor { _ in .allow }
        defer { monitor.stop() }
        do {
            try monitor.markFile(atPath: directory + "/missing")
            Issue.record("marking a missing file succeeded")
        } catch let error as FanotifyError {
            #expect(error.code == .mark)
            #expect(error.errno == ENOENT)
            #expect(error.description.contains(directory + "/missing"))
        }
    }
}

/// A result written by one thread and read by another after a semaphore.
final class ResultSlot: @unchecked Sendable {
    // @unchecked: set before a semaphore signal, read after the matching wait.
    private var value: Result<[UInt8], POSIXError>?
    func set(_ result: Result<[UInt8], POSIXError>) { value = result }
    func get() throws -> Result<[UInt8], POSIXError> { try #require(value) }
}
