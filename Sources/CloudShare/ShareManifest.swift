import Foundation

/// The contents of `share.json`: what a reader must know before touching anything else in a share.
public struct ShareManifest: Codable, Sendable, Equatable {
    /// The on-store format this build writes and reads.
    public static let currentFormat = 1
    /// The object key of the manifest.
    public static let key = "share.json"

    /// Content-defined chunking parameters, fixed for the life of a share so that dedup works.
    public struct Chunking: Codable, Sendable, Equatable {
        /// Smallest chunk, in bytes (except a file's last chunk).
        public var minSize: Int
        /// Target average chunk size, a power of two.
        public var averageSize: Int
        /// Largest chunk, in bytes.
        public var maxSize: Int

        /// FastCDC with 256 KiB / 1 MiB / 4 MiB.
        public static let standard = Chunking(minSize: 256 << 10, averageSize: 1 << 20, maxSize: 4 << 20)

        /// Chunking parameters.
        public init(minSize: Int, averageSize: Int, maxSize: Int) {
            self.minSize = minSize
            self.averageSize = averageSize
            self.maxSize = maxSize
        }
    }

    /// Format version; readers refuse versions they do not know.
    public var format: Int
    /// A random id naming this share.
    public var shareID: String
    /// When the share was created (ISO 8601).
    public var created: String
    /// The chunking algorithm and its parameters.
    public var chunker: String
    /// The chunking parameters.
    public var chunking: Chunking
    /// Target pack size in bytes.
    public var packSize: Int

    /// A manifest for a new share.
    public init(chunking: Chunking = .standard, packSize: Int = 16 << 20) {
        format = Self.currentFormat
        shareID = UUID().uuidString.lowercased()
        created = ISO8601DateFormatter().string(from: Date())
        chunker = "fastcdc-2020"
        self.chunking = chunking
        self.packSize = packSize
    }
}
