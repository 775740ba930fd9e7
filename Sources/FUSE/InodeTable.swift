import Glibc
import Synchronization

/// A backing file the kernel knows by a FUSE inode number, pinned by an `O_PATH` descriptor.
///
/// The descriptor, not a path, is the inode's identity: it survives renames made behind the mount and
/// keeps an unlinked file reachable, and while it is open the backing file system cannot reuse the
/// inode number, so (device, inode) keys stay unambiguous.
final class Inode: Sendable {
    /// The FUSE inode number (node id).
    let number: UInt64
    /// `O_PATH | O_NOFOLLOW` descriptor of the backing file.
    let descriptor: Int32
    /// The backing file's (st_dev, st_ino).
    let identity: FileIdentity
    /// The file type bits (`S_IFMT` part of `st_mode`); a file's type never changes.
    let type: mode_t

    init(number: UInt64, descriptor: Int32, identity: FileIdentity, type: mode_t) {
        self.number = number
        self.descriptor = descriptor
        self.identity = identity
        self.type = type
    }

    deinit { close(descriptor) }

    var isDirectory: Bool { type == S_IFDIR }
    var isRegularFile: Bool { type == S_IFREG }
    var isSymbolicLink: Bool { type == S_IFLNK }

    /// `/proc/self/fd/N`: reopens the backing file (or reaches it with path-only calls such as
    /// `getxattr`) without any path walk. It follows the magic link, so it is never used on symlinks.
    var procPath: String { "/proc/self/fd/\(descriptor)" }
}

/// The kernel's view of the backing tree: FUSE inode numbers ↔ backing files, with lookup counts.
///
/// Numbers are handed out from a counter and never reused during a mount, so every generation is 0.
/// Each record also keeps the parent and name the file was last seen under, to give hooks a path.
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
    }

    private let state = Mutex(State())
    /// The root, which the kernel never forgets.
    let root: Inode

    /// A table whose root is the directory open as `rootDescriptor` (an `O_PATH` descriptor it takes over).
    init(rootDescriptor: Int32, rootStatus: stat) {
        root = Inode(number: Self.rootNumber, descriptor: rootDescriptor,
                     identity: FileIdentity(rootStatus), type: rootStatus.st_mode & S_IFMT)
        state.withLock { state in
            state.records[Self.rootNumber] = Record(inode: root, lookups: 1, parent: 0, name: [])
            state.numbers[root.identity] = Self.rootNumber
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

    /// Counts one reference on the backing file open as `descriptor` (an `O_PATH` descriptor the table
    /// takes over), adding it when new; when the file is already known the descriptor is closed.
    func remember(descriptor: Int32, status: stat, parent: UInt64, name: [UInt8]) -> Inode {
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
            let inode = Inode(number: number, descriptor: descriptor, identity: identity, type: status.st_mode & S_IFMT)
            state.records[number] = Record(inode: inode, lookups: 1, parent: parent, name: name)
            state.numbers[identity] = number
            return (inode, false)
        }
        if duplicate { close(descriptor) }
        return inode
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

    /// The inode number of the backing file with `identity`, when the kernel knows it.
    func number(of identity: FileIdentity) -> UInt64? {
        state.withLock { $0.numbers[identity] }
    }

    /// The number of inodes the kernel currently holds references on (the root included).
    var count: Int { state.withLock { $0.records.count } }

    /// The reference count of `number` (0 when unknown).
    func lookups(_ number: UInt64) -> UInt64 { state.withLock { $0.records[number]?.lookups ?? 0 } }
}

extension FileIdentity {
    init(_ status: stat) {
        self.init(device: UInt64(status.st_dev), inode: UInt64(status.st_ino))
    }
}
