/// Puts and deletes that `Database.write(_:sync:)` applies atomically: all of them or none.
///
/// The batch is plain Swift data until it is written, so it is `Sendable`, can be built on any thread and
/// never holds a pointer into a database that might close meanwhile.
public struct WriteBatch: Sendable {
    enum Operation: Sendable {
        case put(ColumnFamily, key: [UInt8], value: [UInt8])
        case delete(ColumnFamily, key: [UInt8])
    }

    private(set) var operations: [Operation] = []

    /// An empty batch.
    public init() {}

    /// Sets `key` to `value` in `family` when the batch is written.
    public mutating func put(_ key: [UInt8], _ value: [UInt8], in family: ColumnFamily) {
        operations.append(.put(family, key: key, value: value))
    }

    /// Removes `key` from `family` when the batch is written.
    public mutating func delete(_ key: [UInt8], in family: ColumnFamily) {
        operations.append(.delete(family, key: key))
    }

    /// Number of operations recorded.
    public var count: Int { operations.count }

    /// True when the batch records nothing.
    public var isEmpty: Bool { operations.isEmpty }

    /// Forgets every recorded operation.
    public mutating func removeAll() { operations.removeAll(keepingCapacity: true) }
}
