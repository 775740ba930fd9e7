/// FastCDC content-defined chunking (Xia et al., USENIX ATC 2016 / IEEE TPDS 2020) with normalized chunking.
///
/// A cut point is where the gear hash of the last 64 bytes has its top bits clear. Normalized chunking
/// (level 2) uses a stricter test before the average size and a looser one after it, which pulls chunk sizes
/// toward the average; nothing is hashed in the first `minSize` bytes of a chunk. Boundaries depend only on
/// content, so an edit moves at most the chunks around it.
///
/// The gear table and the two thresholds are part of the cloud share format: changing either moves every
/// boundary and so defeats dedup against existing shares (ChunkingTests pins the cut points of a fixed input).
public struct FastCDC: Sendable, Hashable {
    /// The sizes this chunker cuts with.
    public let parameters: ChunkingParameters
    /// A hash below this ends a chunk before the average size (average bits + 2 top bits clear).
    let strictThreshold: UInt64
    /// A hash below this ends a chunk after the average size (average bits - 2 top bits clear).
    let looseThreshold: UInt64

    /// A chunker for `parameters`.
    public init(_ parameters: ChunkingParameters = .standard) {
        self.parameters = parameters
        let bits = parameters.averageSize.trailingZeroBitCount
        // "Top n bits clear" is "below 2^(64-n)"; the top bits see the whole 64-byte window.
        strictThreshold = 1 << UInt64(64 - (bits + 2))
        looseThreshold = 1 << UInt64(64 - (bits - 2))
    }

    /// The length of the chunk that starts at the beginning of `bytes`.
    ///
    /// `bytes` must hold at least `maxSize` bytes, or else be the final tail of the input: the answer for a
    /// shorter, non-final buffer may differ from the one a longer buffer would give. Returns `bytes.count`
    /// when it is at most `minSize`, and 0 only for an empty buffer.
    public func cut(_ bytes: UnsafeRawBufferPointer) -> Int {
        let count = bytes.count
        guard count > parameters.minSize, let base = bytes.baseAddress else { return count }
        let end = min(count, parameters.maxSize)
        let normal = min(end, parameters.averageSize)
        let input = base.assumingMemoryBound(to: UInt8.self)
        return Self.gear.withUnsafeBufferPointer { table in
            let gear = table.baseAddress!
            var hash: UInt64 = 0
            var index = parameters.minSize
            if let cut = Self.scan(input, gear, &hash, &index, normal, strictThreshold) { return cut }
            if let cut = Self.scan(input, gear, &hash, &index, end, looseThreshold) { return cut }
            return end
        }
    }

    /// The lengths of all chunks of `bytes`, taken as a whole input, in order.
    public func chunkLengths(_ bytes: UnsafeRawBufferPointer) -> [Int] {
        var lengths: [Int] = []
        var offset = 0
        while offset < bytes.count {
            let length = cut(UnsafeRawBufferPointer(rebasing: bytes[offset...]))
            lengths.append(length)
            offset += length
        }
        return lengths
    }

    /// Rolls the gear hash from `index` up to `end`; returns the chunk length at the first hash below
    /// `threshold`, or nil with `hash` and `index` advanced to `end` (the state is left as is after a cut,
    /// which ends the search).
    ///
    /// Four bytes per step: the partial sums `s1…s3` do not depend on `hash`, so the loop-carried chain is one
    /// shift and two adds per four bytes instead of a shift and an add per byte. Written this way so that
    /// the optimizer cannot fold `hash` back into every sum.
    @inline(__always)
    private static func scan(_ input: UnsafePointer<UInt8>, _ gear: UnsafePointer<UInt64>, _ hash: inout UInt64,
                             _ index: inout Int, _ end: Int, _ threshold: UInt64) -> Int? {
        var h = hash, i = index
        defer { hash = h; index = i }
        while i &+ 4 <= end {
            let g0 = gear[Int(input[i])]
            let s1 = (g0 << 1) &+ gear[Int(input[i &+ 1])]
            let s2 = (s1 << 1) &+ gear[Int(input[i &+ 2])]
            let s3 = (s2 << 1) &+ gear[Int(input[i &+ 3])]
            if (h << 1) &+ g0 < threshold { return i &+ 1 }
            if (h << 2) &+ s1 < threshold { return i &+ 2 }
            if (h << 3) &+ s2 < threshold { return i &+ 3 }
            h = (h << 4) &+ s3
            i &+= 4
            if h < threshold { return i }
        }
        while i < end {
            h = (h << 1) &+ gear[Int(input[i])]
            i &+= 1
            if h < threshold { return i }
        }
        return nil
    }

    /// 256 pseudo-random 64-bit gear values from splitmix64 with a fixed seed, so the table is reproducible
    /// from this source alone instead of a 2 KiB literal.
    static let gear: [UInt64] = {
        var state: UInt64 = 0x5469_6572_6761_7465  // "Tiergate"
        return (0..<256).map { _ in
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }()
}
