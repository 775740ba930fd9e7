import CLinux
import Glibc

/// One pre-content event: a process is about to access a range of a marked file and is blocked until
/// the handler answers.
///
/// The event's descriptor is open only while the handler runs; the monitor closes it after writing the
/// response, so nothing here may be kept or used after the handler returns.
public struct PreContentEvent: Sendable {
    /// A descriptor for the file, opened read-write by the kernel without notifications: writing the
    /// recalled bytes through it generates no further events. Valid only during the handler.
    public let fileDescriptor: Int32
    /// The process (thread group) whose access is blocked; its thread when the monitor reports thread ids.
    public let pid: Int32
    /// The event mask reported by the kernel (`FAN_PRE_ACCESS`).
    public let mask: UInt64
    /// The bytes about to be accessed, when the kernel reports them: read and write ranges (rounded out
    /// to pages), the whole mapping for `mmap`, the page at the new size for `truncate`. Nil means the
    /// whole file may be needed.
    public let range: ByteRange?
    /// The file's path at the time of the event, as the kernel names it (`/proc/self/fd`); empty if it
    /// could not be read. A deleted file ends in " (deleted)".
    public let path: String
    /// The file's inode number.
    public let inode: UInt64
    /// The device of the filesystem holding the file.
    public let device: UInt64
    /// The file's size in bytes.
    public let size: Int64

    /// An event as a handler sees it; the monitor builds these from the kernel's records.
    public init(fileDescriptor: Int32, pid: Int32, mask: UInt64, range: ByteRange?, path: String, inode: UInt64, device: UInt64, size: Int64) {
        self.fileDescriptor = fileDescriptor
        self.pid = pid
        self.mask = mask
        self.range = range
        self.path = path
        self.inode = inode
        self.device = device
        self.size = size
    }

    /// Whether the blocked access may change the file's content: false only when the blocked thread is
    /// known to be in a call that reads (read, pread, readv, exec, a page fault, an mmap that is not both
    /// writable and shared). A write, truncate or fallocate, a copy or splice, io_uring's worker threads,
    /// and anything that cannot be told (the thread's call unreadable) count as writes.
    /// Meaningful only for monitors that report thread ids: `pid` must be the blocked thread.
    ///
    /// The thread queues the event before it goes to sleep waiting for the answer, and until it sleeps
    /// /proc says only "running". So a "running" is read again, for up to 20 ms (a loaded machine may
    /// not have put the thread to sleep yet), before it counts as a write: read that way at once, a read
    /// of a few bytes recalled the whole file.
    public var mayWrite: Bool {
        if let name = Self.procText("/proc/\(pid)/comm"), name.hasPrefix("iou-") { return true }   // io_uring workers
        let deadline = ContinuousClock.now + .milliseconds(20)
        var call = Self.procText("/proc/\(pid)/syscall")
        while call == "running", ContinuousClock.now < deadline {
            usleep(50)
            call = Self.procText("/proc/\(pid)/syscall")
        }
        guard let call else { return true }
        let fields = call.split(separator: " ")
        guard let number = fields.first.flatMap({ Int($0) }) else { return true }   // still "running": cannot be told
        func argument(_ index: Int) -> UInt {
            guard index < fields.count, fields[index].hasPrefix("0x") else { return 0 }
            return UInt(fields[index].dropFirst(2), radix: 16) ?? 0
        }
        return CLinux_syscall_only_reads(number, argument(2), argument(3), argument(4)) == 0
    }

    /// The first line of a small /proc file, or nil.
    private static func procText(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 512)
        let count = read(fd, &buffer, buffer.count)
        guard count > 0 else { return nil }
        return String(decoding: buffer[0..<count], as: UTF8.self).split(separator: "\n").first.map(String.init)
    }

    /// Writes all of `bytes` at `offset` through the event's descriptor, filling that part of the file.
    ///
    /// Never change the file's size here (no truncate, no write past the end): the blocked process may
    /// hold locks that a size change waits for.
    public func write(_ bytes: UnsafeRawBufferPointer, at offset: Int64) throws {
        var done = 0
        while done < bytes.count {
            let n = pwrite(fileDescriptor, bytes.baseAddress! + done, bytes.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw FanotifyError(.fill, function: "pwrite", path: path, errno: errno)
            }
            done += n
        }
    }

    /// Writes all of `bytes` at `offset` through the event's descriptor.
    public func write(_ bytes: [UInt8], at offset: Int64) throws {
        try bytes.withUnsafeBytes { try write($0, at: offset) }
    }

    /// The parts of `range` (clipped to the file's size) that hold no data: what a recall must still
    /// fill. Every access to a marked file produces an event, also for bytes recalled earlier or written
    /// since; filling only the holes keeps such bytes intact.
    public func holes(in range: ByteRange) throws -> [ByteRange] {
        var holes: [ByteRange] = []
        var position = max(0, range.offset)
        let end = min(range.end, size)
        while position < end {
            let hole = lseek(fileDescriptor, off_t(position), CLINUX_SEEK_HOLE)
            if hole < 0 {
                if errno == ENXIO { break }  // at or past the end of the file
                throw FanotifyError(.fill, function: "lseek(SEEK_HOLE)", path: path, errno: errno)
            }
            if Int64(hole) >= end { break }
            var data = lseek(fileDescriptor, hole, CLINUX_SEEK_DATA)
            if data < 0 {
                guard errno == ENXIO else { throw FanotifyError(.fill, function: "lseek(SEEK_DATA)", path: path, errno: errno) }
                data = off_t(end)  // no data after the hole: it runs to the end of the file
            }
            let stop = min(Int64(data), end)
            holes.append(ByteRange(offset: Int64(hole), count: stop - Int64(hole)))
            position = stop
        }
        return holes
    }
}

/// A handler's answer to a ``PreContentEvent``.
public enum PreContentResponse: Hashable, Sendable {
    /// The access proceeds (after the handler has filled the range it needs).
    case allow
    /// The access fails with `errno`. Linux accepts `EIO`, `EPERM`, `EBUSY`, `ETXTBSY`, `EAGAIN`, `ENOSPC`
    /// and `EDQUOT`; any other value is answered as a plain deny, which the process sees as `EPERM`.
    case deny(errno: Int32)
}
