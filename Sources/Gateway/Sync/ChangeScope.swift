import CloudShare

/// What part of an endpoint's tree a sync pass looks at for local changes.
public enum ChangeScope: Sendable {
    /// The whole tree: the first pass, the safety net, and whenever the change journal may have missed
    /// something (an event queue overflow, watches the kernel refused).
    case everything
    /// Only what the change journal reported.
    case changes(ChangeSet)
}

/// Paths the change journal reported as changed since the last pass, relative to the endpoint root.
public struct ChangeSet: Sendable, Equatable {
    /// Items to look at again: each is stat'ed (its folder listed), and a folder among them is looked at
    /// itself, not its contents.
    public private(set) var paths: Set<String> = []
    /// Folders to walk whole: created or moved in, so nothing inside them was reported one by one.
    public private(set) var subtrees: Set<String> = []

    public init() {}

    /// True when nothing changed.
    public var isEmpty: Bool { paths.isEmpty && subtrees.isEmpty }

    /// How many paths it holds.
    public var count: Int { paths.count + subtrees.count }

    /// Records a change to the item at `path`; its folder changed too (a folder's time moves with its
    /// entries), so it is looked at as well.
    public mutating func changed(_ path: String) {
        guard !path.isEmpty else { return }
        paths.insert(path)
        if let slash = path.lastIndex(of: "/") { paths.insert(String(path[..<slash])) }
    }

    /// Records a folder created or moved in at `path`: everything beneath it is looked at.
    public mutating func arrived(_ path: String) {
        changed(path)
        subtrees.insert(path)
    }

    /// Adds what `other` holds.
    public mutating func formUnion(_ other: ChangeSet) {
        paths.formUnion(other.paths)
        subtrees.formUnion(other.subtrees)
    }

    /// The paths to look at, without those beneath a folder that is walked whole.
    public var roots: Set<String> {
        paths.union(subtrees).filter { !subtrees.containsAncestor(of: $0) }
    }
}
