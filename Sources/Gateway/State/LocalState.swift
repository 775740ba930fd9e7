import CloudShare
import Foundation
import RocksDB

/// One registered server's local metadata in RocksDB: per endpoint, the synced entries, pending local
/// changes, per-item errors, heat and the log cursor. Keys start with the endpoint's 4-byte id so one
/// database serves every endpoint of the server.
public final class LocalState: Sendable {
    /// The column families, as the design names them.
    public enum Family: String, CaseIterable, Sendable {
        case entries, heat, chunks, pending, errors, state
    }

    let database: Database
    private let families: [Family: ColumnFamily]

    /// Opens (or creates) the database at `path`; `readOnly` opens beside a running daemon without its lock.
    public init(path: String, readOnly: Bool = false) throws {
        var options = Database.Options()
        options.readOnly = readOnly
        options.createIfMissing = !readOnly
        database = try Database(path: path, families: Family.allCases.map(\.rawValue), options: options)
        var families: [Family: ColumnFamily] = [:]
        for family in Family.allCases { families[family] = try database.family(family.rawValue) }
        self.families = families
    }

    /// Closes the database (also done on deinit).
    public func close() { database.close() }

    func family(_ family: Family) -> ColumnFamily { families[family]! }

    /// The key prefix of an endpoint.
    static func prefix(_ endpoint: UInt32) -> [UInt8] {
        withUnsafeBytes(of: endpoint.bigEndian) { Array($0) }
    }

    static func key(_ endpoint: UInt32, _ path: String) -> [UInt8] {
        prefix(endpoint) + Array(path.utf8)
    }

    static func path(fromKey key: [UInt8]) -> String {
        String(decoding: key.dropFirst(4), as: UTF8.self)
    }

    // MARK: Entries

    /// The synced entry at `path`.
    public func entry(_ endpoint: UInt32, _ path: String) throws -> EntryRecord? {
        try database.get(Self.key(endpoint, path), in: family(.entries)).flatMap(EntryRecord.init(encoded:))
    }

    /// Every synced entry of an endpoint, by path; `expecting` (about how many there are) sizes the
    /// dictionary up front.
    public func entries(_ endpoint: UInt32, expecting: Int = 0) throws -> [String: EntryRecord] {
        try entries(keyPrefix: Self.prefix(endpoint), expecting: expecting)
    }

    /// The synced entries beneath the folder `path` (not the folder itself), by path.
    public func entries(_ endpoint: UInt32, under path: String) throws -> [String: EntryRecord] {
        try entries(keyPrefix: Self.key(endpoint, path + "/"))
    }

    private func entries(keyPrefix: [UInt8], expecting: Int = 0) throws -> [String: EntryRecord] {
        var result: [String: EntryRecord] = [:]
        result.reserveCapacity(expecting)
        try scanEntries(keyPrefix: keyPrefix) { path, record in
            result[path] = record
            return true
        }
        return result
    }

    /// Hands every synced entry of an endpoint to `body` in the order of their paths' UTF-8 bytes, holding
    /// none; `body` returns false to stop.
    public func scanEntries(_ endpoint: UInt32, _ body: (String, EntryRecord) throws -> Bool) throws {
        try scanEntries(keyPrefix: Self.prefix(endpoint), body)
    }

    private func scanEntries(keyPrefix: [UInt8], _ body: (String, EntryRecord) throws -> Bool) throws {
        try database.scan(family(.entries), prefix: keyPrefix) { key, value in
            guard let record = EntryRecord(encoded: value) else { return true }
            return try body(Self.path(fromKey: key), record)
        }
    }

    /// Number of entries of an endpoint.
    public func entryCount(_ endpoint: UInt32) throws -> Int {
        try count(.entries, endpoint)
    }

    /// Number of keys an endpoint has in `family`.
    func count(_ family: Family, _ endpoint: UInt32) throws -> Int {
        var count = 0
        try database.scan(self.family(family), prefix: Self.prefix(endpoint)) { _, _ in
            count += 1
            return true
        }
        return count
    }

    // MARK: Cursor and small state

    /// The last log sequence number the endpoint applied.
    public func cursor(_ endpoint: UInt32) throws -> UInt64 {
        guard let bytes = try database.get(Self.key(endpoint, "cursor"), in: family(.state)), bytes.count == 8 else { return 0 }
        return bytes.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
    }

    /// The id of the log record at the cursor, as applied here (nil when recorded by an older build).
    public func cursorRecord(_ endpoint: UInt32) throws -> String? {
        try database.get(Self.key(endpoint, "cursorRecord"), in: family(.state)).map { String(decoding: $0, as: UTF8.self) }
    }

    /// A JSON value kept in the state family (last sync result, policies, …).
    public func value<T: Decodable>(_ type: T.Type, _ endpoint: UInt32, _ name: String) throws -> T? {
        guard let bytes = try database.get(Self.key(endpoint, name), in: family(.state)) else { return nil }
        return try? JSONDecoder().decode(T.self, from: Data(bytes))
    }

    /// Stores a JSON value in the state family.
    public func setValue<T: Encodable>(_ value: T, _ endpoint: UInt32, _ name: String, sync: Bool = false) throws {
        try database.put(Self.key(endpoint, name), Array(JSONEncoder().encode(value)), in: family(.state), sync: sync)
    }

    // MARK: Errors and pending

    /// The per-item errors ("files not syncing") of an endpoint.
    public func errors(_ endpoint: UInt32) throws -> [ItemError] {
        var result: [ItemError] = []
        try database.scan(family(.errors), prefix: Self.prefix(endpoint)) { _, value in
            if let error = try? JSONDecoder().decode(ItemError.self, from: Data(value)) { result.append(error) }
            return true
        }
        return result
    }

    /// Number of pending local changes of an endpoint.
    public func pendingCount(_ endpoint: UInt32) throws -> Int {
        try count(.pending, endpoint)
    }

    /// The paths with a pending mark (local changes reported by the mount, not committed yet).
    public func pendingPaths(_ endpoint: UInt32) throws -> [String] {
        var result: [String] = []
        try database.scan(family(.pending), prefix: Self.prefix(endpoint)) { key, _ in
            result.append(Self.path(fromKey: key))
            return true
        }
        return result
    }

    /// Removes everything the database holds for an endpoint.
    public func removeEndpoint(_ endpoint: UInt32) throws {
        var batch = WriteBatch()
        for family in Family.allCases {
            try database.scan(self.family(family), prefix: Self.prefix(endpoint)) { key, _ in
                batch.delete(key, in: self.family(family))
                return true
            }
        }
        try database.write(batch, sync: true)
    }

    /// Starts a batch of changes for one endpoint, applied atomically by ``commit(_:sync:)``.
    public func batch(_ endpoint: UInt32) -> StateBatch {
        StateBatch(state: self, endpoint: endpoint)
    }

    /// Applies a batch atomically; `sync` makes it durable before returning.
    public func commit(_ batch: StateBatch, sync: Bool) throws {
        try database.write(batch.batch, sync: sync)
    }

    /// On-disk size of the database in bytes after compacting it.
    public func compactedSize() throws -> Int {
        for family in Family.allCases { try database.compactRange(in: self.family(family)) }
        return try database.diskSize()
    }
}

/// Changes to one endpoint's state, applied atomically.
public struct StateBatch: Sendable {
    let state: LocalState
    let endpoint: UInt32
    var batch = WriteBatch()

    /// Sets the entry at `path`.
    public mutating func setEntry(_ path: String, _ record: EntryRecord) {
        batch.put(LocalState.key(endpoint, path), record.encoded, in: state.family(.entries))
    }

    /// Removes the entry at `path`.
    public mutating func removeEntry(_ path: String) {
        batch.delete(LocalState.key(endpoint, path), in: state.family(.entries))
    }

    /// Sets the cursor, with the id of the log record at it (`record`; empty before the first record).
    public mutating func setCursor(_ sequence: UInt64, record: String) {
        batch.put(LocalState.key(endpoint, "cursor"), withUnsafeBytes(of: sequence.littleEndian) { Array($0) }, in: state.family(.state))
        batch.put(LocalState.key(endpoint, "cursorRecord"), Array(record.utf8), in: state.family(.state))
    }

    /// Stores a JSON value in the state family (see ``LocalState/value(_:_:_:)``).
    public mutating func setValue<T: Encodable>(_ value: T, _ name: String) {
        batch.put(LocalState.key(endpoint, name), Array((try? JSONEncoder().encode(value)) ?? Data()), in: state.family(.state))
    }

    /// Records the chunk list of the file `fileID` (what a stub recalls).
    public mutating func setLayout(_ fileID: String, _ chunks: [ChunkRef]) {
        batch.put(LocalState.key(endpoint, fileID), RecallEngine.encodeLayout(chunks), in: state.family(.chunks))
    }

    /// Records or refreshes a per-item error.
    public mutating func setError(_ error: ItemError) {
        batch.put(LocalState.key(endpoint, error.path), Array((try? JSONEncoder().encode(error)) ?? Data()), in: state.family(.errors))
    }

    /// Clears a per-item error.
    public mutating func clearError(_ path: String) {
        batch.delete(LocalState.key(endpoint, path), in: state.family(.errors))
    }

    /// Marks a local change as pending.
    public mutating func setPending(_ path: String) {
        batch.put(LocalState.key(endpoint, path), [1], in: state.family(.pending))
    }

    /// Clears a pending mark.
    public mutating func clearPending(_ path: String) {
        batch.delete(LocalState.key(endpoint, path), in: state.family(.pending))
    }

    /// True when nothing was added.
    public var isEmpty: Bool { batch.isEmpty }

    /// Changes in the batch.
    public var count: Int { batch.count }
}

/// One item that does not sync: the "files not syncing" list.
public struct ItemError: Codable, Sendable, Equatable {
    /// The item's path relative to the endpoint root.
    public var path: String
    /// Why it does not sync.
    public var reason: String
    /// `skipped` (never synced by rule), `upload`, `download` or `conflict`.
    public var kind: String
    /// When the error was first seen (seconds since the epoch).
    public var firstSeen: Double
    /// When it was last seen.
    public var lastSeen: Double
    /// How many passes have hit it.
    public var attempts: Int
}
