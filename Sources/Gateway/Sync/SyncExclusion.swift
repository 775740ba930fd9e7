import Backends
import Glibc

/// Why the scan leaves a local item out of sync. The one owner of these rules and their wording:
/// ``TreeWalker`` applies them on every pass and `tiergate check` reports them, so both say the same.
public enum SyncExclusion: Sendable, Hashable {
    /// The name is not valid UTF-8 (the share holds UTF-8 names only).
    case nameNotUTF8
    /// The name equals the synced name `of` but for Unicode normalization.
    case normalizationTwin(of: String)
    /// On the skip list (``SkipRules``); the associated text says which rule.
    case skipList(String)
    /// The path breaks the rule every server applies to names from the share (``SafePath/problem(with:)``).
    case unsafePath(String)
    /// A system call on the item failed (`opendir`, `readdir`, `lstat`, `open`) with `errno`.
    case unreadable(function: String, errno: Int32)
    /// The item was replaced between its stat and its open.
    case changedDuringScan
    /// A regular file with more than one link.
    case hardLink(links: UInt64)
    /// A symbolic link.
    case symbolicLink
    /// A socket.
    case socket
    /// A FIFO.
    case fifo
    /// A character or block device.
    case deviceNode

    /// The reason shown for a skipped item (``SkippedItem/reason``).
    public var reason: String {
        switch self {
        case .nameNotUTF8: "the name is not valid UTF-8"
        case .normalizationTwin(let twin): "differs from '\(twin)' in this folder only by Unicode normalization; rename one of them"
        case .skipList(let reason): reason
        case .unsafePath(let problem): "not synced: \(problem)"
        case .unreadable(_, let errno): String(cString: strerror(errno))
        case .changedDuringScan: "changed while it was scanned; it will be scanned again"
        case .hardLink(let links): "a hard link (\(links) links)"
        case .symbolicLink: "a symbolic link"
        case .socket: "a socket"
        case .fifo: "a FIFO"
        case .deviceNode: "a device node"
        }
    }

    /// True for ``normalizationTwin(of:)``: to the share the name is its twin's.
    public var isNormalizationTwin: Bool {
        if case .normalizationTwin = self { true } else { false }
    }

    /// The rule on file kinds for an item stat'ed without following links: nil for a directory and a
    /// regular file with one link, which sync.
    public static func byKind(_ info: stat) -> SyncExclusion? {
        switch info.st_mode & S_IFMT {
        case S_IFDIR: nil
        case S_IFREG where info.st_nlink > 1: .hardLink(links: UInt64(info.st_nlink))
        case S_IFREG: nil
        case S_IFLNK: .symbolicLink
        case S_IFSOCK: .socket
        case S_IFIFO: .fifo
        default: .deviceNode
        }
    }
}

/// One directory's entry names, in the order the scan takes them, each with the verdict of the name
/// rules (the rules on kinds need a stat: ``SyncExclusion/byKind(_:)``).
struct DirectoryNames {
    /// One entry.
    struct Entry {
        /// The name's bytes.
        var raw: [UInt8]
        /// The name (invalid UTF-8 shown as U+FFFD).
        var name: String
        /// The path relative to the tree root.
        var path: String
        /// What the name rules decide.
        var verdict: Verdict
    }

    /// What the name rules decide for one entry.
    enum Verdict {
        /// Synced, unless its kind says otherwise.
        case byKind
        /// Tiergate's own state folder at the root: neither synced nor reported.
        case ignored
        /// Not synced, for this reason.
        case excluded(SyncExclusion)
    }

    /// The entries, sorted by the bytes of their names (the first of normalization twins syncs).
    var entries: [Entry] = []

    /// Reads the directory `dir` (at `relative` under the root, empty for the root itself) whole;
    /// throws the `readdir` errno when it cannot be listed whole.
    init(_ dir: OpaquePointer, relative: String) throws(PosixError) {
        var names: [(raw: [UInt8], name: String, valid: Bool)] = []
        var beyondASCII = false
        errno = 0
        while let entry = readdir(dir) {
            let raw = Posix.entryName(entry)
            if raw == [46] || raw == [46, 46] { continue }
            let valid = String(validating: raw, as: UTF8.self)
            names.append((raw, valid ?? String(decoding: raw, as: UTF8.self), valid != nil))
            beyondASCII = beyondASCII || raw.contains { $0 >= 0x80 }
        }
        if errno != 0 { throw PosixError("readdir", path: relative, errno: errno) }
        names.sort { $0.raw.lexicographicallyPrecedes($1.raw) }
        entries.reserveCapacity(names.count)
        let atRoot = relative.isEmpty
        // Names that differ only in Unicode normalization are one name to the share (Swift compares
        // strings by canonical equivalence): the first in byte order syncs, the others are reported.
        // Twins need a name beyond ASCII (two ASCII names are equivalent only when equal, and a folder
        // lists a name once), so a folder of ASCII names is not searched for them.
        var seen: [String: String]? = beyondASCII ? [:] : nil
        for (raw, name, valid) in names {
            let path = atRoot ? name : relative + "/" + name
            entries.append(Entry(raw: raw, name: name, path: path, verdict: Self.verdict(name, path: path, valid: valid, atRoot: atRoot, seen: &seen)))
        }
    }

    private static func verdict(_ name: String, path: String, valid: Bool, atRoot: Bool, seen: inout [String: String]?) -> Verdict {
        guard valid else { return .excluded(.nameNotUTF8) }
        if let twin = seen?[name] { return .excluded(.normalizationTwin(of: twin)) }
        seen?[name] = name
        if atRoot && name == SkipRules.stateFolder { return .ignored }
        if let reason = SkipRules.reason(forName: name, atRoot: atRoot) { return .excluded(.skipList(reason)) }
        // The rule every server applies to names from the share, applied where the name is made.
        if let problem = SafePath.problem(with: path) { return .excluded(.unsafePath(problem)) }
        return .byKind
    }
}
