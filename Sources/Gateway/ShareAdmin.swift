import Backends
import Chunking
import CloudShare
import Foundation

/// Creating and inspecting cloud shares (`tiergate share …`).
public enum ShareAdmin {
    /// Creates a share at `url` with the given chunking and pack sizes.
    public static func create(url: String, minChunk: Int, averageChunk: Int, maxChunk: Int, packSize: Int) async throws -> ShareManifest {
        let chunking = try ChunkingParameters(minSize: minChunk, averageSize: averageChunk, maxSize: maxChunk)
        let store = try StoreLocator.open(url)
        return try await CloudShare.create(in: store, manifest: ShareManifest(chunking: chunking, packSize: packSize)).manifest
    }

    /// `url` safe to print or log, credentials masked: the CLI's door to ``StoreLocator/redacted(_:)``,
    /// the one URL redactor.
    public static func printable(_ url: String) -> String { StoreLocator.redacted(url) }

    /// Opens the share at `url`.
    public static func open(url: String) async throws -> CloudShare {
        try await CloudShare.open(StoreLocator.open(url))
    }

    /// Figures about the share at `url`.
    public static func info(url: String) async throws -> ShareInfo {
        try await open(url: url).info()
    }

    /// Human-readable lines for `share info`.
    public static func describe(_ info: ShareInfo) -> String {
        let chunking = info.manifest.chunking
        let damaged = info.damagedIndexSegments == 0 ? "" : """

        damaged:      \(info.damagedIndexSegments) index segments (their packs' trailers are read instead; `tiergate share verify --repair` rebuilds them)
        """
        return """
        share:        \(StoreLocator.redacted(info.share))
        format:       \(info.manifest.format) (id \(info.manifest.shareID), created \(info.manifest.created))
        chunking:     \(info.manifest.chunker) min \(ByteFormat.string(chunking.minSize)) / avg \(ByteFormat.string(chunking.averageSize)) / max \(ByteFormat.string(chunking.maxSize))
        pack size:    \(ByteFormat.string(info.manifest.packSize))
        log head:     \(info.headSequence)
        namespace:    \(info.files) files, \(info.directories) directories
        packs:        \(info.packs)
        chunks:       \(info.chunks)
        logical:      \(ByteFormat.string(info.logicalBytes)) (\(info.logicalBytes) bytes)
        stored:       \(ByteFormat.string(info.storedBytes)) (\(info.storedBytes) bytes)
        dedup ratio:  \(String(format: "%.2f", info.dedupRatio))\(damaged)
        """
    }

    /// JSON for `share info --json`.
    public static func json(_ info: ShareInfo) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        var object = try JSONSerialization.jsonObject(with: encoder.encode(info)) as! [String: Any]
        object["share"] = StoreLocator.redacted(info.share)
        object["dedupRatio"] = info.dedupRatio
        return String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys]), as: UTF8.self)
    }
}

/// Byte counts for people: 1.5 MiB, 312 KiB.
public enum ByteFormat {
    /// `count` in the largest binary unit that keeps it ≥ 1.
    public static func string<T: BinaryInteger>(_ count: T) -> String {
        var value = Double(count)
        for unit in ["B", "KiB", "MiB", "GiB", "TiB"] {
            if abs(value) < 1024 || unit == "TiB" {
                return unit == "B" ? "\(count) B" : String(format: "%.1f %@", value, unit)
            }
            value /= 1024
        }
        return "\(count) B"
    }
}

/// A byte rate given on the command line: `10M`, `512K`, `1.5G` (bytes per second, powers of 1,000 like
/// network links; a bare number is bytes per second).
public enum ByteRate {
    /// Parses `text`; nil when it is not a positive rate.
    public static func parse(_ text: String) -> Int64? {
        var digits = text.trimmingCharacters(in: .whitespaces)
        if digits.hasSuffix("/s") { digits.removeLast(2) }
        if digits.hasSuffix("B") || digits.hasSuffix("b") { digits.removeLast() }
        let units: [Character: Double] = ["K": 1e3, "k": 1e3, "M": 1e6, "m": 1e6, "G": 1e9, "g": 1e9]
        var factor = 1.0
        if let last = digits.last, let unit = units[last] {
            factor = unit
            digits.removeLast()
        }
        guard let value = Double(digits), value > 0, value * factor >= 1, value * factor < 1e15 else { return nil }
        return Int64(value * factor)
    }
}
