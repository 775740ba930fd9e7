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
    /// one sweep of the paths: one sweep for each deleted folder made deleting a thousand folders of a
    /// million-file share a billion comparisons.
    public mutating func apply(_ commit: Commit) {
        var deletedFolders: Set<String> = []
        for operation in commit.operations {
            if operation.op == .delete {
                remove(operation.path, contentsInto: &deletedFolders)
                continue
            }
            removeContents(of: &deletedFolders)
            apply(operation, sequence: commit.sequence)
        }
        removeContents(of: &deletedFolders)
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
            if beneath == nil { countBeneath() }
            if beneath?[from] == nil {
                if let entry = drop(from) { put(operation.path, entry) }
                return
            }
            let moved = tree(from)
            for (path, _) in moved { drop(path) }
            for (path, entry) in moved {
                put(operation.path + path.dropFirst(from.count), entry)
            }
        }
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
        var current = Substring(path)
        while let slash = current.lastIndex(of: "/") {
            current = current[..<slash]
            let folder = String(current)
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

extension Set<String> {
    /// True when a proper ancestor folder of the relative `path` is in the set.
    public func containsAncestor(of path: String) -> Bool {
        guard !isEmpty else { return false }
        var current = Substring(path)
        while let slash = current.lastIndex(of: "/") {
            current = current[..<slash]
            if contains(String(current)) { return true }
        }
        return false
    }
}
