/// The endpoint's entries as seen while applying one commit: the database plus the changes made so far,
/// so each operation sees the ones before it; flushed into one atomic batch at the end.
struct EntryOverlay {
    let state: LocalState
    let endpoint: UInt32
    private(set) var changes: [String: EntryRecord?] = [:]

    init(state: LocalState, endpoint: UInt32) {
        self.state = state
        self.endpoint = endpoint
    }

    func get(_ path: String) throws -> EntryRecord? {
        if let change = changes[path] { return change }
        return try state.entry(endpoint, path)
    }

    mutating func set(_ path: String, _ record: EntryRecord) { changes[path] = .some(record) }
    mutating func remove(_ path: String) { changes[path] = .some(nil) }

    /// The entry at `path` and every entry below it.
    func subtree(_ path: String) throws -> [String: EntryRecord] {
        var result: [String: EntryRecord] = [:]
        let prefix = path + "/"
        try state.database.scan(state.family(.entries), prefix: LocalState.key(endpoint, prefix)) { key, value in
            if let record = EntryRecord(encoded: value) { result[LocalState.path(fromKey: key)] = record }
            return true
        }
        if let own = try state.entry(endpoint, path) { result[path] = own }
        for (changed, record) in changes where changed == path || changed.hasPrefix(prefix) {
            result[changed] = record
        }
        return result
    }

    /// Moves the entry at `from` and everything below it to `to`.
    mutating func move(from: String, to: String) throws {
        for (path, record) in try subtree(from) {
            remove(path)
            set(to + path.dropFirst(from.count), record)
        }
    }

    /// Removes the entry at `path` and everything below it.
    mutating func removeSubtree(_ path: String) throws {
        for key in try subtree(path).keys { remove(key) }
    }

    func flush(into batch: inout StateBatch) {
        for (path, record) in changes {
            if let record { batch.setEntry(path, record) } else { batch.removeEntry(path) }
        }
    }
}
