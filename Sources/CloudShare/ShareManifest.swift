import Chunking
import Foundation

/// The contents of `share.json`: what a reader must know before touching anything else in a share.
public struct ShareManifest: Codable, Sendable, Equatable {
    /// The on-store format this build writes for new shares: 2 (commit records in binary). Shares of
    /// format 1 (JSON commit records) are read and written as they are.
    public static let currentFormat = 2
    /// The formats this build reads.
    public static let readableFormats = 1...2
    /// The object key of the manifest.
    public static let key = "share.json"

    /// Format version; readers refuse versions they do not know.
    public var format: Int
    /// A random id naming this share.
    public var shareID: String
    /// When the share was created (ISO 8601).
    public var created: String
    /// The chunking algorithm and its parameters.
    public var chunker: String
    /// The chunking parameters.
    public var chunking: ChunkingParameters
    /// Target pack size in bytes.
    public var packSize: Int
    /// Commits between snapshots of the namespace (log compaction); nil: ``defaultSnapshotInterval``.
    /// Absent from shares created before it existed; builds that do not know it ignore it.
    public var snapshotInterval: UInt64?

    /// The snapshot interval of shares that do not set one.
    public static let defaultSnapshotInterval: UInt64 = 1000

    /// A manifest for a new share.
    public init(chunking: ChunkingParameters = .standard, packSize: Int = 16 << 20, snapshotInterval: UInt64? = nil) {
        self.snapshotInterval = snapshotInterval
        format = Self.currentFormat
        shareID = UUID().uuidString.lowercased()
        created = ISO8601DateFormatter().string(from: Date())
        chunker = "fastcdc-2020"
        self.chunking = chunking
        self.packSize = packSize
    }
}
