import Backends
import CLinux
import Glibc

/// The primitives that turn an open file into a stub and read its markers: punching the content out
/// (same inode, same size, mtime kept), the `user.tiergate.*` extended attributes, the write lease that
/// proves nobody else has the file open, and the allocation check that a stub holds no data.
///
/// A `StubFile` does not own its descriptor; ``withOpened(_:writable:_:)`` opens and closes one.
/// Tiering puts the steps in an order that never leaves a broken stub: lease, fanotify mark, markers,
/// punch, fsync, release (see docs/recall.md).
public struct StubFile: Sendable {
    /// The `user.tiergate.state` marker of a stub.
    public enum State: String, Sendable, CaseIterable {
        /// No content is local.
        case tiered
        /// Some ranges have been recalled.
        case partial
    }

    /// Marks a stub and says how much of it is local.
    public static let stateAttribute = "user.tiergate.state"
    /// The share's file id of the stub's content.
    public static let idAttribute = "user.tiergate.id"
    /// The version of the content that was tiered, which a recall must bring back.
    public static let versionAttribute = "user.tiergate.version"
    /// The share holding that content (its id, a newline, its URL without secrets): how a stub whose
    /// endpoint was removed is still recalled.
    public static let shareAttribute = "user.tiergate.share"

    /// The open file.
    public let descriptor: Int32
    /// Its path, for errors.
    public let path: String

    /// A stub view of `descriptor`, which stays owned by the caller.
    public init(descriptor: Int32, path: String) {
        self.descriptor = descriptor
        self.path = path
    }

    /// Opens the regular file at `path` (never through a symlink), runs `body` and closes the file.
    /// Punching needs `writable`.
    public static func withOpened<R>(_ path: String, writable: Bool = true, _ body: (StubFile) throws -> R) throws -> R {
        let fd: Int32
        do {
            fd = try Posix.open(path, (writable ? O_RDWR : O_RDONLY) | O_NOFOLLOW)
        } catch let error as PosixError {
            throw StubFileError(.open, path: path, "cannot open it", underlying: error)
        }
        defer { close(fd) }
        let file = StubFile(descriptor: fd, path: path)
        let info = try file.status()
        guard info.st_mode & S_IFMT == S_IFREG else {
            throw StubFileError(.notRegularFile, path: path, "only regular files become stubs")
        }
        return try body(file)
    }

    // MARK: Content

    /// The file's size in bytes.
    public func size() throws -> Int64 {
        Int64(try status().st_size)
    }

    /// Bytes the file occupies on disk (`st_blocks` × 512), its xattr block included: a stub that holds
    /// no data may still count one block for its markers (ext4), so "holds no data" is `SEEK_DATA`'s to say.
    public func allocatedBytes() throws -> Int64 {
        Int64(try status().st_blocks) * 512
    }

    /// Deallocates all of the file's content, keeping its inode, size, atime and mtime (ctime changes:
    /// the kernel sets it and nothing can set it back). Reads of the file then see holes until a recall
    /// fills them, so the file must be marked for pre-content events first.
    public func punchOut() throws {
        let before = try status()
        let size = Int64(before.st_size)
        if size > 0 {
            // Whole blocks: the partial block at the end of the file is freed only if the range covers it.
            let block = max(Int64(before.st_blksize), 4096)
            let length = (size + block - 1) / block * block
            do {
                try Posix.call("fallocate(PUNCH_HOLE)", path: path) { CLinux_punch_hole(descriptor, 0, length) }
            } catch let error as PosixError {
                let hint = error.errno == EOPNOTSUPP ? "the filesystem cannot punch holes" : "cannot punch out its content"
                throw StubFileError(.punch, path: path, hint, underlying: error)
            }
        }
        // Punching sets mtime; the stub must keep the mtime of the content it stands for.
        var times = [before.st_atim, before.st_mtim]
        do {
            try Posix.call("futimens", path: path) { futimens(descriptor, &times) }
        } catch let error as PosixError {
            throw StubFileError(.punch, path: path, "cannot restore its modification time", underlying: error)
        }
    }

    /// Flushes the file's data and metadata (the punched range, the markers) to stable storage.
    public func sync() throws {
        do {
            try Posix.fsync(descriptor, path: path)
        } catch let error as PosixError {
            throw StubFileError(.sync, path: path, "cannot flush it", underlying: error)
        }
    }

    // MARK: Markers

    /// The `user.tiergate.state` marker, or nil when the file is not a stub.
    public func state() throws -> State? {
        guard let value = try attribute(Self.stateAttribute) else { return nil }
        guard let state = State(rawValue: value) else {
            throw StubFileError(.invalidAttribute, path: path, "\(Self.stateAttribute) is '\(value)', neither 'tiered' nor 'partial'")
        }
        return state
    }

    /// Sets the `user.tiergate.state` marker.
    public func setState(_ state: State) throws {
        try setAttribute(Self.stateAttribute, state.rawValue)
    }

    /// The `user.tiergate.id` marker, or nil.
    public func fileID() throws -> String? {
        try attribute(Self.idAttribute)
    }

    /// The `user.tiergate.version` marker, or nil.
    public func version() throws -> String? {
        try attribute(Self.versionAttribute)
    }

    /// Where a stub's content lives: the share (id and URL) and the version of the file in it.
    public struct Origin: Sendable, Equatable {
        /// The share's id (`share.json`), empty when not known.
        public var shareID: String
        /// The share's URL (never with secrets).
        public var share: String
        /// The share's file id of the content.
        public var fileID: String
        /// The commit that holds the content.
        public var version: UInt64

        public init(shareID: String, share: String, fileID: String, version: UInt64) {
            (self.shareID, self.share, self.fileID, self.version) = (shareID, share, fileID, version)
        }
    }

    /// Makes the file a stub of `origin`: its markers, the state last (it is what says "stub").
    public func setMarkers(_ origin: Origin) throws {
        for (name, value) in Self.markers(origin) { try setAttribute(name, value) }
    }

    /// Marks a new file, seen by nobody until it is complete (unnamed, or in the staging folder), as a
    /// stub of `origin`: the order of ``newFileMarkers(_:)``.
    public func setMarkersOfNewFile(_ origin: Origin) throws {
        for (name, value) in Self.newFileMarkers(origin) { try setAttribute(name, value) }
    }

    /// The markers of a stub of `origin`, the state last.
    static func markers(_ origin: Origin) -> [(name: String, value: String)] {
        [(idAttribute, origin.fileID), (versionAttribute, String(origin.version)),
         (shareAttribute, origin.shareID + "\n" + origin.share), (stateAttribute, State.tiered.rawValue)]
    }

    /// The markers in the order a new file gets them: what is the same for many stubs before what is
    /// not, after the id. ext4 keeps the id in the inode and the rest in an attribute block that equal
    /// stubs share; each marker set is a new version of that block, which is shared, not allocated,
    /// when an equal block exists (see ``MarkerPrefixes``).
    static func newFileMarkers(_ origin: Origin) -> [(name: String, value: String)] {
        [(idAttribute, origin.fileID), (shareAttribute, origin.shareID + "\n" + origin.share),
         (stateAttribute, State.tiered.rawValue), (versionAttribute, String(origin.version))]
    }

    /// Unnamed files holding the first markers of a new stub, so that every intermediate set of a new
    /// stub's markers exists already: where the file system shares equal extended-attribute blocks
    /// between inodes (ext4), setting them allocates and frees no block (a quarter of the time of a
    /// namespace-only download went to that). They vanish when closed; without unnamed files there are
    /// none, and stubs are made as before.
    public final class MarkerPrefixes: @unchecked Sendable {
        private var descriptors: [Int32] = []

        /// Prefixes of stubs like `origin` in `folder` (a folder of the file system the stubs go to).
        public init(in folder: Int32, like origin: Origin) {
            let markers = StubFile.newFileMarkers(origin)
            // The id differs from stub to stub: a stand-in of the same length takes its place.
            let standIn = (markers[0].name, String(repeating: "0", count: markers[0].value.utf8.count))
            for count in 2..<markers.count {
                guard let fd = try? Posix.openUnnamed(in: folder, mode: 0o600, path: "(marker prefix)") else { break }
                descriptors.append(fd)
                let file = StubFile(descriptor: fd, path: "(marker prefix)")
                do {
                    for (name, value) in [standIn] + markers[1..<count] { try file.setAttribute(name, value) }
                } catch {
                    break
                }
            }
        }

        /// Closes the unnamed files.
        public func close() {
            for fd in descriptors { Glibc.close(fd) }
            descriptors = []
        }

        deinit { close() }
    }

    /// The stub's origin as its markers name it; nil when it names no file id or version. Stubs made
    /// before the share was named give an empty share id and URL.
    public func origin() throws -> Origin? {
        guard let fileID = try fileID(), let version = try version().flatMap({ UInt64($0) }) else { return nil }
        let share = try attribute(Self.shareAttribute) ?? ""
        let parts = share.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        return Origin(shareID: parts.first ?? "", share: parts.count > 1 ? parts[1] : "", fileID: fileID, version: version)
    }

    /// The stub holds all its bytes now: puts back its `times` (atime, mtime; recall writes moved them),
    /// flushes it, then drops the markers, so a crash never leaves markers-free holes.
    public func becomeWhole(times: [timespec]) throws {
        var times = times
        try Posix.call("futimens", path: path) { futimens(descriptor, &times) }
        try sync()
        try removeMarkers()
    }

    /// Removes the markers (those present): the file is a plain file again. Only for a file whose
    /// content is entirely local.
    public func removeMarkers() throws {
        for name in [Self.stateAttribute, Self.idAttribute, Self.versionAttribute, Self.shareAttribute] {
            if fremovexattr(descriptor, name) != 0 && errno != ENODATA {
                throw StubFileError(.attribute, path: path, "cannot remove \(name)",
                                    underlying: PosixError("fremovexattr", path: path, errno: errno))
            }
        }
    }

    private func attribute(_ name: String) throws -> String? {
        var buffer = [UInt8](repeating: 0, count: 256)
        while true {
            let count = buffer.withUnsafeMutableBytes { fgetxattr(descriptor, name, $0.baseAddress, $0.count) }
            if count >= 0 { return String(decoding: buffer[..<count], as: UTF8.self) }
            switch errno {
            case ENODATA:
                return nil
            case ERANGE where buffer.count < 65536:
                buffer = [UInt8](repeating: 0, count: buffer.count * 16)
            case EINTR:
                continue
            default:
                throw StubFileError(.attribute, path: path, "cannot read \(name)",
                                    underlying: PosixError("fgetxattr", path: path, errno: errno))
            }
        }
    }

    private func setAttribute(_ name: String, _ value: String) throws {
        let bytes = Array(value.utf8)
        let result = bytes.withUnsafeBytes { fsetxattr(descriptor, name, $0.baseAddress, $0.count, 0) }
        if result != 0 {
            let error = errno
            let hint = error == ENOTSUP ? "the filesystem does not allow user extended attributes" : "cannot set \(name)"
            throw StubFileError(.attribute, path: path, hint, underlying: PosixError("fsetxattr", path: path, errno: error))
        }
    }

    // MARK: Lease

    /// Takes a write lease: granted only when no other descriptor (in any process, this one included)
    /// has the file open for reading or writing. While it is held, an `open` of the file by anyone
    /// blocks (up to `/proc/sys/fs/lease-break-time`) until ``releaseLease()``, so the file cannot be
    /// opened half-way through tiering.
    ///
    /// - Throws: ``StubFileError`` with code ``StubFileError/Code/inUse`` when the file is open elsewhere.
    public func takeWriteLease() throws {
        _ = Self.leaseBreaksDoNotKill
        if CLinux_fcntl_int(descriptor, CLINUX_F_SETLEASE, Int32(F_WRLCK)) == 0 { return }
        let error = errno
        if error == EAGAIN || error == EBUSY {
            throw StubFileError(.inUse, path: path, "it is open elsewhere, so it is not tiered now",
                                underlying: PosixError("fcntl(F_SETLEASE)", path: path, errno: error))
        }
        throw StubFileError(.lease, path: path, "cannot take a write lease",
                            underlying: PosixError("fcntl(F_SETLEASE)", path: path, errno: error))
    }

    /// Whether this descriptor still holds its write lease; false once someone's `open` has started to
    /// break it (they are waiting for ``releaseLease()``).
    public func holdsWriteLease() throws -> Bool {
        let lease = CLinux_fcntl_int(descriptor, CLINUX_F_GETLEASE, 0)
        guard lease >= 0 else {
            throw StubFileError(.lease, path: path, "cannot query its lease",
                                underlying: PosixError("fcntl(F_GETLEASE)", path: path, errno: errno))
        }
        return lease == Int32(F_WRLCK)
    }

    /// Releases the lease; a waiting `open` then proceeds.
    public func releaseLease() throws {
        if CLinux_fcntl_int(descriptor, CLINUX_F_SETLEASE, Int32(F_UNLCK)) != 0 {
            throw StubFileError(.lease, path: path, "cannot release its lease",
                                underlying: PosixError("fcntl(F_SETLEASE)", path: path, errno: errno))
        }
    }

    /// A lease break is announced with SIGIO, whose default action ends the process: the daemon would
    /// die whenever a user opened a file being tiered. Ignoring it (unless the program installed its
    /// own handler) keeps the break's semantics: the opener still waits for the release.
    private static let leaseBreaksDoNotKill: Void = {
        var current = sigaction()
        guard sigaction(SIGIO, nil, &current) == 0 else { return }
        if current.__sigaction_handler.sa_handler == nil {
            var ignore = sigaction()
            ignore.__sigaction_handler.sa_handler = SIG_IGN
            sigemptyset(&ignore.sa_mask)
            sigaction(SIGIO, &ignore, nil)
        }
    }()

    // MARK: Status

    /// The file's `stat`.
    func status() throws -> stat {
        var info = stat()
        do {
            try Posix.call("fstat", path: path) { fstat(descriptor, &info) }
        } catch let error as PosixError {
            throw StubFileError(.status, path: path, "cannot read its status", underlying: error)
        }
        return info
    }
}

/// A failed stub operation: what went wrong, on which file, and the system call's error.
public struct StubFileError: Error, CustomStringConvertible, Sendable {
    /// What kind of failure this is; new codes may be added.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        /// The name of the code.
        public var name: String

        /// The file could not be opened.
        public static let open = Code(name: "open")
        /// The path is not a regular file.
        public static let notRegularFile = Code(name: "notRegularFile")
        /// The file is open elsewhere, so it must not be tiered now.
        public static let inUse = Code(name: "inUse")
        /// Taking, querying or releasing the lease failed for another reason.
        public static let lease = Code(name: "lease")
        /// Punching out the content or restoring the mtime failed.
        public static let punch = Code(name: "punch")
        /// Reading, writing or removing a marker failed.
        public static let attribute = Code(name: "attribute")
        /// A marker holds a value Tiergate never writes.
        public static let invalidAttribute = Code(name: "invalidAttribute")
        /// `fstat` failed.
        public static let status = Code(name: "status")
        /// `fsync` failed.
        public static let sync = Code(name: "sync")

        public var description: String { name }
    }

    /// The kind of failure.
    public var code: Code
    /// The file.
    public var path: String
    /// What failed, in words.
    public var message: String
    /// The system call's error, if one failed.
    public var underlying: PosixError?

    /// An error of `code` on `path`.
    public init(_ code: Code, path: String, _ message: String, underlying: PosixError? = nil) {
        self.code = code
        self.path = path
        self.message = message
        self.underlying = underlying
    }

    public var description: String {
        let cause = underlying.map { " (\($0.function): \($0.reason))" } ?? ""
        return "'\(path)': \(message)\(cause)"
    }
}

extension StubFile {
    /// The stub state of the file at `path` without opening it (nil for a normal file or no file).
    /// Reading an xattr is not a content access, so it never triggers a recall.
    public static func marker(atPath path: String) -> State? {
        var buffer = [UInt8](repeating: 0, count: 16)
        let count = lgetxattr(path, stateAttribute, &buffer, buffer.count)
        guard count > 0 else { return nil }
        return State(rawValue: String(decoding: buffer.prefix(count), as: UTF8.self))
    }
}
