/// A range of a file's bytes: where it starts and how many bytes it holds.
public struct ByteRange: Hashable, Sendable, CustomStringConvertible {
    /// The first byte.
    public var offset: Int64
    /// The number of bytes.
    public var count: Int64

    /// The range of `count` bytes from `offset`.
    public init(offset: Int64, count: Int64) {
        self.offset = offset
        self.count = count
    }

    /// One past the last byte.
    public var end: Int64 { offset + count }

    /// The range widened to `alignment` boundaries on both sides and clipped to `[0, limit)`: recalls
    /// fetch whole aligned blocks so that neighbouring small reads do not each cost a round trip.
    public func aligned(to alignment: Int64, limit: Int64) -> ByteRange {
        precondition(alignment > 0, "alignment must be positive")
        let start = max(0, offset / alignment * alignment)
        let roundedEnd = (end + alignment - 1) / alignment * alignment
        let stop = min(limit, roundedEnd)
        return ByteRange(offset: min(start, stop), count: max(0, stop - min(start, stop)))
    }

    public var description: String { "[\(offset), \(end))" }
}
