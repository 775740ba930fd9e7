import CFuse3
import Dispatch
import Glibc
import Synchronization

/// A mounted file system: a libfuse low-level session serving a ``FileSystemCore`` at a mountpoint
/// on its own threads.
///
/// ```swift
/// let core = try PassthroughCore(endpoint: "/srv/share", hooks: gatewayHooks)
/// let session = try MountSession.mount(core, at: "/mnt/share")
/// session.stopOnSignals()           // SIGINT/SIGTERM unmount; or, from a service: session.stop()
/// session.wait()
/// ```
///
/// Lifecycle: ``mount(_:at:options:)`` recovers a stale mount left at the mountpoint by a daemon that
/// died, mounts (as root the device itself, so that FUSE passthrough can be negotiated; otherwise
/// through libfuse and `fusermount3`), and starts the multithreaded loop (clone_fd: one device
/// descriptor per worker).
/// ``stop()`` detaches the mount, lets processes still using it finish for the grace period, then
/// aborts the connection; ``wait()`` returns when the loop has ended for any reason (stop, an
/// administrator's `umount`, an aborted connection).
public final class MountSession: Sendable {
    /// Where the file system is mounted.
    public let mountpoint: String
    /// The options it was mounted with.
    public let options: MountOptions
    /// The core serving it.
    public let core: any FileSystemCore

    private let bridge: KernelBridge
    private let state: Mutex<State>
    private let finished = DispatchGroup()

    /// The C session; unchecked because libfuse's session is used from its own threads by design and
    /// this type only destroys it after the loop has ended.
    private struct SessionPointer: @unchecked Sendable {
        let pointer: OpaquePointer
    }

    private struct State {
        var signalTokens: [UInt64] = []
        var session: SessionPointer?
        var connection: UInt32?
        var loopResult: Int32?
        /// The session's device was mounted here, not by libfuse, which then cannot unmount it.
        var mountedDevice = false
        var stopping = false
        var destroyed = false
    }

    private init(core: any FileSystemCore, mountpoint: String, options: MountOptions) {
        self.core = core
        self.mountpoint = mountpoint
        self.options = options
        bridge = KernelBridge(core: core, options: options)
        state = Mutex(State())
    }

    /// Mounts `core` at `mountpoint` and starts serving. A stale mount left there by a crashed daemon
    /// is detached first; a mountpoint where anything else is mounted, or that is not empty, is refused.
    public static func mount(_ core: any FileSystemCore, at mountpoint: String, options: MountOptions = MountOptions()) throws(MountError) -> MountSession {
        try MountPoint.recoverIfStale(mountpoint)
        try MountPoint.checkVacant(mountpoint)
        let session = MountSession(core: core, mountpoint: mountpoint, options: options)
        try session.start()
        return session
    }

    private func start() throws(MountError) {
        var arguments = ["tiergate", "-o", options.mountOptionList]
        if options.debug { arguments.append("-d") }
        var argv = arguments.map { strdup($0) }
        defer { argv.forEach { free($0) } }
        var operations = KernelBridge.operations()
        let userdata = Unmanaged.passUnretained(bridge).toOpaque()
        let created = argv.withUnsafeMutableBufferPointer { argv -> OpaquePointer? in
            var fuseArguments = fuse_args(argc: Int32(argv.count), argv: argv.baseAddress, allocated: 0)
            return fuse_session_new(&fuseArguments, &operations, MemoryLayout<fuse_lowlevel_ops>.size, userdata)
        }
        guard let created else {
            throw MountError("libfuse rejected the session options \(options.mountOptionList)")
        }
        if geteuid() == 0 {
            do {
                try mountDevice(created)
            } catch {
                fuse_session_destroy(created)
                throw error
            }
        } else if fuse_session_mount(created, mountpoint) != 0 {
            fuse_session_destroy(created)
            throw MountError("cannot mount at \(mountpoint) (is /dev/fuse available, and are you root or is fusermount3 installed?)",
                             errno: .current)
        }
        let session = SessionPointer(pointer: created)
        state.withLock { $0.session = session; $0.mountedDevice = geteuid() == 0 }
        finished.enter()
        let maxThreads = UInt32(clamping: max(options.maxThreads, 1))
        let started = startDetachedThread { [self] in
            let result = CFuse3_session_loop_mt(session.pointer, maxThreads, 1)
            state.withLock { $0.loopResult = result }
            finished.leave()
        }
        guard started == 0 else {
            finished.leave()
            unmount(session, mountedDevice: geteuid() == 0)
            fuse_session_destroy(created)
            state.withLock { $0.session = nil; $0.destroyed = true }
            throw MountError("cannot start the FUSE loop thread", errno: Errno(started))
        }
        let connection = MountPoint.connection(of: mountpoint)
        state.withLock { $0.connection = connection }
        // The first request on the mount waits until the kernel has the INIT answer, which also sets the
        // readahead (it can lower it, never raise it), so the readahead is raised after that. A thread
        // does it, so that a loop that failed to serve cannot hang the caller.
        let ready = DispatchSemaphore(value: 0)
        let mountpoint = mountpoint
        let readAhead = options.readAheadKiB
        startDetachedThread {
            var status = stat()
            _ = stat(mountpoint, &status)
            if let connection, let readAhead {
                MountPoint.setReadAhead(kibibytes: readAhead, connection: connection)
            }
            ready.signal()
        }
        _ = ready.wait(timeout: .now() + .seconds(10))
    }

    /// Mounts the FUSE device as root, as libfuse's own mount does, but keeps the device's I/O: the
    /// session reads and writes it through callbacks (`fuse_session_custom_io`), which is where the
    /// INIT exchange negotiates passthrough that libfuse 3.14 does not know (see ``KernelPassthrough``).
    private func mountDevice(_ session: OpaquePointer) throws(MountError) {
        var status = stat()
        guard stat(mountpoint, &status) == 0 else { throw MountError("mountpoint \(mountpoint) is not usable", errno: .current) }
        let device = Glibc.open("/dev/fuse", O_RDWR | O_CLOEXEC)
        guard device >= 0 else { throw MountError("cannot open /dev/fuse", errno: .current) }
        let kernelMount = options.kernelMount(device: device, rootMode: status.st_mode, uid: geteuid(), gid: getegid())
        let mounted = kernelMount.data.withCString { data in
            Glibc.mount(kernelMount.source, mountpoint, kernelMount.type, kernelMount.flags, data)
        }
        guard mounted == 0 else {
            let error = Errno.current
            close(device)
            throw MountError("cannot mount at \(mountpoint)", errno: error)
        }
        var io = fuse_custom_io()
        io.read = { descriptor, buffer, length, userdata in
            let count = Glibc.read(descriptor, buffer, length)
            if count > 0, let buffer, let userdata {
                Unmanaged<KernelBridge>.fromOpaque(userdata).takeUnretainedValue().passthrough.received(buffer, count: count)
            }
            return count
        }
        io.writev = { descriptor, vector, count, userdata in
            if let vector, let userdata {
                Unmanaged<KernelBridge>.fromOpaque(userdata).takeUnretainedValue().passthrough.sending(vector, count: count)
            }
            return Glibc.writev(descriptor, vector, count)
        }
        // Without splice callbacks libfuse would stop splicing read replies (and requests, if asked).
        CFuse3_set_splice_io(&io)
        let result = fuse_session_custom_io(session, &io, device)
        guard result == 0 else {
            _ = umount2(mountpoint, Int32(MNT_DETACH))
            close(device)
            throw MountError("cannot serve the mount at \(mountpoint)", errno: Errno(-result))
        }
        bridge.passthrough.attach(device: device)
    }

    /// Ends the mount when the loop did not (libfuse's unmount, for what libfuse mounted): a device
    /// that reports an error has already lost its connection (unmounted or aborted); otherwise the
    /// mount is detached.
    private func unmount(_ session: SessionPointer, mountedDevice: Bool) {
        guard mountedDevice else {
            fuse_session_unmount(session.pointer)
            return
        }
        var device = pollfd(fd: fuse_session_fd(session.pointer), events: 0, revents: 0)
        if poll(&device, 1, 0) == 1 && device.revents & Int16(POLLERR) != 0 { return }
        _ = umount2(mountpoint, Int32(MNT_DETACH))
    }

    /// Whether the kernel reads and writes full files on the endpoint directly (FUSE passthrough was
    /// negotiated, and no backing file registration has failed). Known once ``mount(_:at:options:)``
    /// has returned, which waits for the kernel's first request (INIT).
    public var isPassingThrough: Bool { bridge.passthrough.isActive }

    /// Requests the kernel has sent this mount so far.
    public var requestCount: Int { bridge.requests.load(ordering: .relaxed) }

    /// Whether the loop is still serving.
    public var isRunning: Bool {
        finished.wait(timeout: .now()) == .timedOut
    }

    /// Blocks until the loop has ended, then releases the session. Returns 0 when the mount ended
    /// normally (unmounted or aborted), else libfuse's negative errno.
    @discardableResult
    public func wait() -> Int32 {
        finished.wait()
        return destroy()
    }

    /// Unmounts and waits for the loop to end. When processes still use the mount (open files, a
    /// working directory), they get ``MountOptions/stopGracePeriod`` to let go, during which the
    /// mount keeps serving; then the connection is aborted (their calls fail with `ENOTCONN`) and the
    /// mount detached. Safe to call more than once and from any thread.
    public func stop() {
        let firstStop = state.withLock { state -> Bool in
            defer { state.stopping = true }
            return !state.stopping && !state.destroyed
        }
        if firstStop && isRunning {
            let grace = options.stopGracePeriod.components
            let deadline = DispatchTime.now() + .nanoseconds(Int(grace.seconds) * 1_000_000_000 + Int(grace.attoseconds / 1_000_000_000))
            while isRunning {
                do {
                    try MountPoint.unmount(mountpoint)
                    break
                } catch {
                    // Busy (or gone: then the loop is ending by itself); try again until the deadline.
                }
                if DispatchTime.now() >= deadline {
                    MountPoint.forceUnmount(mountpoint, connection: state.withLock { $0.connection })
                    break
                }
                _ = finished.wait(timeout: .now() + .milliseconds(50))
            }
        }
        wait()
    }

    /// Stops the session (as ``stop()`` does) when one of `signals` arrives. Their default action
    /// (terminating the process) is replaced until the session has ended, then restored.
    public func stopOnSignals(_ signals: [Int32] = [SIGINT, SIGTERM]) {
        let token = SignalWatcher.shared.watch(signals) { [self] in stop() }
        state.withLock { $0.signalTokens.append(token) }
    }

    /// Tells the kernel and the core that the Gateway changed a backing file behind the mount (tiered
    /// it, recalled it, replaced it by a download): cached pages and attributes are dropped, and open
    /// handles look at the stub mark again. Do not call it from inside a hook (the kernel may hold the
    /// file's lock for the request the hook serves).
    public func backingFileChanged(_ identity: FileIdentity) {
        guard let number = core.backingFileChanged(identity) else { return }
        state.withLock { state in
            guard let session = state.session, !state.destroyed else { return }
            _ = fuse_lowlevel_notify_inval_inode(session.pointer, fuse_ino_t(number), 0, 0)
        }
    }

    private func destroy() -> Int32 {
        let tokens = state.withLock { state in
            defer { state.signalTokens = [] }
            return state.signalTokens
        }
        tokens.forEach(SignalWatcher.shared.unwatch)
        return state.withLock { state in
            if !state.destroyed, let session = state.session {
                // Normally the connection is already gone (detached and idle, or aborted), and libfuse
                // then only closes the device; if the loop ended any other way this unmounts.
                unmount(session, mountedDevice: state.mountedDevice)
                fuse_session_destroy(session.pointer)
                state.session = nil
                state.destroyed = true
            }
            // ENODEV is how the kernel tells the loop that the mount has ended.
            let result = state.loopResult ?? 0
            return result == -ENODEV ? 0 : result
        }
    }
}
