import Backends
import CLinux
import Foundation
import Glibc
import Synchronization

/// Feeds a ``ChangeJournal`` from one fanotify filesystem mark on the endpoint's file system: every
/// create, delete, rename, write and attribute change there is reported with its folder's file handle
/// and the entry's name (`FAN_REPORT_DFID_NAME`), so no folder needs a watch of its own and no per-user
/// watch limit applies. The folder is found by opening its handle and asking the kernel for its path;
/// what lies outside the endpoint (the mark sees the whole file system) is dropped. Needs
/// CAP_SYS_ADMIN (the mark) and CAP_DAC_READ_SEARCH (opening handles), and a file system that gives
/// file handles; without them ``ChangeJournal`` falls back to inotify. The reader runs on its own
/// thread, never on the cooperative pool.
final class FanotifyWatcher: ChangeWatcher {
    private let fd: Int32
    /// The endpoint root, opened (not `O_PATH`: handles are opened relative to it): the mount handles are opened in, and the base of every check.
    private let rootFD: Int32
    /// The root's path as the kernel spells it (symlinks resolved), which folder paths are measured against.
    private let root: String
    private let journal: ChangeJournal
    private let stopped = Atomic<Bool>(false)

    let name = "fanotify filesystem mark"

    static let mask = CLINUX_FAN_CREATE | CLINUX_FAN_DELETE | CLINUX_FAN_MODIFY | CLINUX_FAN_CLOSE_WRITE
        | CLINUX_FAN_MOVED_FROM | CLINUX_FAN_MOVED_TO | CLINUX_FAN_ATTRIB | CLINUX_FAN_ONDIR

    /// Folders whose place was looked up, by file handle; forgotten whenever a folder moves or goes.
    static let maxPlaces = 16_384

    /// Places the mark on the file system holding `root`; throws when it cannot be placed or handles
    /// cannot be opened.
    init(root: String, journal: ChangeJournal) throws {
        self.journal = journal
        let rootFD = try Posix.call("open", path: root) { open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        self.rootFD = rootFD
        do {
            let canonical = try Self.path(of: rootFD, for: root)
            self.root = canonical
            if let inner = Self.mounts(beneath: canonical).first {
                throw GatewayError("another file system is mounted inside the endpoint (\(inner)), and a filesystem mark sees only one")
            }
            let probe = try Posix.call("open_by_handle_at", path: root) { CLinux_reopen_by_own_handle(rootFD) }
            close(probe)
            fd = try Posix.call("fanotify_init", path: root) {
                CLinux_fanotify_init(CLINUX_FAN_CLASS_NOTIF | CLINUX_FAN_CLOEXEC | CLINUX_FAN_REPORT_DFID_NAME, UInt32(O_RDONLY | O_CLOEXEC))
            }
        } catch {
            close(rootFD)
            throw error
        }
        do {
            _ = try Posix.call("fanotify_mark", path: root) { [fd] in
                CLinux_fanotify_mark(fd, CLINUX_FAN_MARK_ADD | CLINUX_FAN_MARK_FILESYSTEM, Self.mask, rootFD, nil)
            }
        } catch {
            close(fd)
            close(rootFD)
            throw error
        }
        let thread = Thread { [self] in self.readLoop() }
        thread.name = "tiergate-fanotify"
        thread.start()
    }

    /// Stops the reader thread; it closes the descriptors (which removes the mark) on its way out.
    func stop() {
        stopped.store(true, ordering: .releasing)
    }

    /// Where a folder named by a file handle is now.
    enum Place: Equatable {
        /// Inside the endpoint, at this path relative to its root ("" for the root).
        case inside(String)
        /// Elsewhere on the file system.
        case outside
        /// Deleted: its own delete was reported in its parent.
        case gone
        /// Not known (it moved while it was looked up, or the kernel refused): the next pass looks at everything.
        case unknown
    }

    /// The path the kernel gives the object `fd` refers to.
    static func path(of fd: Int32, for name: String) throws -> String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let length = try Posix.call("readlink", path: name) { readlink("/proc/self/fd/\(fd)", &buffer, Int(PATH_MAX)) }
        return String(decoding: buffer[..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Where the folder whose file handle is at `handle` is now.
    func place(ofFolder handle: UnsafeRawPointer) -> Place {
        for _ in 0..<3 {
            let folder = CLinux_open_by_handle(rootFD, handle, CLINUX_O_PATH | O_CLOEXEC)
            if folder < 0 { return errno == ESTALE || errno == ENOENT ? .gone : .unknown }
            defer { close(folder) }
            var info = stat()
            guard fstat(folder, &info) == 0 else { return .unknown }
            if info.st_nlink == 0 { return .gone }
            let path: String
            do {
                path = try Self.path(of: folder, for: "a folder of \(root)")
            } catch let error as PosixError where error.errno == ENAMETOOLONG {
                // Deeper than a path can say: found by walking up its parents. Outside the endpoint it is
                // nothing to the journal; inside, its path is unknown.
                return isBeneathRoot(folder) ? .unknown : .outside
            } catch {
                return .unknown
            }
            let relative: String
            if path == root {
                relative = ""
            } else if path.hasPrefix(root == "/" ? "/" : root + "/") {
                relative = String(path.dropFirst(root == "/" ? 1 : root.utf8.count + 1))
            } else {
                return .outside
            }
            // The path is checked against the object: a folder renamed meanwhile is looked up again.
            var there = stat()
            if fstatat(rootFD, relative, &there, AT_SYMLINK_NOFOLLOW | CLINUX_AT_EMPTY_PATH) == 0,
               there.st_dev == info.st_dev, there.st_ino == info.st_ino {
                return .inside(relative)
            }
        }
        return .unknown
    }

    /// Whether the folder open as `folder` lies beneath the endpoint root, found by following `..` (at
    /// most 4,096 levels) until the root or the top of the file system.
    func isBeneathRoot(_ folder: Int32) -> Bool {
        var rootInfo = stat(), info = stat()
        guard fstat(rootFD, &rootInfo) == 0 else { return true }
        var current = dup(folder)
        defer { if current >= 0 { close(current) } }
        for _ in 0..<4_096 {
            guard current >= 0, fstat(current, &info) == 0 else { return true }
            if info.st_dev == rootInfo.st_dev && info.st_ino == rootInfo.st_ino { return true }
            let parent = openat(current, "..", CLINUX_O_PATH | O_DIRECTORY | O_CLOEXEC)
            var parentInfo = stat()
            guard parent >= 0, fstat(parent, &parentInfo) == 0 else {
                if parent >= 0 { close(parent) }
                return true
            }
            close(current)
            current = parent
            // The top: `..` of a file system's (or mount's) root is itself.
            if parentInfo.st_dev == info.st_dev && parentInfo.st_ino == info.st_ino { return false }
        }
        return true
    }

    /// The mount points strictly beneath `root` (`/proc/self/mountinfo`): a
    /// filesystem mark sees one file system, so a tree holding others is watched with inotify.
    static func mounts(beneath root: String) -> [String] {
        guard let table = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return [] }
        let prefix = root == "/" ? "/" : root + "/"
        return table.split(separator: "\n").compactMap { line -> String? in
            let fields = line.split(separator: " ", omittingEmptySubsequences: false)
            guard fields.count > 4 else { return nil }
            let point = SystemCheck.unescape(fields[4])
            return point.hasPrefix(prefix) ? point : nil
        }
    }

    private func readLoop() {
        defer {
            close(fd)
            close(rootFD)
        }
        let size = 64 << 10
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 8)
        defer { buffer.deallocate() }
        var places: [Data: Place] = [:]
        let metadataSize = MemoryLayout<CLinux_fanotify_event_metadata>.size
        while !stopped.load(ordering: .acquiring) {
            // Polled, so that a stop is seen within a quarter of a second even on a quiet file system.
            var wait = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&wait, 1, 250)
            if ready < 0 && errno != EINTR { return }
            if ready <= 0 { continue }
            let count = read(fd, buffer, size)
            if count < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                journal.refuse("the fanotify change journal stopped (\(PosixError("read", path: root, errno: errno))); every pass walks the whole tree")
                return
            }
            var offset = 0
            var seen = 0
            var lost = false
            var changes = ChangeSet()
            while offset + metadataSize <= count {
                // Records are aligned to 4 bytes only.
                let event = buffer.loadUnaligned(fromByteOffset: offset, as: CLinux_fanotify_event_metadata.self)
                guard event.event_len >= metadataSize, offset + Int(event.event_len) <= count else { break }
                defer { offset += Int(event.event_len) }
                if event.mask & CLINUX_FAN_Q_OVERFLOW != 0 {
                    lost = true
                    continue
                }
                // The info record: header (4 bytes), fsid (8), then struct file_handle and the name.
                let info = buffer + offset + Int(event.metadata_len)
                let infoEnd = offset + Int(event.event_len)
                guard offset + Int(event.metadata_len) + 20 <= infoEnd,
                      info.load(as: UInt8.self) == UInt8(CLINUX_FAN_EVENT_INFO_TYPE_DFID_NAME) else {
                    lost = true
                    continue
                }
                let handle = UnsafeRawPointer(info + 12)
                let handleBytes = Int(handle.loadUnaligned(as: UInt32.self))
                guard offset + Int(event.metadata_len) + 20 + handleBytes < infoEnd else {
                    lost = true
                    continue
                }
                let key = Data(bytes: handle, count: 8 + handleBytes)
                let place = places[key] ?? {
                    let found = self.place(ofFolder: handle)
                    // Only a place is remembered: what is gone or unknown is asked again.
                    if found != .gone, found != .unknown, places.count < Self.maxPlaces { places[key] = found }
                    return found
                }()
                let isFolder = event.mask & CLINUX_FAN_ONDIR != 0
                // A folder moved or deleted anywhere changes where the folders beneath it are.
                if isFolder && event.mask & (CLINUX_FAN_MOVED_FROM | CLINUX_FAN_MOVED_TO | CLINUX_FAN_DELETE) != 0 {
                    places.removeAll(keepingCapacity: true)
                }
                switch place {
                case .inside(let folder):
                    let name = String(cString: (handle + 8 + handleBytes).assumingMemoryBound(to: CChar.self))
                    // Only what a pass would look at counts as a change (not Tiergate's own staging).
                    if changes.record(folder: folder, name: name, isFolder: isFolder,
                                      arrived: event.mask & (CLINUX_FAN_CREATE | CLINUX_FAN_MOVED_TO) != 0) { seen += 1 }
                case .unknown:
                    lost = true
                case .outside, .gone:
                    break
                }
            }
            if lost { journal.lose() }
            journal.record(events: seen) { $0.formUnion(changes) }
            // The mark sees the whole file system: a busy neighbour's events are read in batches (a
            // read and a wake-up per event cost the daemon more than the events themselves). 10 ms is
            // far below the 200 ms a change settles for, and below what fills the kernel's queue.
            if count < size / 2 { usleep(10_000) }
        }
    }
}
