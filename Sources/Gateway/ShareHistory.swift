import Backends
import CloudShare
import Foundation
import Hashing

/// The versions of one path in a share's log (`tiergate share history`): every commit that created,
/// changed, renamed or deleted the item at that path, with its sequence (what `get --at` takes), time,
/// author and size. The path is followed by name, as a folder's "previous versions" are.
public enum ShareHistory {
    /// One change of the item at the path.
    public struct Version: Codable, Sendable, Equatable {
        /// The commit's sequence: `tiergate get URL DIR --at SEQUENCE --path PATH` restores the item as it was after it.
        public var sequence: UInt64
        /// When the commit was written (seconds since the epoch, its author's clock); nil for the item as it
        /// was where the share's history begins, when log compaction deleted the records before it.
        public var time: Double?
        /// The server that wrote it (its name; `cloud` edits have their own).
        public var author: String
        /// `created`, `modified`, `deleted`, `renamed from OTHER` or `renamed to OTHER`; ``ShareHistory/atBase``
        /// for the item as it was where the share's history begins (its older versions were compacted away).
        public var change: String
        /// The file's size after the change (nil for folders and deletions).
        public var size: Int64?
        /// Whether every chunk of this version is still stored, so `get --at` can restore it; false once
        /// the garbage collector removed one (the version is outside the share's retention); nil for
        /// folders and deletions.
        public var restorable: Bool?
        /// The chunks of this version of a file, to decide ``restorable``.
        var chunks: [Digest32] = []

        enum CodingKeys: String, CodingKey { case sequence, time, author, change, size, restorable }
    }

    /// The change of the first version listed when the share's history begins after the first commit.
    public static let atBase = "present where the share's history begins (older versions are outside its retention)"

    /// The versions of `path` in the share at `url`, oldest first, from where the share's history begins.
    public static func versions(of path: String, url: String) async throws -> [Version] {
        let share = try await CloudShare.open(try StoreLocator.open(url))
        let start = try await share.historyStart()
        var versions = versions(of: path, from: start, in: try await share.log.records(after: start.sequence))
        let missing = try await share.unstoredChunks(Set(versions.flatMap(\.chunks)))
        for index in versions.indices where versions[index].size != nil {
            versions[index].restorable = !versions[index].chunks.contains(where: missing.contains)
        }
        return versions
    }

    /// The versions of `path` made by `commits` (the log after `start`, in order), the item in `start` first.
    static func versions(of path: String, from start: Namespace, in commits: [Commit]) -> [Version] {
        var namespace = start
        var versions: [Version] = []
        if start.sequence > 0, let entry = start.entries[path] {
            versions.append(Version(sequence: start.sequence, time: nil, author: "", change: atBase, size: entry.kind == .file ? entry.size : nil,
                                    chunks: entry.kind == .file ? entry.chunks.map(\.id) : []))
        }
        for commit in commits {
            let before = namespace.entries[path]
            namespace.apply(commit)
            let after = namespace.entries[path]
            guard before != after else { continue }
            var change: String
            switch (before, after) {
            case (nil, _): change = "created"
            case (_, nil): change = "deleted"
            default: change = "modified"
            }
            // A rename of the item, or of a folder above it, names where it came from or went.
            for operation in commit.operations where operation.op == .rename {
                guard let from = operation.from else { continue }
                if after != nil, let old = moved(path, from: operation.path, to: from) { change = "renamed from \(old)" }
                if after == nil, let new = moved(path, from: from, to: operation.path) { change = "renamed to \(new)" }
            }
            versions.append(Version(sequence: commit.sequence, time: commit.time, author: commit.authorName, change: change,
                                    size: after.flatMap { $0.kind == .file ? $0.size : nil },
                                    chunks: after.map { $0.kind == .file ? $0.chunks.map(\.id) : [] } ?? []))
        }
        return versions
    }

    /// `path` with its prefix `from` replaced by `to`, when `path` is `from` or lies below it.
    private static func moved(_ path: String, from: String, to: String) -> String? {
        guard path == from || path.hasPrefix(from + "/") else { return nil }
        return to + path.dropFirst(from.count)
    }
}
