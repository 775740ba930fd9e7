import Backends
import Foundation
import Glibc
import Synchronization

/// An endpoint's change journal: which paths changed since the last pass, so the daemon starts a pass
/// within moments of a local change and that pass looks at those paths only. A watcher of the tree feeds
/// it: a fanotify filesystem mark where the daemon may place one (one mark for the whole file system, no
/// limit per folder: the Linux counterpart of the NTFS change journal), else inotify watches on every
/// folder. When the journal may have missed a change (an event queue overflowed, watches were refused,
/// a folder could not be placed), the next pass looks at everything.
public final class ChangeJournal: Sendable {
    /// Which watcher feeds the journal (`serve --change-journal`).
    public enum Source: String, Sendable, CaseIterable {
        /// A fanotify filesystem mark when the daemon may place one, else inotify (and the log says why).
        case automatic = "auto"
        /// A fanotify filesystem mark (CAP_SYS_ADMIN, a file system that gives file handles), or nothing.
        case fanotify
        /// An inotify watch on every folder (limited by `fs.inotify.max_user_watches`).
        case inotify
    }

    /// What changed since the last ``take()``.
    struct Entries {
        var changes = ChangeSet()
        /// Something may have been missed since the last take: the next pass looks at everything.
        var incomplete = false
        /// Why the watcher misses changes for good (every pass then looks at everything), once known.
        var refused: String?
        /// Something to tell the operator once (a raised watch limit, a watcher that could not be used).
        var notices: [String] = []
    }

    /// More changed paths than this are not kept one by one: the next pass walks the whole tree.
    static let maxPaths = 100_000

    private let entries = Mutex<Entries>(Entries())
    private let count = Atomic<Int>(0)
    private let lastChange = Atomic<Int64>(0)
    private let watcher = Mutex<(any ChangeWatcher)?>(nil)

    private init() {}

    /// Starts watching the tree at `root` with `source`; `.automatic` falls back to inotify, with a
    /// notice, when no fanotify filesystem mark can be placed. `recalledHere` (the daemon recalls
    /// stubs through fanotify pre-content events on the same file system) rules the mark out, with a
    /// notice: while a reader waits for a recall, the kernel holds every filesystem mark of that file
    /// system, so a group closing then (a worker stopping or killed, its supervisor waiting to start
    /// the next one that would answer the reader) would wait for ever.
    public static func watch(_ root: String, using source: Source = .automatic, recalledHere: Bool = false) throws -> ChangeJournal {
        let journal = ChangeJournal()
        if source != .inotify && recalledHere {
            journal.tell("no fanotify filesystem mark for the change journal: this daemon recalls stubs through fanotify on the same file system, and a mark there could not be let go while a reader waits for a recall; watching every folder with inotify")
        } else if source != .inotify {
            do {
                let watcher = try FanotifyWatcher(root: root, journal: journal)
                journal.watcher.withLock { $0 = watcher }
                return journal
            } catch {
                if source == .fanotify { throw GatewayError("cannot place a fanotify filesystem mark for \(root): \(error)") }
                journal.tell("no fanotify filesystem mark for the change journal (\(error)); watching every folder with inotify")
            }
        }
        let watcher = try InotifyWatcher(root: root, journal: journal)
        journal.watcher.withLock { $0 = watcher }
        return journal
    }

    /// Which watcher feeds the journal, as the log names it.
    public var watcherName: String { watcher.withLock { $0?.name ?? "none" } }

    /// Total changes seen so far (the loop compares it with the count at its last pass).
    public var changeCount: Int { count.load(ordering: .acquiring) }

    /// Nanoseconds (monotonic) of the last change, for debouncing bursts.
    public var lastChangeNanoseconds: Int64 { lastChange.load(ordering: .acquiring) }

    /// Why the watcher misses changes for good (every pass then walks the whole tree), or nil.
    public var refused: String? { entries.withLock { $0.refused } }

    /// Something the operator should hear about once (a watch limit raised, watches refused, the
    /// watcher fallen back to inotify), or nil.
    public func takeNotice() -> String? {
        entries.withLock { entries in entries.notices.isEmpty ? nil : entries.notices.removeFirst() }
    }

    /// What a pass must look at: the paths changed since the last take, or everything when the journal
    /// may have missed a change. The journal starts over; a pass that fails gives its scope back.
    public func take() -> ChangeScope {
        entries.withLock { entries in
            defer {
                entries.changes = ChangeSet()
                entries.incomplete = false
            }
            return entries.incomplete || entries.refused != nil ? .everything : .changes(entries.changes)
        }
    }

    /// Returns the scope of a pass that did not finish, so its changes are looked at again.
    public func giveBack(_ scope: ChangeScope) {
        entries.withLock { entries in
            switch scope {
            case .everything: entries.incomplete = true
            case .changes(let changes): entries.changes.formUnion(changes)
            }
        }
    }

    /// Stops the watcher.
    public func stop() {
        watcher.withLock { $0 }?.stop()
    }

    // MARK: For the watchers

    /// Records what `events` events (one read of the watcher's queue) changed.
    func record(events: Int, _ update: (inout ChangeSet) -> Void) {
        entries.withLock { entries in
            update(&entries.changes)
            if entries.changes.count > Self.maxPaths {
                entries.changes = ChangeSet()
                entries.incomplete = true
            }
        }
        noted(events)
    }

    /// Something may have been missed (the event queue overflowed, a folder could not be placed): the
    /// next pass looks at everything.
    func lose(events: Int = 1) {
        entries.withLock { $0.incomplete = true }
        noted(events)
    }

    /// The watcher misses changes for good, for `reason`: every pass looks at everything, and the
    /// operator is told once.
    func refuse(_ reason: String) {
        entries.withLock { entries in
            guard entries.refused == nil else { return }
            entries.refused = reason
            entries.notices.append(reason)
        }
    }

    /// Something to tell the operator once.
    func tell(_ notice: String) {
        entries.withLock { $0.notices.append(notice) }
    }

    private func noted(_ events: Int) {
        guard events > 0 else { return }
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        lastChange.store(Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec), ordering: .releasing)
        count.add(events, ordering: .releasing)
    }
}

/// What feeds a ``ChangeJournal``.
protocol ChangeWatcher: Sendable {
    /// As the log names it: "fanotify filesystem mark", "inotify".
    var name: String { get }
    /// Stops reading events and releases the kernel's resources.
    func stop()
}

extension ChangeSet {
    /// Records one event: the item `name` in the folder at `folder` (relative to the endpoint root; an
    /// empty name or "." is the folder itself), created or moved in (`arrived`) or otherwise changed.
    /// Events inside Tiergate's own state folder are not local edits: false for those.
    @discardableResult
    mutating func record(folder: String, name: String, isFolder: Bool, arrived: Bool) -> Bool {
        if Self.isStateFolder(folder: folder, name: name) { return false }
        let itself = name.isEmpty || name == "."
        let path = itself ? folder : folder.isEmpty ? name : folder + "/" + name
        // A folder created or moved in is walked whole: what was made in it before it was seen is in it.
        if isFolder && arrived && !itself { self.arrived(path) } else { changed(path) }
        return true
    }

    /// Whether the item `name` in the folder at `folder` is Tiergate's state folder or inside it.
    static func isStateFolder(folder: String, name: String) -> Bool {
        (folder.isEmpty && name == SkipRules.stateFolder) || folder == SkipRules.stateFolder || folder.hasPrefix(SkipRules.stateFolder + "/")
    }
}
