/// The state of a share's files and directories at one log sequence number: the result of applying
/// every commit up to `sequence` in order. Snapshots store it; `share info` and downloads read it.
public struct Namespace: Codable, Sendable {
    /// Items by path.
    public private(set) var entries: [String: NamespaceEntry] = [:]
    /// The last commit applied.
    public var sequence: UInt64 = 0
    /// How many items lie beneath each folder path, counted when the first rename needs it and kept from
    /// then on. A rename of an item with nothing beneath it (every file's) moves one entry; without the
    /// count it swept every path, and a thousand renames in a million-file share were a billion
    /// comparisons.
    private var beneath: [String: Int]? = nil

    private enum CodingKeys: String, CodingKey { case entries, sequence }

    /// An empty namespace.
    public init() {}

    /// A namespace of `entries` as of `sequence`.
    public init(entries: [String: NamespaceEntry], sequence: UInt64) {
        self.entries = entries
        self.sequence = sequence
    }

    /// Applies one commit's operations in order. A run of deletes removes the contents of its folders in
    /// one sweep of the paths, and a run of folder renames moves theirs in one sweep, as long as none of
    /// the run's paths lies at or beneath another (their order then does not matter). One sweep for each
    /// folder made deleting or moving a thousand folders of a million-file share a billion comparisons.
    public mutating func apply(_ commit: Commit) {
        var deletedFolders: Set<String> = []
        var moves = FolderMoves()
        for operation in commit.operations {
            switch operation.op {
            case .delete:
                move(&moves)
                remove(operation.path, contentsInto: &deletedFolders)
            case .rename:
                removeContents(of: &deletedFolders)
                guard let from = operation.from, from != operation.path else { continue }
                if !moves.isApart(from) || !moves.isApart(operation.path) { move(&moves) }
                if hasItemsBeneath(from) {
                    moves.add(from: from, to: operation.path)
                } else {
                    apply(operation, sequence: commit.sequence)
                }
            case .upsert:
                removeContents(of: &deletedFolders)
                move(&moves)
                apply(operation, sequence: commit.sequence)
            }
        }
        removeContents(of: &deletedFolders)
        move(&moves)
        sequence = commit.sequence
    }

    /// Applies one operation written at `sequence`.
    public mutating func apply(_ operation: NamespaceOperation, sequence: UInt64) {
        switch operation.op {
        case .upsert:
            guard var entry = operation.entry else { return }
            entry.version = entry.contentVersion(committedAt: sequence)
            put(operation.path, entry)
        case .delete:
            var deletedFolders: Set<String> = []
            remove(operation.path, contentsInto: &deletedFolders)
            removeContents(of: &deletedFolders)
        case .rename:
            guard let from = operation.from, from != operation.path else { return }
            if !hasItemsBeneath(from) {
                if let entry = drop(from) { put(operation.path, entry) }
                return
            }
            var moves = FolderMoves()
            moves.add(from: from, to: operation.path)
            move(&moves)
        }
    }

    /// Whether any item lies beneath `path`.
    private mutating func hasItemsBeneath(_ path: String) -> Bool {
        if beneath == nil { countBeneath() }
        return beneath?[path] != nil
    }

    /// Moves every item at or beneath one of `moves`' sources to the same place beneath its target, in
    /// one sweep (replacing what is there), and empties `moves`.
    private mutating func move(_ moves: inout FolderMoves) {
        guard !moves.targets.isEmpty else { return }
        var moved: [(from: String, to: String, entry: NamespaceEntry)] = []
        for (path, entry) in entries {
            if let (source, target) = moves.source(of: path) { moved.append((path, target + path.dropFirst(source.count), entry)) }
        }
        for item in moved { drop(item.from) }
        for item in moved { put(item.to, item.entry) }
        moves = FolderMoves()
    }

    /// Sets the entry at `path`, counting it beneath its folders when they are counted.
    private mutating func put(_ path: String, _ entry: NamespaceEntry) {
        if entries.updateValue(entry, forKey: path) == nil { countAncestors(of: path, by: 1) }
    }

    /// Removes the entry at `path` and returns it.
    @discardableResult
    private mutating func drop(_ path: String) -> NamespaceEntry? {
        let removed = entries.removeValue(forKey: path)
        if removed != nil { countAncestors(of: path, by: -1) }
        return removed
    }

    private mutating func countBeneath() {
        beneath = [:]
        for path in entries.keys { countAncestors(of: path, by: 1) }
    }

    private mutating func countAncestors(of path: String, by change: Int) {
        guard beneath != nil else { return }
        for ancestor in path.folderAncestors {
            let folder = String(ancestor)
            let count = beneath![folder, default: 0] + change
            beneath![folder] = count == 0 ? nil : count
        }
    }

    /// The item at `path` and everything below it.
    public func tree(_ path: String) -> [(String, NamespaceEntry)] {
        let prefix = path + "/"
        return entries.filter { $0.key == path || $0.key.hasPrefix(prefix) }.map { ($0.key, $0.value) }
    }

    /// Removes the item at `path`; a folder's path joins `folders`, whose contents ``removeContents(of:)``
    /// removes.
    private mutating func remove(_ path: String, contentsInto folders: inout Set<String>) {
        // Only a directory has children; a file's delete (the common case) needs no sweep.
        if drop(path)?.kind == .directory { folders.insert(path) }
    }

    /// Removes every item beneath one of `folders`, in one sweep, and empties `folders`.
    private mutating func removeContents(of folders: inout Set<String>) {
        guard !folders.isEmpty else { return }
        // The keys are collected first: removing while iterating `entries.keys` made the first removal copy
        // the whole dictionary, for every deleted folder.
        let doomed: [String]
        if folders.count == 1, let folder = folders.first {
            let prefix = folder + "/"
            doomed = entries.keys.filter { $0.hasPrefix(prefix) }
        } else {
            doomed = entries.keys.filter { folders.containsAncestor(of: $0) }
        }
        for key in doomed { drop(key) }
        folders.removeAll()
    }

    /// Number of files (not directories).
    public var fileCount: Int { entries.values.reduce(0) { $0 + ($1.kind == .file ? 1 : 0) } }
    /// Sum of file sizes.
    public var logicalBytes: Int64 { entries.values.reduce(0) { $0 + ($1.kind == .file ? $1.size : 0) } }
}

extension String {
    /// The folders above this relative path, nearest first: `a/b/c` gives `a/b`, then `a`.
    public var folderAncestors: UnfoldSequence<Substring, Substring> {
        sequence(state: self[...]) { current in
            guard let slash = current.lastIndex(of: "/") else { return nil }
            current = current[..<slash]
            return current
        }
    }
}

extension Set<String> {
    /// True when a proper ancestor folder of the relative `path` is in the set.
    public func containsAncestor(of path: String) -> Bool {
        !isEmpty && path.folderAncestors.contains { contains(String($0)) }
    }
}

/// A run of a commit's folder renames, applied in one sweep by `Namespace.apply`: no path of the run
/// lies at or beneath another of its paths, so each item moves at most once and the order is free.
struct FolderMoves {
    /// Each renamed folder's new path, by its old one.
    private(set) var targets: [String: String] = [:]
    /// Every old and new path of the run.
    private var paths: Set<String> = []
    /// Every folder above one of `paths`.
    private var ancestors: Set<String> = []

    /// Whether `path` is neither at, above nor beneath a path of the run.
    func isApart(_ path: String) -> Bool {
        targets.isEmpty || (!paths.contains(path) && !ancestors.contains(path) && !paths.containsAncestor(of: path))
    }

    mutating func add(from: String, to: String) {
        targets[from] = to
        for path in [from, to] {
            paths.insert(path)
            for folder in path.folderAncestors { ancestors.insert(String(folder)) }
        }
    }

    /// The renamed folder at or above `path`, and its new path.
    func source(of path: String) -> (String, String)? {
        if let target = targets[path] { return (path, target) }
        for ancestor in path.folderAncestors {
            let folder = String(ancestor)
            if let target = targets[folder] { return (folder, target) }
        }
        return nil
    }
}
