/// The sizes that define content-defined chunking for one cloud share.
///
/// They are recorded in `share.json` and never change for the life of a share: two endpoints
/// only deduplicate against each other when they cut with the same parameters.
public struct ChunkingParameters: Codable, Sendable, Hashable, CustomStringConvertible {
    /// Smallest chunk, in bytes (a file's last chunk may be smaller).
    public let minSize: Int
    /// Target average chunk size in bytes; a power of two.
    public let averageSize: Int
    /// Largest chunk, in bytes.
    public let maxSize: Int

    /// Smallest `minSize` accepted: below this the gear hash has too short a window to be content-defined.
    public static let minimumMinSize = 64
    /// Largest `maxSize` accepted, so that a stream's buffer stays a sane allocation.
    public static let maximumMaxSize = 256 << 20

    /// The defaults from the design: 256 KiB / 1 MiB / 4 MiB.
    public static let standard = ChunkingParameters(unchecked: 256 << 10, 1 << 20, 4 << 20)

    /// Validated parameters; throws `ChunkingError.invalidParameters` with a sentence saying what is wrong.
    public init(minSize: Int, averageSize: Int, maxSize: Int) throws(ChunkingError) {
        if let problem = Self.problem(minSize: minSize, averageSize: averageSize, maxSize: maxSize) {
            throw .invalidParameters(problem)
        }
        self.init(unchecked: minSize, averageSize, maxSize)
    }

    private init(unchecked minSize: Int, _ averageSize: Int, _ maxSize: Int) {
        self.minSize = minSize
        self.averageSize = averageSize
        self.maxSize = maxSize
    }

    /// Decoding validates too: a share.json with impossible sizes is refused, not chunked with.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let minSize = try container.decode(Int.self, forKey: .minSize)
        let averageSize = try container.decode(Int.self, forKey: .averageSize)
        let maxSize = try container.decode(Int.self, forKey: .maxSize)
        if let problem = Self.problem(minSize: minSize, averageSize: averageSize, maxSize: maxSize) {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: problem))
        }
        self.init(unchecked: minSize, averageSize, maxSize)
    }

    private enum CodingKeys: String, CodingKey { case minSize, averageSize, maxSize }

    /// "min/avg/max" in bytes.
    public var description: String { "\(minSize)/\(averageSize)/\(maxSize)" }

    /// Why these sizes cannot be used, or nil when they can.
    private static func problem(minSize: Int, averageSize: Int, maxSize: Int) -> String? {
        if minSize < minimumMinSize {
            return "minimum chunk size \(minSize) is below \(minimumMinSize) bytes"
        }
        if maxSize > maximumMaxSize {
            return "maximum chunk size \(maxSize) is above \(maximumMaxSize) bytes"
        }
        if !(minSize < averageSize && averageSize < maxSize) {
            return "chunk sizes must satisfy min < average < max, got \(minSize) / \(averageSize) / \(maxSize)"
        }
        if averageSize.nonzeroBitCount != 1 {
            return "average chunk size \(averageSize) is not a power of two"
        }
        return nil
    }
}

/// Why chunking could not start or go on.
public enum ChunkingError: Error, Equatable, CustomStringConvertible {
    /// The chunk sizes are unusable; the text says why.
    case invalidParameters(String)

    public var description: String {
        switch self {
        case .invalidParameters(let reason): "invalid chunking parameters: \(reason)"
        }
    }
}
