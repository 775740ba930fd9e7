import CloudShare

/// Operations of applied commits that could not be carried out locally (a download that failed, a
/// parent in the way, a refused write): the cursor moves past their commit, and they are retried at the
/// start of every download until they apply or a newer operation on the same path supersedes them.
/// While one is pending, the upload leaves its paths alone, so stale local bytes are never committed
/// over the share's newer version and a missing item is never taken for a local delete.
struct DeferredOperations: Codable, Sendable {
    /// One operation and the commit it came from.
    struct Item: Codable, Sendable {
        var sequence: UInt64
        var authorName: String
        var operation: NamespaceOperation
    }

    /// The state key they are kept under (written in the same batch as the cursor).
    static let stateKey = "deferredOperations"

    private(set) var items: [Item] = []

    /// Every item's path and rename source, with their ancestors: an operation on none of them supersedes
    /// nothing, so applying a large commit beside many pending items (a full disk) costs a lookup per
    /// operation, not a scan of the items. Made when first needed, dropped when the items change.
    private var touched: Set<String>?

    private enum CodingKeys: String, CodingKey { case items }

    var isEmpty: Bool { items.isEmpty }

    /// The sequence of the oldest pending operation.
    var oldestSequence: UInt64? { items.map(\.sequence).min() }

    mutating func add(_ operation: NamespaceOperation, of commit: Commit) {
        items.append(Item(sequence: commit.sequence, authorName: commit.authorName, operation: operation))
        touched = nil
    }

    /// Takes every item out, grouped into one commit per source sequence, in log order.
    mutating func takeCommits() -> [Commit] {
        var commits: [Commit] = []
        for item in items.sorted(by: { $0.sequence < $1.sequence }) {
            if commits.last?.sequence != item.sequence {
                var commit = Commit(author: "deferred", authorName: item.authorName, operations: [])
                commit.sequence = item.sequence
                commits.append(commit)
            }
            commits[commits.count - 1].operations.append(item.operation)
        }
        items = []
        touched = nil
        return commits
    }

    /// A newer operation on the same paths decides them instead: an upsert or delete of a path drops
    /// what was pending at (or, for a delete, below) it; a rename carries pending items along.
    mutating func supersede(by operation: NamespaceOperation) {
        guard !items.isEmpty else { return }
        if touched == nil {
            var paths: Set<String> = []
            for item in items {
                for path in [item.operation.path] + (item.operation.from.map { [$0] } ?? []) {
                    var current = Substring(path)
                    while paths.insert(String(current)).inserted, let slash = current.lastIndex(of: "/") { current = current[..<slash] }
                }
            }
            touched = paths
        }
        // An upsert, delete or rename acts on items at or below its path (or rename source) only.
        guard touched!.contains(operation.path) || operation.from.map({ touched!.contains($0) }) == true else { return }
        touched = nil
        switch operation.op {
        case .upsert:
            items.removeAll { $0.operation.path == operation.path && $0.operation.op != .rename }
        case .delete:
            items.removeAll { Self.isWithin($0.operation.path, operation.path) || $0.operation.from.map { Self.isWithin($0, operation.path) } == true }
        case .rename:
            guard let from = operation.from else { return }
            for index in items.indices {
                if Self.isWithin(items[index].operation.path, from) {
                    items[index].operation.path = operation.path + items[index].operation.path.dropFirst(from.count)
                }
                if let source = items[index].operation.from, Self.isWithin(source, from) {
                    items[index].operation.from = operation.path + source.dropFirst(from.count)
                }
            }
        }
    }

    /// The paths the upload must leave alone: every pending item's path and rename source.
    var paths: Set<String> {
        Set(items.flatMap { [$0.operation.path] + ($0.operation.from.map { [$0] } ?? []) })
    }

    /// True when `path` is `root` or lies below it.
    static func isWithin(_ path: String, _ root: String) -> Bool {
        path == root || path.hasPrefix(root + "/")
    }

    /// True when `path` or one of its ancestors is in `paths`.
    static func covers(_ paths: Set<String>, _ path: String) -> Bool {
        !paths.isEmpty && (paths.contains(path) || paths.containsAncestor(of: path))
    }
}
