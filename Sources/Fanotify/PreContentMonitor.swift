import CLinux
import Glibc
import Synchronization

/// Owns one fanotify group of class `FAN_CLASS_PRE_CONTENT` (Linux ≥ 6.14) and answers its events.
///
/// A reader thread reads the group and hands each event to a pool of worker threads; a worker resolves
/// the file (path, inode, size), calls the handler, writes the handler's answer and closes the event's
/// descriptor. Handlers may take as long as a recall takes: with `workers` threads, that many events are
/// handled at once, so one slow recall does not hold up reads of other files.
///
/// Marks decide which accesses become events. A file opened before it was marked never produces events
/// (the kernel decides at open time), so a file must be marked before it becomes a stub. When the
/// monitor stops, or its process dies, the group and all its marks go away and the kernel lets every
/// access proceed: unanswered and later reads of stubs then see the holes (zeros).
///
/// The threads keep the monitor alive until ``stop()``; call it to end monitoring.
public final class PreContentMonitor: Sendable {
    /// Decides one event. Runs on a worker thread, never on the cooperative pool; may block.
    public typealias Handler = @Sendable (PreContentEvent) -> PreContentResponse

    /// Counts since the monitor started, for metrics and tests.
    public struct Statistics: Hashable, Sendable {
        /// Events handed to the handler.
        public var events: Int
        /// Events answered with allow.
        public var allowed: Int
        /// Events answered with deny.
        public var denied: Int
        /// Responses the kernel refused (each then retried as a plain deny).
        public var refusedResponses: Int
        /// Failed reads of the group.
        public var readErrors: Int
        /// Events read from the group and waiting for a handler now.
        public var queued: Int
    }

    private enum Lifecycle { case running, stopping, stopped }

    private let group: Int32
    /// Whether the group belongs to another process (a supervisor): its marks then outlive this monitor.
    private let inheritedGroup: Bool
    private let wakeRead: Int32
    private let wakeWrite: Int32
    private let handler: Handler
    private let onError: (@Sendable (FanotifyError) -> Void)?
    private let maxQueuedEvents: Int
    private let queue = BlockingQueue<RawEvent>()
    private let lifecycle = Mutex(Lifecycle.running)
    private let threads = Mutex<[JoinableThread]>([])
    private let eventCount = Atomic<Int>(0)
    private let allowedCount = Atomic<Int>(0)
    private let deniedCount = Atomic<Int>(0)
    private let refusedCount = Atomic<Int>(0)
    private let readErrorCount = Atomic<Int>(0)

    /// Creates the group and starts the reader and `workers` worker threads.
    ///
    /// - Parameters:
    ///   - workers: events handled at once (each may be a slow recall).
    ///   - maxQueuedEvents: events read but not yet handled before the reader stops reading; each holds
    ///     an open descriptor, so this bounds the descriptors in use.
    ///   - onError: called (from the monitor's threads) for failures that belong to no caller, such as
    ///     a failed read of the group or a refused response.
    ///   - reportThreadIDs: events name the accessing thread (`FAN_REPORT_TID`) instead of its process,
    ///     so a handler can tell an access made by one of its own process's threads.
    ///   - handler: decides each event.
    /// - Throws: ``FanotifyError`` with code ``FanotifyError/Code/unsupported`` when the kernel or the
    ///   privileges do not allow a pre-content group.
    ///   - group: a group made by ``makeGroupDescriptor(reportThreadIDs:)`` in another process that keeps it
    ///     open (a supervisor): the monitor takes this descriptor over, and first answers (EIO) every
    ///     event a previous process read from the group and died without answering.
    public init(
        group inherited: Int32? = nil, workers: Int = 16, maxQueuedEvents: Int = 1024, reportThreadIDs: Bool = false,
        onError: (@Sendable (FanotifyError) -> Void)? = nil, handler: @escaping Handler
    ) throws {
        precondition(workers > 0 && maxQueuedEvents > 0, "workers and maxQueuedEvents must be positive")
        inheritedGroup = inherited != nil
        if let inherited {
            group = inherited
            Self.answerOrphanedEvents(group: inherited)
        } else {
            group = try Self.makeGroup(reportThreadIDs: reportThreadIDs)
        }
        var pipeEnds: [Int32] = [0, 0]
        guard CLinux_pipe_cloexec_nonblock(&pipeEnds) == 0 else {
            let error = errno
            close(group)
            throw FanotifyError(.read, function: "pipe2", errno: error)
        }
        wakeRead = pipeEnds[0]
        wakeWrite = pipeEnds[1]
        self.handler = handler
        self.onError = onError
        self.maxQueuedEvents = maxQueuedEvents

        var started = [JoinableThread(name: "fanotify-read") { [self] in readEvents() }]
        for index in 0..<workers {
            started.append(JoinableThread(name: "fanotify-\(index)") { [self] in
                while let event = queue.pop() { answer(event) }
            })
        }
        threads.withLock { $0 = started }
    }

    /// Creates the group with a handler written as async code (a recall through the object store). Each
    /// event's worker thread waits, outside the cooperative pool, until the handler's task has answered;
    /// the event's descriptor stays open until then.
    public convenience init(
        workers: Int = 16, maxQueuedEvents: Int = 1024, onError: (@Sendable (FanotifyError) -> Void)? = nil,
        asyncHandler: @escaping @Sendable (PreContentEvent) async -> PreContentResponse
    ) throws {
        try self.init(workers: workers, maxQueuedEvents: maxQueuedEvents, onError: onError) { event in
            let answer = BlockingQueue<PreContentResponse>()
            Task { answer.push([await asyncHandler(event)]) }
            return answer.pop()!
        }
    }

    /// Whether pre-content events can be delivered for files on the filesystem holding `path`.
    public static func isSupported(at path: String) -> Bool {
        (try? checkSupport(at: path)) != nil
    }

    /// Checks that this process can watch the filesystem holding `path` (a file or a directory) for
    /// pre-content events, by creating a group and marking `path` for a moment.
    ///
    /// - Throws: ``FanotifyError`` whose message names the requirement (Linux ≥ 6.14, CAP_SYS_ADMIN,
    ///   ext4/xfs/btrfs) and the errno that the kernel gave.
    public static func checkSupport(at path: String) throws {
        let group = try makeGroup()
        defer { close(group) }
        if CLinux_fanotify_mark(group, CLINUX_FAN_MARK_ADD, CLINUX_FAN_PRE_ACCESS, AT_FDCWD, path) != 0 {
            throw markError(function: "fanotify_mark", path: path, errno: errno)
        }
    }

    /// Counts since the monitor started.
    public var statistics: Statistics {
        Statistics(
            events: eventCount.load(ordering: .relaxed), allowed: allowedCount.load(ordering: .relaxed),
            denied: deniedCount.load(ordering: .relaxed), refusedResponses: refusedCount.load(ordering: .relaxed),
            readErrors: readErrorCount.load(ordering: .relaxed), queued: queue.count)
    }

    // MARK: Marks

    /// Makes accesses to the file at `path` (not followed if it is a symlink) produce events. Processes
    /// that already have the file open are not affected.
    public func markFile(atPath path: String) throws {
        try mark(CLINUX_FAN_MARK_ADD | CLINUX_FAN_MARK_DONT_FOLLOW, CLINUX_FAN_PRE_ACCESS, at: path)
    }

    /// Makes accesses to the open file `descriptor` refers to produce events; `path` names it in errors.
    public func markFile(descriptor: Int32, path: String = "") throws {
        try mark(CLINUX_FAN_MARK_ADD, CLINUX_FAN_PRE_ACCESS, descriptor: descriptor, name: path)
    }

    /// Stops events for the file at `path`; a file that was not marked is not an error.
    public func unmarkFile(atPath path: String) throws {
        try mark(CLINUX_FAN_MARK_REMOVE | CLINUX_FAN_MARK_DONT_FOLLOW, CLINUX_FAN_PRE_ACCESS, at: path)
    }

    /// Stops events for the open file `descriptor` refers to; a file that was not marked is not an error.
    public func unmarkFile(descriptor: Int32, path: String = "") throws {
        try mark(CLINUX_FAN_MARK_REMOVE, CLINUX_FAN_PRE_ACCESS, descriptor: descriptor, name: path)
    }

    /// Makes accesses to every regular file of the filesystem holding `path` produce events, except
    /// files with an ignore mark (``ignoreFile(atPath:)``). Every read of every other file on that
    /// filesystem then waits for this process.
    public func markFilesystem(containing path: String) throws {
        try mark(CLINUX_FAN_MARK_ADD | CLINUX_FAN_MARK_FILESYSTEM, CLINUX_FAN_PRE_ACCESS, at: path)
    }

    /// Removes the filesystem mark of the filesystem holding `path`.
    public func unmarkFilesystem(containing path: String) throws {
        try mark(CLINUX_FAN_MARK_REMOVE | CLINUX_FAN_MARK_FILESYSTEM, CLINUX_FAN_PRE_ACCESS, at: path)
    }

    /// Exempts the file at `path` from a filesystem mark. The ignore mark survives writes and is
    /// evictable: the kernel may drop it with the inode from its cache, after which the file's next
    /// access produces an event again.
    public func ignoreFile(atPath path: String) throws {
        try mark(Self.ignoreFlags | CLINUX_FAN_MARK_ADD | CLINUX_FAN_MARK_DONT_FOLLOW, CLINUX_FAN_PRE_ACCESS, at: path)
    }

    /// Exempts the open file `descriptor` refers to from a filesystem mark (see ``ignoreFile(atPath:)``).
    public func ignoreFile(descriptor: Int32, path: String = "") throws {
        try mark(Self.ignoreFlags | CLINUX_FAN_MARK_ADD, CLINUX_FAN_PRE_ACCESS, descriptor: descriptor, name: path)
    }

    /// Removes the ignore mark of the file at `path`, so that a filesystem mark covers it again.
    public func unignoreFile(atPath path: String) throws {
        try mark(
            CLINUX_FAN_MARK_IGNORE | CLINUX_FAN_MARK_IGNORED_SURV_MODIFY | CLINUX_FAN_MARK_REMOVE | CLINUX_FAN_MARK_DONT_FOLLOW,
            CLINUX_FAN_PRE_ACCESS, at: path)
    }

    /// Removes every mark of this group: file, filesystem and ignore marks.
    public func removeAllMarks() throws {
        try lifecycle.withLock { state in
            guard state == .running else { throw FanotifyError(.stopped, function: "fanotify_mark", errno: EBADF) }
            try Self.flushMarks(group)
        }
    }

    private static let ignoreFlags = CLINUX_FAN_MARK_IGNORE | CLINUX_FAN_MARK_IGNORED_SURV_MODIFY | CLINUX_FAN_MARK_EVICTABLE

    private func mark(_ flags: UInt32, _ mask: UInt64, at path: String) throws {
        try lifecycle.withLock { state in
            guard state == .running else { throw FanotifyError(.stopped, function: "fanotify_mark", path: path, errno: EBADF) }
            try Self.call(group, flags, mask, AT_FDCWD, path, name: path)
        }
    }

    private func mark(_ flags: UInt32, _ mask: UInt64, descriptor: Int32, name: String) throws {
        try lifecycle.withLock { state in
            guard state == .running else { throw FanotifyError(.stopped, function: "fanotify_mark", path: name, errno: EBADF) }
            try Self.call(group, flags, mask, descriptor, nil, name: name)
        }
    }

    private static func call(_ group: Int32, _ flags: UInt32, _ mask: UInt64, _ dirfd: Int32, _ path: String?, name: String) throws {
        if CLinux_fanotify_mark(group, flags, mask, dirfd, path) == 0 { return }
        let error = errno
        // Removing a mark that is not there leaves the wanted state: no mark.
        if error == ENOENT && flags & CLINUX_FAN_MARK_REMOVE != 0 && path == nil { return }
        if error == ENOENT && flags & CLINUX_FAN_MARK_REMOVE != 0, let path, (try? exists(path)) == true { return }
        throw markError(function: "fanotify_mark", path: name, errno: error)
    }

    private static func exists(_ path: String) throws -> Bool {
        var info = stat()
        return lstat(path, &info) == 0
    }

    private static func flushMarks(_ group: Int32) throws {
        for kind: UInt32 in [0, CLINUX_FAN_MARK_FILESYSTEM, 0x10 /* FAN_MARK_MOUNT */] {
            if CLinux_fanotify_mark(group, CLINUX_FAN_MARK_FLUSH | kind, 0, AT_FDCWD, "/") != 0 {
                throw FanotifyError(.mark, function: "fanotify_mark(FAN_MARK_FLUSH)", errno: errno)
            }
        }
    }

    private static func markError(function: String, path: String, errno error: Int32) -> FanotifyError {
        // EINVAL: a kernel before 6.14 does not know FAN_PRE_ACCESS; EOPNOTSUPP: the filesystem does not
        // allow pre-content watches (tmpfs, overlayfs, network filesystems).
        let unsupported = error == EINVAL || error == EOPNOTSUPP || error == EPERM
        return FanotifyError(unsupported ? .unsupported : .mark, function: function, path: path, errno: error)
    }

    /// A new pre-content group for a monitor in another process (see `init(group:…)`): the caller keeps
    /// it open across that process's life, so marks and blocked readers outlive it.
    public static func makeGroupDescriptor(reportThreadIDs: Bool) throws -> Int32 {
        try makeGroup(reportThreadIDs: reportThreadIDs)
    }

    /// Highest event descriptor number answered for a process that died (its events hold the
    /// descriptor numbers of that process; the kernel matches answers by that number).
    static let orphanedDescriptorLimit: Int32 = 8192

    /// Denies (EIO) every event of `group` that was read but never answered: readers blocked on them
    /// get an error and read again, answered by this process. Runs before this process reads any event,
    /// so none of its own can be matched by mistake.
    static func answerOrphanedEvents(group: Int32) {
        let deny = CLINUX_FAN_DENY | ((UInt32(EIO) & CLINUX_FAN_ERRNO_MASK) << CLINUX_FAN_ERRNO_SHIFT)
        for fd in 0..<orphanedDescriptorLimit {
            var message = CLinux_fanotify_response(fd: fd, response: deny)
            _ = write(group, &message, MemoryLayout<CLinux_fanotify_response>.size)
        }
    }

    private static func makeGroup(reportThreadIDs: Bool = false) throws -> Int32 {
        let flags = CLINUX_FAN_CLASS_PRE_CONTENT | CLINUX_FAN_CLOEXEC | CLINUX_FAN_NONBLOCK
            | CLINUX_FAN_UNLIMITED_QUEUE | CLINUX_FAN_UNLIMITED_MARKS | (reportThreadIDs ? CLINUX_FAN_REPORT_TID : 0)
        // Read-write event descriptors: the handler fills the file through them. (64-bit kernels add
        // O_LARGEFILE themselves.)
        let group = CLinux_fanotify_init(flags, UInt32(O_RDWR))
        guard group >= 0 else { throw FanotifyError(.unsupported, function: "fanotify_init", errno: errno) }
        return group
    }

    // MARK: Stopping

    /// Removes all marks, answers the events already generated, joins the threads and closes the group.
    /// Handlers still running are waited for. A second call while the first is under way returns at once.
    public func stop() {
        let mine = lifecycle.withLock { state in
            guard state == .running else { return false }
            state = .stopping
            return true
        }
        guard mine else { return }
        // Without marks no new events arise; the reader then drains what the kernel already queued.
        // An inherited group keeps its marks: the next process that takes it over (a new worker after
        // a reload) answers what arrives meanwhile, and readers of stubs wait for it instead of reading
        // holes. The group's owner flushes the marks by closing it.
        if !inheritedGroup {
            do { try Self.flushMarks(group) } catch { report(error as! FanotifyError) }
        }
        var byte: UInt8 = 1
        _ = write(wakeWrite, &byte, 1)
        let all = threads.withLock { $0 }
        all.first?.join()
        queue.close()
        for worker in all.dropFirst() { worker.join() }
        lifecycle.withLock { state in
            close(group)
            close(wakeRead)
            close(wakeWrite)
            state = .stopped
        }
    }

    // MARK: Threads

    private func readEvents() {
        let capacity = 64 * 1024
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: capacity, alignment: 8)
        defer { buffer.deallocate() }
        var stopping = false
        while true {
            queue.waitUntilBelow(maxQueuedEvents)
            if !stopping {
                var fds = [pollfd(fd: group, events: Int16(POLLIN), revents: 0), pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)]
                if poll(&fds, 2, -1) < 0 {
                    if errno == EINTR { continue }
                    fail(FanotifyError(.read, function: "poll", errno: errno))
                    continue
                }
                stopping = fds[1].revents != 0
            }
            let count = read(group, buffer.baseAddress, capacity)
            if count < 0 {
                let error = errno
                if error == EINTR { continue }
                if error == EAGAIN || error == EWOULDBLOCK {
                    if stopping { return }
                    continue
                }
                // The kernel could not open the file for an event (EMFILE, ETXTBSY for a running
                // executable, …); it has denied that access itself. Back off briefly and go on.
                fail(FanotifyError(.read, function: "read", errno: error))
                usleep(1000)
                continue
            }
            if count == 0 { continue }
            queue.push(EventRecords.parse(UnsafeRawBufferPointer(rebasing: buffer[..<count])))
        }
    }

    private func fail(_ error: FanotifyError) {
        readErrorCount.add(1, ordering: .relaxed)
        report(error)
    }

    private func report(_ error: FanotifyError) {
        onError?(error)
    }

    private func answer(_ raw: RawEvent) {
        // FAN_NOFD: a queue overflow notice, which carries no file and needs no answer.
        guard raw.fd >= 0 else { return }
        defer { close(raw.fd) }
        var response = PreContentResponse.deny(errno: EIO)
        if raw.understood {
            var info = stat()
            let known = fstat(raw.fd, &info) == 0
            let event = PreContentEvent(
                fileDescriptor: raw.fd, pid: raw.pid, mask: raw.mask, range: raw.range, path: Self.path(of: raw.fd),
                inode: known ? UInt64(info.st_ino) : 0, device: known ? UInt64(info.st_dev) : 0,
                size: known ? Int64(info.st_size) : 0)
            eventCount.add(1, ordering: .relaxed)
            response = handler(event)
        }
        respond(to: raw.fd, with: response)
    }

    private func respond(to fd: Int32, with response: PreContentResponse) {
        var value: UInt32
        switch response {
        case .allow:
            value = CLINUX_FAN_ALLOW
            allowedCount.add(1, ordering: .relaxed)
        case .deny(let error):
            value = CLINUX_FAN_DENY | ((UInt32(bitPattern: error) & CLINUX_FAN_ERRNO_MASK) << CLINUX_FAN_ERRNO_SHIFT)
            deniedCount.add(1, ordering: .relaxed)
        }
        while true {
            var message = CLinux_fanotify_response(fd: fd, response: value)
            if write(group, &message, MemoryLayout<CLinux_fanotify_response>.size) >= 0 { return }
            let error = errno
            if error == EINTR { continue }
            refusedCount.add(1, ordering: .relaxed)
            report(FanotifyError(.response, function: "write(fanotify_response)", path: Self.path(of: fd), errno: error))
            // An errno the kernel does not allow for this access: deny plainly rather than leave the
            // process blocked forever.
            if error == EINVAL && value != CLINUX_FAN_DENY && value != CLINUX_FAN_ALLOW {
                value = CLINUX_FAN_DENY
                continue
            }
            return
        }
    }

    private static func path(of fd: Int32) -> String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = readlink("/proc/self/fd/\(fd)", &buffer, buffer.count - 1)
        guard count > 0 else { return "" }
        return String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

