import Glibc

/// The semantics of a mounted file system, free of FUSE: the glue (``MountSession``) decodes kernel
/// requests into these calls and encodes the results, so tests drive a core without any mount.
///
/// Contracts shared by every method:
/// - Methods run on the FUSE worker threads, several at once; a core is thread-safe.
/// - Inode numbers are the core's own (1 is the root); an inode stays valid from the reply that
///   returns it (lookup, create, mkdir, mknod, symlink, link, readdirplus) until ``forget(_:count:)``
///   has taken back as many references as were handed out.
/// - Names are single path components as raw bytes (no `/`, no NUL, never `.` or `..`).
/// - Failures are ``Errno`` values; the glue passes them to the kernel unchanged.
/// - POSIX ACLs are on: the kernel enforces them from the `system.posix_acl_access` and
///   `system.posix_acl_default` attributes it reads and writes through the xattr methods (a file
///   without an ACL answers `ENODATA`, never an error, or permission checks fail). Modes given to
///   ``mknod(parent:name:mode:device:caller:)``, ``mkdir(parent:name:mode:caller:)`` and
///   ``create(parent:name:mode:flags:caller:)`` are not masked yet: the core applies
///   ``Caller/umask``, except in a directory with a default ACL, whose entries take its place.
public protocol FileSystemCore: Sendable {
    /// Whether the kernel should cache writes (FUSE writeback cache). A core that says yes must
    /// accept reads on handles opened write-only and ignore `O_APPEND`, as the kernel then owns both.
    var wantsWritebackCache: Bool { get }

    /// Resolves `name` in the directory `parent`; counts one reference on the returned inode.
    func lookup(parent: UInt64, name: [UInt8]) throws(Errno) -> Entry
    /// Takes back `count` references on `inode`; at zero the core may drop it.
    func forget(_ inode: UInt64, count: UInt64)
    /// The attributes of `inode`; `handle` is an open file handle when the kernel has one.
    func getattr(_ inode: UInt64, handle: UInt64?) throws(Errno) -> stat
    /// Applies `changes` (chmod, chown, truncate, utimens) and returns the new attributes.
    func setattr(_ inode: UInt64, changes: AttributeChanges, handle: UInt64?, caller: Caller) throws(Errno) -> stat
    /// The target of the symbolic link `inode`.
    func readlink(_ inode: UInt64) throws(Errno) -> [UInt8]
    /// Creates a regular file, FIFO or socket (devices are refused: the mount is `nodev`).
    func mknod(parent: UInt64, name: [UInt8], mode: mode_t, device: dev_t, caller: Caller) throws(Errno) -> Entry
    /// Creates a directory.
    func mkdir(parent: UInt64, name: [UInt8], mode: mode_t, caller: Caller) throws(Errno) -> Entry
    /// Removes a non-directory; open handles keep the data until released.
    func unlink(parent: UInt64, name: [UInt8]) throws(Errno)
    /// Removes an empty directory.
    func rmdir(parent: UInt64, name: [UInt8]) throws(Errno)
    /// Creates a symbolic link `name` pointing at `target`.
    func symlink(target: [UInt8], parent: UInt64, name: [UInt8], caller: Caller) throws(Errno) -> Entry
    /// Renames, replacing an existing target unless `flags` say otherwise.
    func rename(parent: UInt64, name: [UInt8], newParent: UInt64, newName: [UInt8], flags: RenameFlags) throws(Errno)
    /// Creates the hard link `newParent/newName` to `inode`.
    func link(_ inode: UInt64, newParent: UInt64, newName: [UInt8]) throws(Errno) -> Entry
    /// Opens a regular file with the `open(2)` flags the kernel passes on (`O_TRUNC` included).
    func open(_ inode: UInt64, flags: Int32, caller: Caller) throws(Errno) -> OpenedFile
    /// Creates and opens `name`; the kernel only asks after a lookup found nothing.
    func create(parent: UInt64, name: [UInt8], mode: mode_t, flags: Int32, caller: Caller) throws(Errno) -> (Entry, OpenedFile)
    /// Reads into `buffer` from `offset`; returns the byte count, short only at end of file.
    func read(_ inode: UInt64, handle: UInt64, offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws(Errno) -> Int
    /// Optional fast path for reads: after any hooks, calls `send` with a descriptor and the position
    /// of the bytes that answer a read of `length` bytes at `offset`, so the glue can splice them to
    /// the kernel without copying them through user space; the descriptor stays open while `send`
    /// runs. Returns false when the core has no such descriptor (the glue then calls
    /// ``read(_:handle:offset:into:)``).
    func read(_ inode: UInt64, handle: UInt64, offset: Int64, length: Int,
              send: (_ descriptor: Int32, _ position: Int64) throws(Errno) -> Void) throws(Errno) -> Bool
    /// Writes all of `buffer` at `offset` and returns its size.
    func write(_ inode: UInt64, handle: UInt64, offset: Int64, from buffer: UnsafeRawBufferPointer) throws(Errno) -> Int
    /// Optional fast path for writes: after any hooks, calls `transfer` with the descriptor that
    /// `length` bytes at `offset` go to (the glue moves them there, by splice when it can), and returns
    /// what `transfer` wrote. Nil: the glue copies the data and calls ``write(_:handle:offset:from:)``.
    func write(_ inode: UInt64, handle: UInt64, offset: Int64, length: Int, transfer: (Int32) throws(Errno) -> Int) throws(Errno) -> Int?
    /// Called on each `close(2)` of a descriptor sharing `handle`.
    func flush(_ inode: UInt64, handle: UInt64) throws(Errno)
    /// The glue gave the kernel `handle`'s ``OpenedFile/passthroughDescriptor``: until the release, the
    /// kernel reads and writes the backing file directly, and no read or write of it reaches the core.
    func openedInPassthrough(_ inode: UInt64, handle: UInt64)
    /// Closes `handle`; called once, after the last descriptor sharing it is closed.
    func release(_ inode: UInt64, handle: UInt64)
    /// Makes the file's data (and metadata unless `dataOnly`) durable.
    func fsync(_ inode: UInt64, handle: UInt64, dataOnly: Bool) throws(Errno)
    /// `fallocate(2)` on an open file.
    func fallocate(_ inode: UInt64, handle: UInt64, mode: Int32, offset: Int64, length: Int64) throws(Errno)
    /// Opens a directory for listing; returns its handle.
    func opendir(_ inode: UInt64) throws(Errno) -> UInt64
    /// Lists entries from `offset` (0, or a ``DirectoryEntry/nextOffset`` handed out before), passing
    /// each to `accept` until it returns false. With `plus`, each entry but `.`/`..` carries an ``Entry``
    /// that counts a reference only if `accept` took it.
    func readdir(_ inode: UInt64, handle: UInt64, offset: Int64, plus: Bool, _ accept: (DirectoryEntry) -> Bool) throws(Errno)
    /// Closes a directory handle.
    func releasedir(_ inode: UInt64, handle: UInt64)
    /// Makes a directory's entries durable.
    func fsyncdir(_ inode: UInt64, handle: UInt64, dataOnly: Bool) throws(Errno)
    /// File system figures for `statfs(2)`.
    func statfs(_ inode: UInt64) throws(Errno) -> statvfs
    /// The value of the extended attribute `name`.
    func getxattr(_ inode: UInt64, name: [UInt8]) throws(Errno) -> [UInt8]
    /// The names of the visible extended attributes, each followed by a NUL byte.
    func listxattr(_ inode: UInt64) throws(Errno) -> [UInt8]
    /// Sets an extended attribute; `flags` are `XATTR_CREATE`/`XATTR_REPLACE`.
    func setxattr(_ inode: UInt64, name: [UInt8], value: UnsafeRawBufferPointer, flags: Int32) throws(Errno)
    /// Removes an extended attribute.
    func removexattr(_ inode: UInt64, name: [UInt8]) throws(Errno)
    /// `access(2)`; the kernel only asks when the mount does not use `default_permissions`.
    func access(_ inode: UInt64, mask: Int32, caller: Caller) throws(Errno)

    /// Something other than the mount changed the backing file with `identity` (the Gateway tiered,
    /// recalled or replaced it). Returns the inode number the kernel knows the file by, so that its
    /// cached pages and attributes can be dropped; nil when the kernel does not know the file.
    func backingFileChanged(_ identity: FileIdentity) -> UInt64?
}

/// A resolved name: the core's inode number, its generation and attributes.
public struct Entry: Sendable {
    /// The core's inode number (FUSE node id).
    public var inode: UInt64
    /// Distinguishes reuses of one inode number; (inode, generation) is unique for the mount's life.
    public var generation: UInt64
    /// The attributes to report; `st_ino` is the backing file's.
    public var attributes: stat

    /// An entry for `inode` with `attributes`.
    public init(inode: UInt64, generation: UInt64, attributes: stat) {
        self.inode = inode
        self.generation = generation
        self.attributes = attributes
    }
}

/// An open file handle and how the kernel may cache the file's pages.
public struct OpenedFile: Sendable, Equatable {
    /// The handle the kernel passes back on read, write, release, ….
    public var handle: UInt64
    /// Keep pages cached by earlier opens (the core vouches that nothing changed them behind the mount,
    /// or relies on the kernel noticing a changed mtime or size).
    public var keepCache: Bool
    /// Bypass the page cache for this handle.
    public var directIO: Bool
    /// The kernel need not send a flush on each `close(2)`.
    public var noFlush: Bool
    /// A descriptor of the backing file that the kernel may read, write and map directly (FUSE
    /// passthrough), so that this handle's data never reaches the core; it must stay open until the
    /// handle is released. Nil: reads and writes go through the core. The glue decides whether the
    /// kernel gets it (the session negotiated passthrough, the file has no handle through the core).
    public var passthroughDescriptor: Int32?

    /// An opened file with the given cache choices.
    public init(handle: UInt64, keepCache: Bool = false, directIO: Bool = false, noFlush: Bool = false,
                passthroughDescriptor: Int32? = nil) {
        self.handle = handle
        self.keepCache = keepCache
        self.directIO = directIO
        self.noFlush = noFlush
        self.passthroughDescriptor = passthroughDescriptor
    }
}

/// Who made a request: the calling process's ids and umask.
public struct Caller: Sendable, Equatable {
    /// The caller's effective user id.
    public var uid: uid_t
    /// The caller's effective group id.
    public var gid: gid_t
    /// The calling process (0 for requests the kernel makes on its own, such as writeback).
    public var pid: pid_t
    /// The caller's umask. The kernel passes creation modes unmasked: the core applies the umask,
    /// unless the new file's directory has a default ACL (see ``FileSystemCore``).
    public var umask: mode_t

    /// A caller with these ids.
    public init(uid: uid_t, gid: gid_t, pid: pid_t = 0, umask: mode_t = 0) {
        self.uid = uid
        self.gid = gid
        self.pid = pid
        self.umask = umask
    }

    /// The current process: what tests driving a core directly pass.
    public static var current: Caller { Caller(uid: geteuid(), gid: getegid(), pid: getpid()) }
}

/// The attribute changes of one `setattr` request; nil fields stay as they are.
public struct AttributeChanges: Sendable, Equatable {
    /// New permission bits (`chmod`).
    public var mode: mode_t?
    /// New owner (`chown`).
    public var uid: uid_t?
    /// New group (`chown`).
    public var gid: gid_t?
    /// New size (`truncate`).
    public var size: Int64?
    /// New access time.
    public var accessTime: TimeChange?
    /// New modification time.
    public var modificationTime: TimeChange?

    /// Changes with the given fields.
    public init(mode: mode_t? = nil, uid: uid_t? = nil, gid: gid_t? = nil, size: Int64? = nil,
                accessTime: TimeChange? = nil, modificationTime: TimeChange? = nil) {
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.size = size
        self.accessTime = accessTime
        self.modificationTime = modificationTime
    }
}

/// One timestamp of a `utimensat(2)` request.
public enum TimeChange: Sendable, Equatable {
    /// The current time (`UTIME_NOW`).
    case now
    /// This time: seconds and nanoseconds since the epoch.
    case at(seconds: Int, nanoseconds: Int)
}

/// `renameat2(2)` flags.
public struct RenameFlags: OptionSet, Sendable, Hashable {
    /// The raw flag bits.
    public var rawValue: UInt32
    /// Flags from raw bits.
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// Fail with `EEXIST` instead of replacing an existing target.
    public static let noReplace = RenameFlags(rawValue: 1)
    /// Atomically swap source and target, which must both exist.
    public static let exchange = RenameFlags(rawValue: 2)
}

/// One directory entry of a listing.
public struct DirectoryEntry: Sendable {
    /// The entry's name.
    public var name: [UInt8]
    /// The offset to pass to continue the listing after this entry.
    public var nextOffset: Int64
    /// The backing file's inode number (`d_ino`).
    public var fileNumber: UInt64
    /// The file type bits (`S_IFREG`, `S_IFDIR`, …), 0 when unknown.
    public var type: mode_t
    /// For readdirplus: the looked-up entry (nil for `.` and `..`).
    public var entry: Entry?

    /// A listing entry.
    public init(name: [UInt8], nextOffset: Int64, fileNumber: UInt64, type: mode_t, entry: Entry? = nil) {
        self.name = name
        self.nextOffset = nextOffset
        self.fileNumber = fileNumber
        self.type = type
        self.entry = entry
    }
}

extension FileSystemCore {
    /// Cores cache through the page cache only, by default.
    public var wantsWritebackCache: Bool { false }

    /// By default reads go through ``read(_:handle:offset:into:)``.
    public func read(_ inode: UInt64, handle: UInt64, offset: Int64, length: Int,
                     send: (_ descriptor: Int32, _ position: Int64) throws(Errno) -> Void) throws(Errno) -> Bool {
        false
    }

    /// By default writes go through ``write(_:handle:offset:from:)``.
    public func write(_ inode: UInt64, handle: UInt64, offset: Int64, length: Int, transfer: (Int32) throws(Errno) -> Int) throws(Errno) -> Int? {
        nil
    }

    /// By default a core offers no passthrough descriptor, so this is never called.
    public func openedInPassthrough(_ inode: UInt64, handle: UInt64) {}

    /// By default a core keeps no per-file state that a change behind the mount could make stale.
    public func backingFileChanged(_ identity: FileIdentity) -> UInt64? { nil }
}
