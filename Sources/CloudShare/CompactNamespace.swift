import Hashing

/// The namespace reduced to what the garbage collector's mark needs while it replays the log under a
/// retention policy: for each path its kind and, for a file whose chunks are not in the mark yet, their
/// ids. No file ids, sizes, times, fingerprints or ACLs: about a tenth of a ``Namespace``'s memory.
///
/// Paths are held as a tree of their `/`-separated components, so that deleting or renaming a folder
/// touches that folder's items alone, not every path of the share. Operations apply exactly as
/// ``Namespace/apply(_:sequence:)`` applies them, which treats paths as strings: an upsert replaces the item
/// at its path only (a file upserted over a folder leaves the items below that path), deleting a file
/// leaves the items below its path, deleting a folder removes everything below it, and a rename moves the
/// item and everything below it, replacing only the items that were at the same new paths.
final class CompactNamespace: Decodable {
    /// What the mark keeps of one item.
    enum Item {
        /// A directory.
        case directory
        /// A file of one chunk that is not in the mark yet (the common case: no array to allocate).
        case file(Digest32)
        /// A file of zero or several chunks that are not in the mark yet.
        case fileOfChunks([Digest32])
        /// A file whose chunks are in the mark already.
        case markedFile
    }

    /// One path: its item, if the namespace has one there, and the paths one component below it. A node
    /// with neither is removed, so that a path is in the tree exactly when an item is at it or below it.
    final class Node {
        var item: Item?
        var children: [String: Node] = [:]

        var isEmpty: Bool { item == nil && children.isEmpty }
    }

    /// Parent of the first components of every path (the path `""` is its child `""`).
    private let root = Node()

    /// The sequence of the snapshot this was decoded from (0: an empty namespace).
    let sequence: UInt64

    /// An empty namespace.
    init() { sequence = 0 }

    /// The namespace of a snapshot (a JSON-encoded ``Namespace``), decoded one entry at a time: every
    /// entry is checked as ``Namespace`` decoding checks it, and only what the mark needs is kept.
    init(from decoder: any Decoder) throws {
        let snapshot = try decoder.container(keyedBy: SnapshotKey.self)
        sequence = try snapshot.decode(UInt64.self, forKey: .sequence)
        let entries = try snapshot.nestedContainer(keyedBy: PathKey.self, forKey: .entries)
        for path in entries.allKeys {
            var unused = ChunkMark()
            upsert(path.stringValue, try entries.decode(NamespaceEntry.self, forKey: path), marksUpserts: false, mark: &unused)
        }
    }

    /// The keys of a snapshot, as ``Namespace`` encodes them.
    private enum SnapshotKey: String, CodingKey { case entries, sequence }

    /// A path, as a key of a snapshot's entries.
    private struct PathKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    /// Applies one commit's operations in order. With `marksUpserts`, the chunks of the files it upserts
    /// go into `mark` as they are applied (also those of a file a later operation of the same commit
    /// replaces, as the replay has always done), and the files are held without them.
    func apply(_ commit: Commit, marksUpserts: Bool, mark: inout ChunkMark) {
        for operation in commit.operations { apply(operation, marksUpserts: marksUpserts, mark: &mark) }
    }

    /// Applies one operation (see ``apply(_:marksUpserts:mark:)``).
    func apply(_ operation: NamespaceOperation, marksUpserts: Bool, mark: inout ChunkMark) {
        switch operation.op {
        case .upsert:
            guard let entry = operation.entry else { return }
            upsert(operation.path, entry, marksUpserts: marksUpserts, mark: &mark)
        case .delete:
            let names = Self.components(operation.path)
            guard let chain = chain(names), let node = chain.last, let item = node.item else { return }
            node.item = nil
            // Only a directory has items below it in the namespace's sense; a file's stay.
            if case .directory = item { node.children = [:] }
            prune(chain, names, from: names.count)
        case .rename:
            guard let from = operation.from, from != operation.path else { return }
            let names = Self.components(from)
            guard let chain = chain(names), let moved = chain.last else { return }
            chain[chain.count - 2].children[String(names[names.count - 1])] = nil
            prune(chain, names, from: names.count - 1)
            let target = Self.components(operation.path)
            let parent = node(at: target.dropLast())
            let name = String(target[target.count - 1])
            if let existing = parent.children[name] {
                merge(moved, into: existing)
            } else {
                parent.children[name] = moved
            }
        }
    }

    /// Puts the chunks of every file not marked yet into `mark` (the whole namespace is then in it), and
    /// holds those files without them.
    func markAll(into mark: inout ChunkMark) {
        mark.reserveCapacity(mark.count + unmarkedChunkCount)
        forEachNode { node in
            switch node.item {
            case .file(let id): mark.insert(id)
            case .fileOfChunks(let ids): mark.formUnion(ids)
            case .directory, .markedFile, nil: return
            }
            node.item = .markedFile
        }
    }

    /// Chunk references of the files not marked yet (a chunk two files share counts twice).
    var unmarkedChunkCount: Int {
        var count = 0
        forEachNode { node in
            switch node.item {
            case .file: count += 1
            case .fileOfChunks(let ids): count += ids.count
            case .directory, .markedFile, nil: break
            }
        }
        return count
    }

    /// The items, by path (for tests: the tree is walked, not kept as paths).
    var items: [String: Item] {
        var items: [String: Item] = [:]
        var stack: [(path: String?, node: Node)] = [(nil, root)]
        while let (path, node) = stack.popLast() {
            if let path, let item = node.item { items[path] = item }
            for (name, child) in node.children { stack.append((path.map { $0 + "/" + name } ?? name, child)) }
        }
        return items
    }

    private func upsert(_ path: String, _ entry: NamespaceEntry, marksUpserts: Bool, mark: inout ChunkMark) {
        let item: Item
        if entry.kind == .directory {
            item = .directory
        } else if marksUpserts {
            mark.formUnion(entry.chunks.lazy.map(\.id))
            item = .markedFile
        } else if entry.chunks.count == 1 {
            item = .file(entry.chunks[0].id)
        } else {
            item = .fileOfChunks(entry.chunks.map(\.id))
        }
        node(at: Self.components(path)[...]).item = item
    }

    /// A path's components. Splitting every path at each `/` (empty components kept) makes "`q` starts
    /// with `p + "/"`", the namespace's "below", the same as "`q`'s components start with `p`'s".
    private static func components(_ path: String) -> [Substring] {
        path.split(separator: "/", omittingEmptySubsequences: false)
    }

    /// The nodes from the root to the one at `names`, or nil when nothing is at or below that path.
    private func chain(_ names: [Substring]) -> [Node]? {
        var chain = [root]
        chain.reserveCapacity(names.count + 1)
        for name in names {
            guard let next = chain[chain.count - 1].children[String(name)] else { return nil }
            chain.append(next)
        }
        return chain
    }

    /// The node at `names`, made (with the nodes above it) when missing; the caller gives it an item or children.
    private func node(at names: ArraySlice<Substring>) -> Node {
        var node = root
        for name in names {
            let key = String(name)
            if let next = node.children[key] {
                node = next
            } else {
                let next = Node()
                node.children[key] = next
                node = next
            }
        }
        return node
    }

    /// Removes the empty nodes of `chain` (the nodes from the root along `names`) from `index` up.
    private func prune(_ chain: [Node], _ names: [Substring], from index: Int) {
        var index = index
        while index >= 1, chain[index].isEmpty {
            chain[index - 1].children[String(names[index - 1])] = nil
            index -= 1
        }
    }

    /// Sets the items of `source`'s tree at the same places below `target`, keeping `target`'s others.
    private func merge(_ source: Node, into target: Node) {
        if let item = source.item { target.item = item }
        for (name, child) in source.children {
            if let existing = target.children[name] {
                merge(child, into: existing)
            } else {
                target.children[name] = child
            }
        }
    }

    private func forEachNode(_ body: (Node) -> Void) {
        var stack = [root]
        while let node = stack.popLast() {
            body(node)
            stack.append(contentsOf: node.children.values)
        }
    }
}
