import Foundation

/// What one sync pass of an endpoint did; the last one is kept for `tiergate status`.
public struct SyncReport: Codable, Sendable {
    /// The key under which an endpoint's last pass is kept in its state.
    public static let stateKey = "lastSync"

    /// When the pass started (seconds since the epoch).
    public var started: Double = Date().timeIntervalSince1970
    /// Seconds taken.
    public var seconds: Double = 0
    /// Files and directories uploaded (upserts committed).
    public var uploaded = 0
    /// Bytes of file content uploaded (before dedup).
    public var uploadedBytes: Int64 = 0
    /// Renames committed.
    public var renamed = 0
    /// Deletes committed.
    public var deleted = 0
    /// Files written from the share.
    public var downloaded = 0
    /// Bytes written from the share.
    public var downloadedBytes: Int64 = 0
    /// Local files the database did not know that already held the share's content, adopted as synced
    /// without a download (a server seeded from a backup or a copy).
    public var adopted = 0
    /// Stubs created for new cloud files (namespace download).
    public var stubsCreated = 0
    /// Local items removed or moved because of cloud deletes and renames.
    public var appliedRemovals = 0
    /// Conflicts resolved by keeping both versions.
    public var conflicts = 0
    /// Commits appended by this pass.
    public var commits = 0
    /// Items that did not sync this pass.
    public var itemErrors = 0
    /// Appends retried because another server took the sequence number first.
    public var commitRetries = 0
    /// Local items the upload looked at (stat'ed or reported as skipped).
    public var examined = 0
    /// True when the upload walked the whole tree; false when it looked at the change journal's paths.
    public var wholeTree = true
    /// Of a whole walk that held only what differs from the database: the paths it looked at again
    /// (nil: it held every item, as a first upload or a tree changed wholesale does, or no whole walk).
    public var differing: Int?
    /// The log sequence applied at the end.
    public var cursor: UInt64 = 0
    /// `success`, or the error that stopped the pass.
    public var result = "success"

    /// An empty report.
    public init() {}

    /// Decodes a kept report; fields it lacks (written by an older build) keep their defaults.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        func field<T: Decodable>(_ key: CodingKeys, _ fallback: T) throws -> T {
            try container.decodeIfPresent(T.self, forKey: key) ?? fallback
        }
        started = try field(.started, started)
        seconds = try field(.seconds, seconds)
        uploaded = try field(.uploaded, uploaded)
        uploadedBytes = try field(.uploadedBytes, uploadedBytes)
        renamed = try field(.renamed, renamed)
        deleted = try field(.deleted, deleted)
        downloaded = try field(.downloaded, downloaded)
        downloadedBytes = try field(.downloadedBytes, downloadedBytes)
        adopted = try field(.adopted, adopted)
        stubsCreated = try field(.stubsCreated, stubsCreated)
        examined = try field(.examined, examined)
        wholeTree = try field(.wholeTree, wholeTree)
        differing = try container.decodeIfPresent(Int.self, forKey: .differing)
        appliedRemovals = try field(.appliedRemovals, appliedRemovals)
        conflicts = try field(.conflicts, conflicts)
        commits = try field(.commits, commits)
        itemErrors = try field(.itemErrors, itemErrors)
        commitRetries = try field(.commitRetries, commitRetries)
        cursor = try field(.cursor, cursor)
        result = try field(.result, result)
    }

    /// One line for people.
    public var summary: String {
        "sync \(result): uploaded \(uploaded) (\(ByteFormat.string(uploadedBytes))), renamed \(renamed), deleted \(deleted); downloaded \(downloaded) (\(ByteFormat.string(downloadedBytes)))\(stubsCreated > 0 ? ", \(stubsCreated) as stubs" : "")\(adopted > 0 ? ", \(adopted) already here (adopted)" : ""), removed/moved \(appliedRemovals); \(conflicts) conflicts, \(itemErrors) items not syncing; examined \(examined) items (\(wholeTree ? "whole tree" : "changes"))\(differing.map { ", \($0) looked at again" } ?? ""); cursor \(cursor); \(String(format: "%.2f", seconds)) s"
    }
}
