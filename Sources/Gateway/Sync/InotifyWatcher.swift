import Backends
import Foundation
import Glibc
import Synchronization

/// Watches an endpoint's tree with inotify and counts changes, so the sync loop starts a pass within
/// moments of a local change. Watches are added for every directory, including ones created later.
/// The reader runs on its own thread (blocking `read`), never on the cooperative pool.
public final class InotifyWatcher: Sendable {
    private let fd: Int32
    private let root: String
    private let watches = Mutex<[Int32: String]>([:])
    private let changes = Atomic<Int>(0)
    private let lastChange = Atomic<Int64>(0)
    private let stopped = Atomic<Bool>(false)

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

    /// Stops the reader thread and releases the descriptor.
    public func stop() {
        guard !stopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        // Closing the descriptor wakes the blocked read with EBADF.
        for wd in watches.withLock({ Array($0.keys) }) { inotify_rm_watch(fd, wd) }
        close(fd)
    }

    private func addTree(_ relative: String) throws {
        let path = relative.isEmpty ? root : root + "/" + relative
        let wd = inotify_add_watch(fd, path, Self.mask | UInt32(IN_DONT_FOLLOW))
        guard wd >= 0 else {
            if relative.isEmpty { throw PosixError("inotify_add_watch", path: path, errno: errno) }
            return
        }
        watches.withLock { $0[wd] = relative }
        for (name, isDirectory) in (try? Posix.listDirectory(path)) ?? [] where isDirectory {
            if relative.isEmpty && name == SkipRules.stateFolder { continue }
            try? addTree(relative.isEmpty ? name : relative + "/" + name)
        }
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
                let name = String(cString: nameStart.assumingMemoryBound(to: CChar.self))
                offset += MemoryLayout<inotify_event>.size + Int(event.len)
                let directory = watches.withLock { $0[event.wd] }
                if event.mask & UInt32(IN_IGNORED) != 0 {
                    watches.withLock { _ = $0.removeValue(forKey: event.wd) }
                    continue
                }
                guard let directory else { continue }
                // Changes inside Tiergate's own folder (staging) are not local edits.
                if directory.isEmpty && name == SkipRules.stateFolder { continue }
                if directory == SkipRules.stateFolder || directory.hasPrefix(SkipRules.stateFolder + "/") { continue }
                if event.mask & UInt32(IN_ISDIR) != 0 && event.mask & UInt32(IN_CREATE | IN_MOVED_TO) != 0 {
                    try? addTree(directory.isEmpty ? name : directory + "/" + name)
                }
                seen += 1
            }
            if seen > 0 {
                var now = timespec()
                clock_gettime(CLOCK_MONOTONIC, &now)
                lastChange.store(Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec), ordering: .releasing)
                changes.add(seen, ordering: .releasing)
            }
        }
    }
}
