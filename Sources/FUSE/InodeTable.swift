import Glibc
import Synchronization

/// A backing file the kernel knows by a FUSE inode number.
///
/// Most inodes are pinned by an `O_PATH` descriptor: it survives renames made behind the mount, keeps
/// an unlinked file reachable, and while it is open the backing file system cannot reuse the inode
/// number, so (device, inode) keys stay unambiguous. Descriptors are a bounded resource, though (the
/// kernel may hold far more inodes than `RLIMIT_NOFILE` allows), so past a budget an inode is kept
/// unpinned: its descriptor is reopened per request from its parent and its name, and checked
/// against its identity (a mismatch is ESTALE, after which the kernel looks the name up again).
final class Inode: Sendable {
    /// The FUSE inode number (node id).
    let number: UInt64
    /// `O_PATH | O_NOFOLLOW` descriptor of the backing file, when pinned.
    let pinned: Int32?
    /// The backing file's (st_dev, st_ino).
    let identity: FileIdentity
    /// The file type bits (`S_IFMT` part of `st_mode`); a file's type never changes.
    let type: mode_t

    init(number: UInt64, pinned: Int32?, identity: FileIdentity, type: mode_t) {
        self.number = number
        self.pinned = pinned
        self.identity = identity
        self.type = type
    }

    deinit {
        if let pinned { close(pinned) }
    }

    var isDirectory: Bool { type == S_IFDIR }
    var isRegularFile: Bool { type == S_IFREG }
    var isSymbolicLink: Bool { type == S_IFLNK }
}

/// `/proc/self/fd/N`: reopens a file (or reaches it with path-only calls such as `getxattr`) without
/// any path walk. It follows the magic link, so it is never used on symbolic links.
func procPath(_ descriptor: Int32) -> String { "/proc/self/fd/\(descriptor)" }

/// The kernel's view of the backing tree: FUSE inode numbers ↔ backing files, with lookup counts.
///
/// Numbers are handed out from a counter and never reused during a mount, so every generation is 0.
/// Each record also keeps the parent and name the file was last seen under: hooks get a path from
/// them, and unpinned inodes are reopened through them.
final class InodeTable: Sendable {
    /// FUSE's fixed number for the root directory.
    static let rootNumber: UInt64 = 1

    private struct Record {
        let inode: Inode
        /// References handed to the kernel and not yet forgotten.
        var lookups: UInt64
        var parent: UInt64
        var name: [UInt8]
    }

    private struct State {
        var records: [UInt64: Record] = [:]
        var numbers: [FileIdentity: UInt64] = [:]
        var next: UInt64 = InodeTable.rootNumber + 1
        var pinnedCount = 0
    }

    private let state = Mutex(State())
    /// The root, which the kernel never forgets.
    let root: Inode
    /// How many inodes may hold a descriptor: directories up to this many…
    let directoryPinLimit: Int
    /// …and other files only while fewer than this many are pinned, so that the directories a large
    /// tree walk goes through stay pinned (unpinned children reopen through them cheaply).
    let filePinLimit: Int

    /// A table whose root is the directory open as `rootDescriptor` (an `O_PATH` descriptor it takes
    /// over), pinning at most `pinLimit` inodes.
    init(rootDescriptor: Int32, rootStatus: stat, pinLimit: Int) {
        root = Inode(number: Self.rootNumber, pinned: rootDescriptor,
                     identity: FileIdentity(rootStatus), type: rootStatus.st_mode & S_IFMT)
        directoryPinLimit = max(pinLimit, 0)
        filePinLimit = max(pinLimit, 0) * 2 / 3
        state.withLock { state in
            state.records[Self.rootNumber] = Record(inode: root, lookups: 1, parent: 0, name: [])
            state.numbers[root.identity] = Self.rootNumber
            state.pinnedCount = 1
        }
    }

    /// The inode with `number`, or `ESTALE`.
    func inode(_ number: UInt64) throws(Errno) -> Inode {
        if number == Self.rootNumber { return root }
        guard let inode = state.withLock({ $0.records[number]?.inode }) else { throw .stale }
        return inode
    }

    /// Counts one more reference on the known inode with `identity`, now seen as `parent/name`;
    /// nil when the identity is not in the table.
    func reference(_ identity: FileIdentity, parent: UInt64, name: [UInt8]) -> Inode? {
        state.withLock { state in
            guard let number = state.numbers[identity] else { return nil }
            state.records[number]!.lookups += 1
            if number != Self.rootNumber {
                state.records[number]!.parent = parent
                state.records[number]!.name = name
            }
            return state.records[number]!.inode
        }
    }

    /// Whether a new inode of `type` should hold a descriptor.
    func shouldPin(_ type: mode_t) -> Bool {
        let pinned = state.withLock { $0.pinnedCount }
        return pinned < (type == S_IFDIR ? directoryPinLimit : filePinLimit)
    }

    /// Counts one reference on the backing file described by `status`, adding it when new. `descriptor`
    /// (an `O_PATH` descriptor the table takes over) pins a new inode; it is closed when the file is
    /// already known.
    func remember(descriptor: Int32?, status: stat, parent: UInt64, name: [UInt8]) -> Inode {
        let identity = FileIdentity(status)
        let (inode, duplicate) = state.withLock { state -> (Inode, Bool) in
            if let number = state.numbers[identity] {
                state.records[number]!.lookups += 1
                if number != Self.rootNumber {
                    state.records[number]!.parent = parent
                    state.records[number]!.name = name
                }
                return (state.records[number]!.inode, true)
            }
            let number = state.next
            state.next += 1
            let inode = Inode(number: number, pinned: descriptor, identity: identity, type: status.st_mode & S_IFMT)
            state.records[number] = Record(inode: inode, lookups: 1, parent: parent, name: name)
            state.numbers[identity] = number
            if descriptor != nil { state.pinnedCount += 1 }
            return (inode, false)
        }
        if duplicate, let descriptor { close(descriptor) }
        return inode
    }

    /// Calls `body` with a descriptor of `inode`: its pinned one, or one reopened through its parent
    /// and name for the duration of the call.
    func withDescriptor<R>(_ inode: Inode, _ body: (Int32) throws(Errno) -> R) throws(Errno) -> R {
        if let pinned = inode.pinned { return try body(pinned) }
        guard let (parentNumber, name) = state.withLock({ state in
            state.records[inode.number].map { ($0.parent, $0.name) }
        }) else { throw .stale }
        let parent = try self.inode(parentNumber)
        let descriptor = try withDescriptor(parent) { directory throws(Errno) in
            try withName(name) { cName throws(Errno) in
                try systemCall { openat(directory, cName, LinuxFlags.openPath | O_NOFOLLOW | O_CLOEXEC) }
            }
        }
        defer { close(descriptor) }
        var status = stat()
        _ = try systemCall { fstatat(descriptor, "", &status, LinuxFlags.atEmptyPath | AT_SYMLINK_NOFOLLOW) }
        // The name now belongs to another file (replaced behind the mount): the kernel's inode is stale.
        guard FileIdentity(status) == inode.identity else { throw .stale }
        return try body(descriptor)
    }

    /// Takes back `count` references; at zero the record goes, and the descriptor closes once no
    /// request in flight holds the inode.
    func forget(_ number: UInt64, count: UInt64) {
        guard number != Self.rootNumber else { return }
        let dropped: Inode? = state.withLock { state in
            guard var record = state.records[number] else { return nil }
            record.lookups = record.lookups > count ? record.lookups - count : 0
            if record.lookups > 0 {
                state.records[number] = record
                return nil
            }
            state.records[number] = nil
            if state.numbers[record.inode.identity] == number { state.numbers[record.inode.identity] = nil }
            if record.inode.pinned != nil { state.pinnedCount -= 1 }
            return record.inode
        }
        _ = dropped  // released outside the lock: closing a descriptor is a system call
    }

    /// Records that the file with `identity` is now named `parent/name` (after a rename or link).
    func moved(_ identity: FileIdentity, parent: UInt64, name: [UInt8]) {
        state.withLock { state in
            guard let number = state.numbers[identity], number != Self.rootNumber else { return }
            state.records[number]!.parent = parent
            state.records[number]!.name = name
        }
    }

    /// The path of `number` relative to the root as raw bytes (`a/b`; the root is empty), nil when an
    /// ancestor is no longer known.
    func pathBytes(of number: UInt64) -> [UInt8]? {
        state.withLock { state in
            var components: [[UInt8]] = []
            var current = number
            // A bound on depth keeps a (transiently) inconsistent parent chain from looping.
            for _ in 0..<4096 {
                if current == Self.rootNumber {
                    var path: [UInt8] = []
                    for component in components.reversed() {
                        if !path.isEmpty { path.append(UInt8(ascii: "/")) }
                        path.append(contentsOf: component)
                    }
                    return path
                }
                guard let record = state.records[current] else { return nil }
                components.append(record.name)
                current = record.parent
            }
            return nil
        }
    }

    /// Whether the kernel knows the backing file with `identity` and, when `name` is given, the file was
    /// last seen under it. Every entry the kernel holds references a known inode, so an unknown file
    /// (or one last seen under another name) behind a name means the kernel's entry for it is stale.
    func knows(_ identity: FileIdentity, as name: (parent: UInt64, name: [UInt8])?) -> Bool {
        state.withLock { state in
            guard let number = state.numbers[identity] else { return false }
            guard let name, number != Self.rootNumber, let record = state.records[number] else { return true }
            return record.parent == name.parent && record.name == name.name
        }
    }

    /// The inode number of the backing file with `identity`, when the kernel knows it.
    func number(of identity: FileIdentity) -> UInt64? {
        state.withLock { $0.numbers[identity] }
    }

    /// The number of inodes the kernel currently holds references on (the root included).
    var count: Int { state.withLock { $0.records.count } }

    /// How many of them hold a descriptor (the root included).
    var pinnedCount: Int { state.withLock { $0.pinnedCount } }

    /// The reference count of `number` (0 when unknown).
    func lookups(_ number: UInt64) -> UInt64 { state.withLock { $0.records[number]?.lookups ?? 0 } }
}

extension FileIdentity {
    init(_ status: stat) {
        self.init(device: UInt64(status.st_dev), inode: UInt64(status.st_ino))
    }
}
