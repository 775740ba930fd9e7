import Glibc
import Synchronization

/// Handles given to the kernel for open files or directories: numbers from a counter, never reused,
/// so a stale or forged handle finds nothing instead of someone else's file.
final class HandleTable<Object: AnyObject & Sendable>: Sendable {
    private struct State {
        var objects: [UInt64: Object] = [:]
        var next: UInt64 = 1
    }

    private let state = Mutex(State())

    /// Adds `object` and returns its handle.
    func insert(_ object: Object) -> UInt64 {
        state.withLock { state in
            let handle = state.next
            state.next += 1
            state.objects[handle] = object
            return handle
        }
    }

    /// The object for `handle`, or `EBADF`.
    func object(_ handle: UInt64) throws(Errno) -> Object {
        guard let object = state.withLock({ $0.objects[handle] }) else { throw .badFileDescriptor }
        return object
    }

    /// Removes and returns the object for `handle`.
    func remove(_ handle: UInt64) -> Object? {
        state.withLock { $0.objects.removeValue(forKey: handle) }
    }

    /// Calls `body` for each open object (outside the table's lock).
    func forEach(_ body: (Object) -> Void) {
        state.withLock { Array($0.objects.values) }.forEach(body)
    }

    /// The first open object that satisfies `predicate`.
    func first(where predicate: (Object) -> Bool) -> Object? {
        state.withLock { Array($0.objects.values) }.first(where: predicate)
    }

    /// How many handles are open.
    var count: Int { state.withLock { $0.objects.count } }
}

/// A file opened through the mount: a real descriptor on the backing file.
///
/// The descriptor closes when the last reference goes, not at release: a request still running on
/// another thread can never see its descriptor number reused for another file.
final class OpenFile: Sendable {
    let descriptor: Int32
    let inode: Inode
    /// The flags the application opened with.
    let flags: Int32
    /// Whether the backing file carried the stub mark when last looked at.
    let isStub: Atomic<Bool>
    /// A `modified` change was reported since the open or the last fsync.
    let reportedModified = Atomic<Bool>(false)
    /// Something was written through this handle.
    let wrote = Atomic<Bool>(false)
    /// The descriptor may be offered to the kernel for passthrough.
    let passthroughOffered: Bool
    /// The kernel took it: reads and writes bypass the core until the release.
    let passedThrough = Atomic<Bool>(false)

    init(descriptor: Int32, inode: Inode, flags: Int32, isStub: Bool, passthroughOffered: Bool = false) {
        self.descriptor = descriptor
        self.inode = inode
        self.flags = flags
        self.isStub = Atomic(isStub)
        self.passthroughOffered = passthroughOffered
    }

    deinit { close(descriptor) }

    /// Whether the descriptor itself allows writing (truncation needs it).
    var isWritable: Bool { flags & O_ACCMODE != O_RDONLY }
}

/// An open directory listing; readdir calls on one handle are serialized by its lock.
final class DirectoryStream: Sendable {
    /// Unchecked: the `DIR *` is only ever used under the lock that holds this value.
    struct Position: @unchecked Sendable {
        let stream: OpaquePointer
        /// The offset the stream is at, as handed out in `nextOffset`; nil when it must seek first.
        var offset: Int64?
    }

    let inode: Inode
    let position: Mutex<Position>

    init(stream: OpaquePointer, inode: Inode) {
        self.inode = inode
        position = Mutex(Position(stream: stream, offset: 0))
    }

    deinit {
        position.withLock { _ = closedir($0.stream) }
    }
}
