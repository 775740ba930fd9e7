import Backends
import Foundation
import Glibc
import Synchronization

/// Watches an endpoint's tree with inotify and keeps the change journal: which paths changed since the
/// last pass, so the sync loop starts a pass within moments of a local change and that pass looks at
/// those paths only. Watches are added for every directory, including ones created or moved in later,
/// and follow folders renamed inside the tree. When the journal may have missed a change (the kernel's
/// event queue overflowed, or it refused a watch), the next pass looks at everything.
/// The reader runs on its own thread (blocking `read`), never on the cooperative pool.
public final class InotifyWatcher: Sendable {
    private let fd: Int32
    private let root: String
    private let watches = Mutex<[Int32: String]>([:])
    private let journal = Mutex<Journal>(Journal())
    private let changes = Atomic<Int>(0)
    private let lastChange = Atomic<Int64>(0)
    private let stopped = Atomic<Bool>(false)

    /// What changed since the last ``take()``.
    struct Journal {
        var changes = ChangeSet()
        /// Something may have been missed since the last take: the next pass looks at everything.
        var incomplete = false
        /// Why watches are missing for good (every pass then looks at everything), once known.
        var watchesRefused: String?
        /// Something to tell the operator once (a raised watch limit).
        var notice: String?
    }

    /// More changed paths than this are not kept one by one: the next pass walks the whole tree.
    static let maxJournalPaths = 100_000

    static let mask = UInt32(IN_CREATE | IN_DELETE | IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_ATTRIB | IN_DELETE_SELF)

    /// Starts watching `root` (recursively).
    public init(root: String) throws {
        self.root = root
        fd = try Posix.call("inotify_init1", path: root) { inotify_init1(Int32(IN_CLOEXEC)) }
        try addTree("")
        let thread = Thread { [self] in self.readLoop() }
        thread.name = "tiergate-inotify"
        thread.start()
    }

    /// Total changes seen so far (the loop compares it with the count at its last pass).
    public var changeCount: Int { changes.load(ordering: .acquiring) }

    /// Nanoseconds (monotonic) of the last change, for debouncing bursts.
    public var lastChangeNanoseconds: Int64 { lastChange.load(ordering: .acquiring) }

    /// Why some folders are not watched (every pass then walks the whole tree), or nil.
    public var watchesRefused: String? { journal.withLock { $0.watchesRefused } }

    /// Something the operator should hear about once (a watch limit raised, watches refused), or nil.
    public func takeNotice() -> String? {
        journal.withLock { journal in
            defer { journal.notice = nil }
            return journal.notice
        }
    }

    /// What a pass must look at: the paths changed since the last take, or everything when the journal
    /// may have missed a change. The journal starts over; a pass that fails gives its scope back.
    public func take() -> ChangeScope {
        journal.withLock { journal in
            defer {
                journal.changes = ChangeSet()
                journal.incomplete = false
            }
            return journal.incomplete || journal.watchesRefused != nil ? .everything : .changes(journal.changes)
        }
    }

    /// Returns the scope of a pass that did not finish, so its changes are looked at again.
    public func giveBack(_ scope: ChangeScope) {
        journal.withLock { journal in
            switch scope {
            case .everything: journal.incomplete = true
            case .changes(let changes): journal.changes.formUnion(changes)
            }
        }
    }

    /// Stops the reader thread and releases the descriptor.
    public func stop() {
        guard !stopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        // Closing the descriptor wakes the blocked read with EBADF.
        for wd in watches.withLock({ Array($0.keys) }) { inotify_rm_watch(fd, wd) }
        close(fd)
    }

    /// Watches the folder at `relative` and every folder beneath it (a watch already on a folder is
    /// given its new path: the kernel returns the same descriptor for the same inode).
    private func addTree(_ relative: String) throws {
        let path = relative.isEmpty ? root : root + "/" + relative
        var wd = inotify_add_watch(fd, path, Self.mask | UInt32(IN_DONT_FOLLOW) | UInt32(IN_ONLYDIR))
        if wd < 0 && errno == ENOSPC, let raised = Self.raiseWatchLimit() {
            journal.withLock { $0.notice = "raised fs.inotify.max_user_watches to \(raised): the endpoint has more folders than the limit allowed watches" }
            wd = inotify_add_watch(fd, path, Self.mask | UInt32(IN_DONT_FOLLOW) | UInt32(IN_ONLYDIR))
        }
        guard wd >= 0 else {
            let error = PosixError("inotify_add_watch", path: path, errno: errno)
            if relative.isEmpty { throw error }
            if error.errno == ENOSPC || error.errno == ENOMEM {
                let limit = (try? String(contentsOfFile: Self.watchLimitPath, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "?"
                journal.withLock { journal in
                    guard journal.watchesRefused == nil else { return }
                    journal.watchesRefused = "the kernel refused more inotify watches (fs.inotify.max_user_watches is \(limit)); every pass walks the whole tree. Raise it (sysctl fs.inotify.max_user_watches=N) and restart the daemon"
                    journal.notice = journal.watchesRefused
                }
            } else {
                // Gone, or no longer a folder: whatever replaced it was reported in its parent.
                journal.withLock { $0.changes.changed(relative) }
            }
            return
        }
        watches.withLock { $0[wd] = relative }
        for (name, isDirectory) in (try? Posix.listDirectory(path)) ?? [] where isDirectory {
            if relative.isEmpty && name == SkipRules.stateFolder { continue }
            try? addTree(relative.isEmpty ? name : relative + "/" + name)
        }
    }

    /// Forgets the watches of the folder at `relative` and beneath it (moved away; if it moved within
    /// the tree, its new place is watched again under its new path).
    private func dropTree(_ relative: String) {
        watches.withLock { watches in
            for (wd, path) in watches where path == relative || path.hasPrefix(relative + "/") {
                watches[wd] = nil
                inotify_rm_watch(fd, wd)
            }
        }
    }

    static let watchLimitPath = "/proc/sys/fs/inotify/max_user_watches"

    /// Doubles the user's inotify watch limit when this process may (root); the new limit, or nil.
    static func raiseWatchLimit() -> Int? {
        guard geteuid() == 0, let text = try? String(contentsOfFile: watchLimitPath, encoding: .utf8),
              let limit = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)), limit < Int(Int32.max) / 2 else { return nil }
        guard (try? String(limit * 2).write(toFile: watchLimitPath, atomically: false, encoding: .utf8)) != nil else { return nil }
        return limit * 2
    }

    private func readLoop() {
        let size = 64 << 10
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 8)
        defer { buffer.deallocate() }
        while !stopped.load(ordering: .acquiring) {
            let count = read(fd, buffer, size)
            if count < 0 {
                if errno == EINTR { continue }
                return
            }
            var offset = 0
            var seen = 0
            while offset + MemoryLayout<inotify_event>.size <= count {
                let event = buffer.load(fromByteOffset: offset, as: inotify_event.self)
                let nameStart = buffer + offset + MemoryLayout<inotify_event>.size
                let name = event.len > 0 ? String(cString: nameStart.assumingMemoryBound(to: CChar.self)) : ""
                offset += MemoryLayout<inotify_event>.size + Int(event.len)
                if event.mask & UInt32(IN_Q_OVERFLOW) != 0 {
                    journal.withLock { $0.incomplete = true }
                    seen += 1
                    continue
                }
                let directory = watches.withLock { $0[event.wd] }
                if event.mask & UInt32(IN_IGNORED) != 0 {
                    watches.withLock { if $0[event.wd] == directory { $0[event.wd] = nil } }
                    continue
                }
                guard let directory else { continue }
                // Changes inside Tiergate's own folder (staging) are not local edits.
                if directory.isEmpty && name == SkipRules.stateFolder { continue }
                if directory == SkipRules.stateFolder || directory.hasPrefix(SkipRules.stateFolder + "/") { continue }
                // An event without a name is about the watched folder itself.
                let path = name.isEmpty ? directory : directory.isEmpty ? name : directory + "/" + name
                let isFolder = event.mask & UInt32(IN_ISDIR) != 0
                if isFolder && event.mask & UInt32(IN_MOVED_FROM) != 0 && !name.isEmpty {
                    dropTree(path)
                }
                if isFolder && event.mask & UInt32(IN_CREATE | IN_MOVED_TO) != 0 && !name.isEmpty {
                    // Watched before it is walked: whatever is made inside it from now on is reported,
                    // and what was made before is found by the walk of the whole folder.
                    try? addTree(path)
                    journal.withLock { $0.changes.arrived(path) }
                } else if event.mask & UInt32(IN_DELETE_SELF) == 0 {
                    journal.withLock { $0.changes.changed(path) }
                }
                seen += 1
            }
            if seen > 0 {
                journal.withLock { journal in
                    if journal.changes.count > Self.maxJournalPaths {
                        journal.changes = ChangeSet()
                        journal.incomplete = true
                    }
                }
                var now = timespec()
                clock_gettime(CLOCK_MONOTONIC, &now)
                lastChange.store(Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec), ordering: .releasing)
                changes.add(seen, ordering: .releasing)
            }
        }
    }
}
