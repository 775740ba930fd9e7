/// What the Gateway learns from, and does inside, a mounted endpoint.
///
/// Contract:
/// - Hooks run synchronously on FUSE worker threads, so the request they belong to waits for them;
///   a hook that blocks (a recall) holds one worker thread, the rest of the mount keeps serving.
/// - ``beforeRead(_:offset:length:)`` and ``beforeWrite(_:_:)`` are only called for stubs: files whose
///   backing copy carries the `user.tiergate.state` extended attribute when they are opened (and after
///   each hook call, the attribute is read again, so a finished recall stops the calls). Hot files
///   never pay for them. An error thrown there fails the read or write with that errno, and the
///   backing file is left untouched.
/// - ``didOpen(_:flags:)`` and ``didChange(_:)`` report what already happened; they cannot fail it.
/// - Paths are relative to the endpoint root (`dir/file.txt`; the root itself is `""`). A path is the
///   name the mount last saw for the file; nil when it is unknown or not valid UTF-8 (use the identity).
public protocol MountHooks: Sendable {
    /// A stub is about to be read in `offset ..< offset + length` (may reach past its end): make those
    /// bytes present in the backing file before returning.
    func beforeRead(_ file: MountedFile, offset: Int64, length: Int) throws(Errno)
    /// A stub is about to be changed by `intent`: make its content whole (or drop the stub marks when
    /// the intent discards the content) before returning.
    func beforeWrite(_ file: MountedFile, _ intent: WriteIntent) throws(Errno)
    /// A file was opened (for the heat store).
    func didOpen(_ file: MountedFile, flags: Int32)
    /// The namespace or a file changed through the mount (for the change journal).
    func didChange(_ change: MountChange)
    /// Whether the kernel may read and write the full file `file`, opened with `flags`, directly on
    /// the backing file (FUSE passthrough), so that no ``beforeRead(_:offset:length:)`` or
    /// ``beforeWrite(_:_:)`` is called for it until it is closed. Only asked for files without the
    /// stub mark; answer false for anything whose reads or writes the Gateway must see. Writes through
    /// such a handle are still reported: `modified` at the open and at the release.
    func allowsPassthrough(_ file: MountedFile, flags: Int32) -> Bool
}

extension MountHooks {
    /// No recall: reads see what the backing file holds.
    public func beforeRead(_ file: MountedFile, offset: Int64, length: Int) throws(Errno) {}
    /// No recall: writes go to the backing file as it is.
    public func beforeWrite(_ file: MountedFile, _ intent: WriteIntent) throws(Errno) {}
    /// Opens are not recorded.
    public func didOpen(_ file: MountedFile, flags: Int32) {}
    /// Changes are not recorded.
    public func didChange(_ change: MountChange) {}
    /// Full files are passed through.
    public func allowsPassthrough(_ file: MountedFile, flags: Int32) -> Bool { true }
}

/// Hooks that do nothing: a plain passthrough mount.
public struct NoMountHooks: MountHooks {
    /// Hooks that do nothing.
    public init() {}
}

/// The identity of a backing file: its device and inode number, as `stat(2)` reports them.
public struct FileIdentity: Hashable, Sendable, CustomStringConvertible {
    /// `st_dev` of the backing file.
    public var device: UInt64
    /// `st_ino` of the backing file.
    public var inode: UInt64

    /// An identity from `st_dev` and `st_ino`.
    public init(device: UInt64, inode: UInt64) {
        self.device = device
        self.inode = inode
    }

    /// `device:inode`.
    public var description: String { "\(device):\(inode)" }
}

/// A file as hooks see it.
public struct MountedFile: Sendable, Hashable {
    /// The path relative to the endpoint root, nil when unknown or not UTF-8.
    public var path: String?
    /// The backing file's device and inode number: exact even when the path is not.
    public var identity: FileIdentity
    /// A descriptor of the backing file (open, or `O_PATH`), valid while the hook runs: it reaches the
    /// file's inode even after an unlink or a rename, or under a name that is not UTF-8. Nil when the
    /// caller has none (the hook then goes by `path`).
    public var descriptor: Int32?

    /// A file with this path and identity (and a descriptor of its backing file, when there is one).
    public init(path: String?, identity: FileIdentity, descriptor: Int32? = nil) {
        self.path = path
        self.identity = identity
        self.descriptor = descriptor
    }
}

/// How a stub is about to be changed.
public enum WriteIntent: Sendable, Hashable {
    /// `write(2)` of `length` bytes at `offset`.
    case write(offset: Int64, length: Int)
    /// Truncation (or `O_TRUNC`) to `size` bytes: content past `size` is discarded, so a truncation to 0
    /// needs no recall at all.
    case truncate(size: Int64)
    /// `fallocate(2)` with `mode` over `offset ..< offset + length`.
    case allocate(mode: Int32, offset: Int64, length: Int64)
}

/// One change made through the mount.
public struct MountChange: Sendable, Hashable {
    /// What happened.
    public enum Kind: Sendable, Hashable {
        /// A file (regular, FIFO, socket or symbolic link) was created.
        case created
        /// A file's content changed: reported on the first write after an open or fsync, and on truncation.
        case modified
        /// A handle that wrote was closed: a good moment to pick the file up.
        case closedAfterWrite
        /// Mode, owner, times or a `user.*` extended attribute changed.
        case attributesChanged
        /// A non-directory name was removed.
        case removed
        /// A name was moved from ``MountChange/previousPath`` to ``MountChange/path``.
        case renamed
        /// Two names swapped their files (`RENAME_EXCHANGE`).
        case exchanged
        /// A directory was created.
        case directoryCreated
        /// A directory was removed.
        case directoryRemoved
        /// A hard link was added at ``MountChange/path``.
        case linked
    }

    /// What happened.
    public var kind: Kind
    /// The path affected (the new one for a rename), relative to the endpoint root.
    public var path: String?
    /// The old path of a rename or exchange.
    public var previousPath: String?
    /// The backing file, when it still exists.
    public var identity: FileIdentity?

    /// A change record.
    public init(kind: Kind, path: String?, previousPath: String? = nil, identity: FileIdentity? = nil) {
        self.kind = kind
        self.path = path
        self.previousPath = previousPath
        self.identity = identity
    }
}
