import CLinux
import Fanotify
import Foundation
import Glibc
import Testing

/// The bytes a test file holds at `offset`: varied and never zero, so a read that returned holes
/// instead of recalled content is always noticed.
func expectedByte(at offset: Int) -> UInt8 {
    UInt8(truncatingIfNeeded: (offset &* 2_654_435_761) >> 11) | 1
}

func expectedBytes(_ range: Range<Int>) -> [UInt8] {
    range.map(expectedByte(at:))
}

/// A scratch directory on the temporary directory's filesystem, or nil (with a recorded issue) when that
/// filesystem or this process cannot deliver pre-content events: such a test must not pass silently.
func preContentDirectory(_ name: String = #function) -> String? {
    let base = NSTemporaryDirectory()
    let label = name.prefix(while: { $0 != "(" })
    let directory = base + (base.hasSuffix("/") ? "" : "/") + "tiergate-fanotify-\(getpid())-\(label)-\(UUID().uuidString.prefix(8))"
    guard mkdir(directory, 0o755) == 0 else {
        Issue.record("cannot create \(directory): \(String(cString: strerror(errno)))")
        return nil
    }
    do {
        try PreContentMonitor.checkSupport(at: directory)
    } catch {
        Issue.record("pre-content events are unavailable in \(directory), so this test cannot run here: \(error)")
        removeTree(directory)
        return nil
    }
    return directory
}

func removeTree(_ path: String) {
    try? FileManager.default.removeItem(atPath: path)
}

/// Writes `size` expected bytes to `path`, then punches them all out: a stub of the right size holding
/// no data.
func makeStub(at path: String, size: Int) throws {
    let fd = open(path, O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw POSIXError(.init(rawValue: errno)!) }
    defer { close(fd) }
    let bytes = expectedBytes(0..<size)
    let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    guard written == size, fsync(fd) == 0 else { throw POSIXError(.EIO) }
    // Whole blocks: a partial last block would stay allocated.
    let blocks = (Int64(size) + 65535) / 65536 * 65536
    guard CLinux_punch_hole(fd, 0, blocks) == 0 else { throw POSIXError(.init(rawValue: errno)!) }
    var info = stat()
    fstat(fd, &info)
    #expect(info.st_size == size, "punching keeps the size")
    #expect(info.st_blocks == 0, "a stub holds no data")
}

/// Bytes the file at `path` has allocated on disk.
func allocatedBytes(_ path: String) -> Int64 {
    var info = stat()
    guard stat(path, &info) == 0 else { return -1 }
    return Int64(info.st_blocks) * 512
}

/// A handler that fills the holes of the requested range, widened to 64 KiB blocks, with the expected
/// bytes, as a recall would.
func fillingHandler(record: (@Sendable (PreContentEvent) -> Void)? = nil) -> PreContentMonitor.Handler {
    { event in
        record?(event)
        let wanted = (event.range ?? ByteRange(offset: 0, count: event.size)).aligned(to: 64 * 1024, limit: event.size)
        do {
            for hole in try event.holes(in: wanted) {
                try event.write(expectedBytes(Int(hole.offset)..<Int(hole.end)), at: hole.offset)
            }
            return .allow
        } catch {
            return .deny(errno: EIO)
        }
    }
}

/// Events seen by a handler, for assertions.
final class EventLog: @unchecked Sendable {
    // @unchecked: `events` is only touched under `lock`.
    private let lock = NSLock()
    private var events: [PreContentEvent] = []

    func append(_ event: PreContentEvent) {
        lock.lock()
        events.append(event)
        lock.unlock()
    }

    var all: [PreContentEvent] {
        lock.lock()
        defer { lock.unlock() }
        return events
    }
}

/// The outcome of a child process.
struct ChildResult {
    var status: Int32
    var pid: Int32
    var output: Data
    var errorOutput: String
}

/// Runs `executable` with `arguments`; kills it after `timeout` seconds so that a missing answer to an
/// event fails the test instead of hanging it (pre-content waits are killable).
func runChild(_ executable: String, _ arguments: [String], timeout: TimeInterval = 30) throws -> ChildResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let output = Pipe()
    let errors = Pipe()
    process.standardOutput = output
    process.standardError = errors
    try process.run()
    let pid = process.processIdentifier
    let watchdog = DispatchWorkItem { kill(pid, SIGKILL) }
    DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: watchdog)
    let data = output.fileHandleForReading.readDataToEndOfFile()
    let errorData = errors.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    watchdog.cancel()
    return ChildResult(status: process.terminationStatus, pid: pid, output: data, errorOutput: String(decoding: errorData, as: UTF8.self))
}

/// Runs `body` on a new thread and waits for its result: an in-process reader that is not the test's
/// own thread.
func onAnotherThread<T: Sendable>(_ body: @escaping @Sendable () -> T) -> T {
    let done = DispatchSemaphore(value: 0)
    let box = ResultBox<T>()
    let thread = Thread {
        box.value = body()
        done.signal()
    }
    thread.start()
    done.wait()
    return box.value!
}

private final class ResultBox<T>: @unchecked Sendable {
    // @unchecked: written by one thread before the semaphore is signalled, read after it is waited for.
    var value: T?
}

/// `pread` of `count` bytes at `offset` from a fresh descriptor: the bytes, or the errno of the failure.
func readRange(_ path: String, offset: Int, count: Int) -> Result<[UInt8], POSIXError> {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return .failure(POSIXError(.init(rawValue: errno)!)) }
    defer { close(fd) }
    var buffer = [UInt8](repeating: 0, count: count)
    var done = 0
    while done < count {
        let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + done, count - done, off_t(offset + done)) }
        if n < 0 { return .failure(POSIXError(.init(rawValue: errno)!)) }
        if n == 0 { break }
        done += n
    }
    return .success(Array(buffer[..<done]))
}

/// A scratch ext4 filesystem on a loop device. Filesystem marks are only ever placed on one of these:
/// on a shared filesystem every other process's reads would wait for the test's handler.
final class LoopVolume {
    let image: String
    let mountpoint: String
    private(set) var device = ""

    /// Makes and mounts a volume of `megabytes` under `directory`, or records an issue and returns nil.
    static func make(in directory: String, megabytes: Int = 64) -> LoopVolume? {
        let volume = LoopVolume(image: directory + "/volume.img", mountpoint: directory + "/mnt")
        do {
            try volume.create(megabytes: megabytes)
            return volume
        } catch {
            Issue.record("a scratch ext4 loop volume is needed for a filesystem mark and could not be made: \(error)")
            volume.remove()
            return nil
        }
    }

    private init(image: String, mountpoint: String) {
        self.image = image
        self.mountpoint = mountpoint
    }

    private func create(megabytes: Int) throws {
        guard geteuid() == 0 else { throw POSIXError(.EPERM) }
        let fd = open(image, O_CREAT | O_WRONLY | O_CLOEXEC, 0o600)
        guard fd >= 0, ftruncate(fd, off_t(megabytes) << 20) == 0 else { throw POSIXError(.init(rawValue: errno)!) }
        close(fd)
        guard mkdir(mountpoint, 0o755) == 0 else { throw POSIXError(.init(rawValue: errno)!) }
        try Self.run("/usr/sbin/mkfs.ext4", ["-q", "-F", image])
        device = try Self.run("/usr/sbin/losetup", ["-f", "--show", image]).trimmingCharacters(in: .whitespacesAndNewlines)
        try Self.run("/usr/bin/mount", ["-t", "ext4", device, mountpoint])
        var inner = stat()
        var outer = stat()
        guard stat(mountpoint, &inner) == 0, stat(mountpoint + "/..", &outer) == 0, inner.st_dev != outer.st_dev else {
            throw POSIXError(.EXDEV)
        }
    }

    func remove() {
        _ = try? Self.run("/usr/bin/umount", [mountpoint])
        if !device.isEmpty { _ = try? Self.run("/usr/sbin/losetup", ["-d", device]) }
        unlink(image)
        rmdir(mountpoint)
    }

    struct CommandFailed: Error, CustomStringConvertible {
        var description: String
    }

    @discardableResult
    private static func run(_ executable: String, _ arguments: [String]) throws -> String {
        let result = try runChild(executable, arguments, timeout: 60)
        guard result.status == 0 else {
            throw CommandFailed(description: "\(executable) \(arguments.joined(separator: " ")): \(result.errorOutput)")
        }
        return String(decoding: result.output, as: UTF8.self)
    }
}
