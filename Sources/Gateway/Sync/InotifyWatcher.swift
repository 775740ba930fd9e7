import Backends
import Foundation
import Glibc
import Synchronization

/// Feeds a ``ChangeJournal`` from inotify: a watch on every folder, including ones created or moved in
/// later, following folders renamed inside the tree. A watch the kernel refuses (its per-user limit) is
/// said once, and every pass then walks the whole tree. The reader runs on its own thread (blocking
/// `read`), never on the cooperative pool.
final class InotifyWatcher: ChangeWatcher {
    private let fd: Int32
    private let root: String
    private let journal: ChangeJournal
    private let watches = Mutex<[Int32: String]>([:])
    private let stopped = Atomic<Bool>(false)

    var name: String { "inotify, \(watches.withLock { $0.count }) folders watched" }

    static let mask = UInt32(IN_CREATE | IN_DELETE | IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_ATTRIB | IN_DELETE_SELF)

    /// Starts watching `root` (recursively).
    init(root: String, journal: ChangeJournal) throws {
        self.root = root
        self.journal = journal
        fd = try Posix.call("inotify_init1", path: root) { inotify_init1(Int32(IN_CLOEXEC)) }
        try addTree("")
        let thread = Thread { [self] in self.readLoop() }
        thread.name = "tiergate-inotify"
        thread.start()
    }

    /// Stops the reader thread and releases the descriptor.
    func stop() {
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
            journal.tell("raised fs.inotify.max_user_watches to \(raised): the endpoint has more folders than the limit allowed watches")
            wd = inotify_add_watch(fd, path, Self.mask | UInt32(IN_DONT_FOLLOW) | UInt32(IN_ONLYDIR))
        }
        guard wd >= 0 else {
            let error = PosixError("inotify_add_watch", path: path, errno: errno)
            if relative.isEmpty { throw error }
            if error.errno == ENOSPC || error.errno == ENOMEM {
                let limit = (try? String(contentsOfFile: Self.watchLimitPath, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "?"
                journal.refuse("the kernel refused more inotify watches (fs.inotify.max_user_watches is \(limit)); every pass walks the whole tree. Raise it (sysctl fs.inotify.max_user_watches=N) and restart the daemon")
            } else {
                // Gone, or no longer a folder: whatever replaced it was reported in its parent.
                journal.record(events: 0) { $0.changed(relative) }
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
            var changes = ChangeSet()
            var lost = false
            while offset + MemoryLayout<inotify_event>.size <= count {
                let event = buffer.load(fromByteOffset: offset, as: inotify_event.self)
                let nameStart = buffer + offset + MemoryLayout<inotify_event>.size
                let name = event.len > 0 ? String(cString: nameStart.assumingMemoryBound(to: CChar.self)) : ""
                offset += MemoryLayout<inotify_event>.size + Int(event.len)
                if event.mask & UInt32(IN_Q_OVERFLOW) != 0 {
                    lost = true
                    seen += 1
                    continue
                }
                let directory = watches.withLock { $0[event.wd] }
                if event.mask & UInt32(IN_IGNORED) != 0 {
                    watches.withLock { if $0[event.wd] == directory { $0[event.wd] = nil } }
                    continue
                }
                guard let directory, event.mask & UInt32(IN_DELETE_SELF) == 0,
                      !ChangeSet.isStateFolder(folder: directory, name: name) else { continue }
                let isFolder = event.mask & UInt32(IN_ISDIR) != 0
                let path = name.isEmpty ? directory : directory.isEmpty ? name : directory + "/" + name
                if isFolder && event.mask & UInt32(IN_MOVED_FROM) != 0 && !name.isEmpty {
                    dropTree(path)
                }
                let arrived = event.mask & UInt32(IN_CREATE | IN_MOVED_TO) != 0
                if isFolder && arrived && !name.isEmpty {
                    // Watched before it is walked: whatever is made inside it from now on is reported,
                    // and what was made before is found by the walk of the whole folder.
                    try? addTree(path)
                }
                changes.record(folder: directory, name: name, isFolder: isFolder, arrived: arrived)
                seen += 1
            }
            if lost { journal.lose(events: 0) }
            journal.record(events: seen) { $0.formUnion(changes) }
        }
    }
}
