import CRocksDB

/// A failed database operation: what was attempted and why it failed, in RocksDB's words where it gave any.
public struct RocksDBError: Error, CustomStringConvertible, Equatable {
    /// What kind of failure this is; extensible, compare with the static members.
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// RocksDB itself reported an error (I/O, corruption, invalid argument, …).
        public static let rocksdb = Code(rawValue: "rocksdb")
        /// The database was used after `close()`.
        public static let closed = Code(rawValue: "closed")
        /// A column family that this database was not opened with.
        public static let unknownColumnFamily = Code(rawValue: "unknownColumnFamily")
    }

    /// The kind of failure.
    public let code: Code
    /// The operation that failed, e.g. "open /var/lib/tiergate/state" or "put entries".
    public let operation: String
    /// The reason, as RocksDB gave it when it did.
    public let message: String

    /// An error record.
    public init(_ code: Code, operation: String, message: String) {
        self.code = code
        self.operation = operation
        self.message = message
    }

    public var description: String { "RocksDB \(operation) failed: \(message)" }
}

/// Runs a C call that reports failure through a `char** errptr`, and turns a set error into a thrown
/// `RocksDBError` after freeing RocksDB's string.
@inline(__always)
func checked<T>(_ operation: @autoclosure () -> String,
                _ call: (UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> T) throws(RocksDBError) -> T {
    var error: UnsafeMutablePointer<CChar>?
    let result = call(&error)
    if let error {
        let message = String(cString: error)
        rocksdb_free(error)
        throw RocksDBError(.rocksdb, operation: operation(), message: message)
    }
    return result
}
