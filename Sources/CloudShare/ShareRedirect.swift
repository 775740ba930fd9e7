import Backends
import Foundation

/// Where a share went: written by `tiergate share move` as the last record of the source's log (and as
/// `moved.json` beside it), after every earlier record was copied to the destination. The log's order
/// makes the freeze exact: a writer appends at its cursor + 1 only after applying every record up to its
/// cursor, so whoever meets this record follows it instead of appending after it.
public struct ShareRedirect: Codable, Sendable, Equatable {
    /// The destination store's URL (URLs never carry credentials).
    public var url: String
    /// The share's id, the same in both stores.
    public var shareID: String
    /// The sequence of the last record before the move: the destination's log holds every record up to it.
    public var through: UInt64

    public init(url: String, shareID: String, through: UInt64) {
        self.url = url
        self.shareID = shareID
        self.through = through
    }

    /// The marker object beside the log, for tools and people looking at the old store.
    public static let markerKey = "moved.json"
}

/// A writer or reader met the record that says the share moved: the caller follows the redirect.
public struct ShareMoved: Error, CustomStringConvertible, Sendable {
    /// Where it went.
    public var redirect: ShareRedirect
    /// The store it moved away from (safe to print).
    public var from: String

    public init(_ redirect: ShareRedirect, from: String) {
        self.redirect = redirect
        self.from = from
    }

    public var description: String {
        "the share moved from \(from) to \(StoreLocator.redacted(redirect.url)) after sequence \(redirect.through); nothing is appended to the old store any more"
    }
}
