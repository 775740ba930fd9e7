/// The state of a share's files and directories at one log sequence number: the result of applying
/// every commit up to `sequence` in order. Snapshots store it; `share info` and downloads read it.
public struct Namespace: Codable, Sendable {
    /// Items by path.
    public var entries: [String: NamespaceEntry] = [:]
    /// The last commit applied.
    public var sequence: UInt64 = 0

    /// An empty namespace.
    public init() {}

    /// Applies one commit's operations in order.
    public mutating func apply(_ commit: Commit) {
        for operation in commit.operations {
            apply(operation, sequence: commit.sequence)
        }
        sequence = commit.sequence
    }

    /// Applies one operation written at `sequence`.
    public mutating func apply(_ operation: NamespaceOperation, sequence: UInt64) {
        switch operation.op {
        case .upsert:
            guard var entry = operation.entry else { return }
            entry.version = entry.contentVersion(committedAt: sequence)
            entries[operation.path] = entry
        case .delete:
            removeTree(operation.path)
        case .rename:
            guard let from = operation.from, from != operation.path else { return }
            let moved = tree(from)
            for (path, _) in moved { entries[path] = nil }
            for (path, entry) in moved {
                entries[operation.path + path.dropFirst(from.count)] = entry
            }
        }
    }

    /// The item at `path` and everything below it.
    public func tree(_ path: String) -> [(String, NamespaceEntry)] {
        let prefix = path + "/"
        return entries.filter { $0.key == path || $0.key.hasPrefix(prefix) }.map { ($0.key, $0.value) }
    }

    private mutating func removeTree(_ path: String) {
        // Only a directory has children; skip the scan for files (the common case).
        guard let removed = entries.removeValue(forKey: path), removed.kind == .directory else { return }
        let prefix = path + "/"
        // The keys are collected first: removing while iterating `entries.keys` made the first removal copy
        // the whole dictionary, for every deleted folder.
        for key in entries.keys.filter({ $0.hasPrefix(prefix) }) { entries[key] = nil }
    }

    /// Number of files (not directories).
    public var fileCount: Int { entries.values.reduce(0) { $0 + ($1.kind == .file ? 1 : 0) } }
    /// Sum of file sizes.
    public var logicalBytes: Int64 { entries.values.reduce(0) { $0 + ($1.kind == .file ? $1.size : 0) } }
}
