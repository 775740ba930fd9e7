import CFuse3
import Glibc
import Synchronization

/// FUSE passthrough for one session: which open files the kernel reads, writes and maps directly on
/// the backing file, and the backing ids registered for them on the device.
///
/// The kernel's rules shape the bookkeeping (fs/fuse/iomode.c):
/// - an inode is either in cached mode (its handles go through the daemon) or in passthrough mode,
///   never both: an open in the other mode fails. So a file with a handle through the daemon (a stub
///   being read) is opened through the daemon again, even once it is full, until that handle is closed;
/// - all passthrough handles of one inode share one backing file, so one backing id per inode is kept
///   while any of them is open, and closed with the last (the kernel keeps its own reference for open
///   files).
///
/// The kernel drops a handle's mode when the file is closed, before the daemon sees the release, so
/// the counts here are always a superset of the kernel's and never let the two modes meet.
final class KernelPassthrough: Sendable {
    /// How an open is answered.
    enum Mode: Equatable {
        /// Reads and writes go through the daemon.
        case cached
        /// The kernel uses the backing file registered as `backingID`.
        case passthrough(backingID: Int32)
    }

    private struct InodeModes {
        var cachedHandles = 0
        var passthroughHandles = 0
        var backingID: Int32?
    }

    private struct State {
        var inodes: [UInt64: InodeModes] = [:]
        /// Handles in passthrough, by handle: their inode.
        var passthroughHandles: [UInt64: UInt64] = [:]
        /// Handles through the daemon, by handle: their inode.
        var cachedHandles: [UInt64: UInt64] = [:]
    }

    /// The session's device descriptor (backing ids belong to the connection); -1 until the session
    /// uses its own device I/O, which is what lets INIT negotiate passthrough.
    private let device = Atomic<Int32>(-1)
    /// The kernel agreed to passthrough at INIT, and no registration has failed since.
    private let active = Atomic<Bool>(false)
    /// The request id of the INIT being answered (0: none pending).
    private let pendingInit = Atomic<UInt64>(0)
    private let wanted: Bool
    private let state = Mutex(State())

    /// Passthrough for a session; `wanted` is ``MountOptions/passthrough``.
    init(wanted: Bool) {
        self.wanted = wanted
    }

    /// Whether open files of regular, full files are passed through to the kernel.
    var isActive: Bool { active.load(ordering: .acquiring) }

    /// The device is the session's own: passthrough may be negotiated on it.
    func attach(device descriptor: Int32) {
        if wanted { device.store(descriptor, ordering: .releasing) }
    }

    // MARK: INIT

    /// Called with every request read from the device: notes the INIT and whether the kernel offers
    /// passthrough.
    @inline(__always)
    func received(_ buffer: UnsafeRawPointer, count: Int) {
        guard device.load(ordering: .relaxed) >= 0, !active.load(ordering: .relaxed) else { return }
        var unique: UInt64 = 0
        if CFuse3_inspect_init(buffer, count, &unique) == 1 {
            pendingInit.store(unique, ordering: .releasing)
        }
    }

    /// Called with every reply before it is written: turns passthrough on in the INIT reply.
    @inline(__always)
    func sending(_ vector: UnsafeMutablePointer<iovec>, count: Int32) {
        let unique = pendingInit.load(ordering: .acquiring)
        guard unique != 0 else { return }
        if CFuse3_enable_passthrough_in_init_reply(vector, count, unique) == 1 {
            pendingInit.store(0, ordering: .relaxed)
            active.store(true, ordering: .releasing)
        }
    }

    // MARK: Opens

    /// Decides how a new handle of `inode` is opened. `descriptor` is the backing descriptor the core
    /// offers for passthrough (nil: through the daemon). Throws `ETXTBSY` when the file must go
    /// through the daemon but the kernel has it open in passthrough (it would fail the open anyway).
    func open(inode: UInt64, handle: UInt64, descriptor: Int32?) throws(Errno) -> Mode {
        try state.withLock { state throws(Errno) -> Mode in
            var modes = state.inodes[inode] ?? InodeModes()
            if let descriptor, modes.cachedHandles == 0, isActive {
                if let backingID = modes.backingID ?? register(descriptor) {
                    modes.backingID = backingID
                    modes.passthroughHandles += 1
                    state.inodes[inode] = modes
                    state.passthroughHandles[handle] = inode
                    return .passthrough(backingID: backingID)
                }
            }
            guard modes.passthroughHandles == 0 else { throw Errno(ETXTBSY) }
            modes.cachedHandles += 1
            state.inodes[inode] = modes
            state.cachedHandles[handle] = inode
            return .cached
        }
    }

    /// Forgets `handle` (released, or its open reply never reached the kernel); the inode's backing
    /// id is closed with its last passthrough handle.
    func release(handle: UInt64) {
        state.withLock { state in
            if let inode = state.cachedHandles.removeValue(forKey: handle) {
                update(&state, inode) { $0.cachedHandles -= 1 }
            } else if let inode = state.passthroughHandles.removeValue(forKey: handle) {
                update(&state, inode) { modes in
                    modes.passthroughHandles -= 1
                    if modes.passthroughHandles == 0, let backingID = modes.backingID {
                        _ = CFuse3_backing_close(device.load(ordering: .relaxed), backingID)
                        modes.backingID = nil
                    }
                }
            }
        }
    }

    private func update(_ state: inout State, _ inode: UInt64, _ body: (inout InodeModes) -> Void) {
        guard var modes = state.inodes[inode] else { return }
        body(&modes)
        state.inodes[inode] = modes.cachedHandles == 0 && modes.passthroughHandles == 0 ? nil : modes
    }

    /// Registers a backing file; a kernel that refuses (no passthrough support, not privileged, a
    /// backing file system stacked too deep) turns passthrough off for the rest of the session.
    private func register(_ descriptor: Int32) -> Int32? {
        let backingID = CFuse3_backing_open(device.load(ordering: .relaxed), descriptor)
        guard backingID > 0 else {
            active.store(false, ordering: .releasing)
            return nil
        }
        return backingID
    }
}
