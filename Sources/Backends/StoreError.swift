/// An error from an object store, naming the store, the key and the cause.
///
/// `code` tells callers what to do: `notFound` and `alreadyExists` are answers, `transient` may be
/// retried with backoff, everything else is permanent and retrying cannot help.
public struct StoreError: Error, CustomStringConvertible, Sendable {
    /// What kind of failure this is.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private let name: String
        private init(_ name: String) { self.name = name }
        public var description: String { name }

        /// The key does not exist.
        public static let notFound = Code("not found")
        /// `putIfAbsent` lost: the key already exists.
        public static let alreadyExists = Code("already exists")
        /// The key is not a valid object key (empty, `..`, NUL, absolute, …).
        public static let invalidKey = Code("invalid key")
        /// Credentials were refused or missing.
        public static let unauthorized = Code("access denied")
        /// A failure that may succeed when retried (timeouts, 5xx, throttling, dropped connections).
        public static let transient = Code("transient failure")
        /// A failure that retrying cannot fix (bad request, full disk, corrupt response, …).
        public static let permanent = Code("permanent failure")
    }

    /// The kind of failure.
    public var code: Code
    /// The store, as printed by its `displayName`.
    public var store: String
    /// The operation that failed (`get`, `put`, …).
    public var operation: String
    /// The object key involved, if any.
    public var key: String
    /// A sentence describing the cause, never containing secrets.
    public var cause: String

    /// An error naming store, operation, key and cause.
    public init(_ code: Code, store: String, operation: String, key: String, cause: String) {
        self.code = code
        self.store = store
        self.operation = operation
        self.key = key
        self.cause = cause
    }

    /// True when a retry might succeed.
    public var isTransient: Bool { code == .transient }

    public var description: String {
        "\(operation) \(key.isEmpty ? "" : "'\(key)' ")on \(store): \(code): \(cause)"
    }
}

/// Validation of object keys, shared by every store so they all refuse the same keys.
public enum ObjectKey {
    /// The longest key any store accepts (S3's limit).
    public static let maxLength = 1024

    /// Throws `invalidKey` unless `key` is a relative `/`-separated path of non-empty components,
    /// none `.` or `..`, without NUL or control characters.
    public static func validate(_ key: String, store: String, operation: String) throws {
        func fail(_ why: String) -> StoreError {
            StoreError(.invalidKey, store: store, operation: operation, key: key, cause: why)
        }
        if key.isEmpty { throw fail("the key is empty") }
        if key.utf8.count > maxLength { throw fail("the key is longer than \(maxLength) bytes") }
        if key.utf8.contains(where: { $0 < 0x20 || $0 == 0x7f }) { throw fail("the key contains a control character") }
        if key.hasPrefix("/") { throw fail("the key is absolute") }
        for component in key.split(separator: "/", omittingEmptySubsequences: false) {
            if component.isEmpty { throw fail("the key has an empty path component") }
            if component == "." || component == ".." { throw fail("the key has a '\(component)' component") }
        }
    }
}
