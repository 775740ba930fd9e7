import Backends

/// An error in a cloud share's content or use, naming the share and the object involved.
public struct ShareError: Error, CustomStringConvertible, Sendable {
    /// What went wrong.
    public enum Code: Sendable, Equatable {
        /// `share.json` is missing: no share at this URL.
        case noShare
        /// A share already exists where one was to be created.
        case shareExists
        /// The share's format version is newer or older than this build understands.
        case unsupportedFormat
        /// An object's bytes do not match their checksum or structure.
        case corrupt
        /// A chunk the namespace refers to is not in any pack.
        case missingChunk
        /// The commit log is inconsistent (a gap, an unreadable record).
        case badLog
    }

    /// What went wrong.
    public var code: Code
    /// The share, as its store prints it.
    public var share: String
    /// The object (pack, index segment, log record, chunk) involved.
    public var object: String
    /// A sentence saying what is wrong.
    public var cause: String

    /// An error naming `share`, `object` and `cause`.
    public init(_ code: Code, share: String, object: String, cause: String) {
        self.code = code
        self.share = share
        self.object = object
        self.cause = cause
    }

    public var description: String { "\(share): \(object): \(cause)" }
}
