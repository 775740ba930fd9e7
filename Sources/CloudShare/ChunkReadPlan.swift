import Hashing

/// Which ranged GETs read a set of chunks: chunks of one pack that lie close together are read with
/// one GET and sliced apart, so a download costs requests per pack, not per chunk. Pure: no I/O.
///
/// Two orders: ``Order/byLocation`` (a download writing each chunk at its own file offset) groups all
/// wanted chunks of a pack, sorts them by offset and merges neighbours; ``Order/asRequested`` (a
/// recall writing a file front to back) merges only runs of consecutive requests, so every read can be
/// handed over in request order while later reads are in flight, and memory stays bounded by the reads
/// in flight whatever the order of the chunk list.
public struct ChunkReadPlan: Sendable, Equatable {
    /// How chunks are grouped into reads.
    public enum Order: Sendable {
        /// Reads follow the request order; only consecutive requests share a read.
        case asRequested
        /// Reads group every wanted chunk of a pack, whatever its place in the request list.
        case byLocation
    }

    /// How far reads are merged.
    public struct Limits: Sendable, Equatable {
        /// Two chunks separated by at most this many unwanted bytes share a read: one more request
        /// costs more than reading and discarding a few hundred KiB, on any store with real latency.
        public var gap: UInt64
        /// No read is longer than this (it bounds the memory of one read in flight).
        public var cap: UInt64
        /// When the wanted chunks of a pack make up at least this share of its chunk bytes, they are read
        /// whatever the gaps between them (in ``Order/byLocation``): most of the pack is wanted, so a few
        /// long reads beat many short ones.
        public var wholePackShare: Double

        /// Limits; the defaults suit packs of 16 MiB.
        public init(gap: UInt64 = 256 << 10, cap: UInt64 = 16 << 20, wholePackShare: Double = 0.5) {
            self.gap = gap
            self.cap = cap
            self.wholePackShare = wholePackShare
        }
    }

    /// One wanted chunk: its place in the request list, its id and where it is stored.
    public struct Wanted: Sendable, Equatable {
        /// Index in the caller's request list.
        public var request: Int
        /// The chunk's id.
        public var id: Digest32
        /// Where it is stored.
        public var location: ChunkLocation

        /// A wanted chunk.
        public init(request: Int, id: Digest32, location: ChunkLocation) {
            self.request = request
            self.id = id
            self.location = location
        }
    }

    /// One ranged GET of a pack and the chunks sliced from it.
    public struct Read: Sendable, Equatable {
        /// The pack read.
        public var pack: Digest32
        /// The byte range of the pack read.
        public var range: Range<UInt64>
        /// The chunks in the range, by offset; each lists the requests it answers (a chunk asked for
        /// twice is read once).
        public var chunks: [Slice]

        /// Requests answered by this read, in request order.
        public var requests: [Int] { chunks.flatMap(\.requests).sorted() }
    }

    /// A chunk inside a read.
    public struct Slice: Sendable, Equatable {
        /// The chunk's id.
        public var id: Digest32
        /// Offset of the chunk in the pack.
        public var offset: UInt64
        /// Length of the chunk.
        public var length: UInt32
        /// The requests it answers.
        public var requests: [Int]
    }

    /// The reads, in the order they are handed over: by the first request each answers.
    public var reads: [Read]

    /// Plans the reads of `wanted`. `packBytes` gives the chunk bytes of each pack (the end of its last
    /// chunk), used for the whole-pack rule; a pack missing there counts as its wanted span.
    public init(_ wanted: [Wanted], order: Order, limits: Limits = Limits(), packBytes: [Digest32: UInt64] = [:]) {
        switch order {
        case .asRequested: reads = Self.runs(wanted.sorted { $0.request < $1.request }, limits: limits)
        case .byLocation: reads = Self.grouped(wanted, limits: limits, packBytes: packBytes)
        }
    }

    /// Total bytes the reads fetch.
    public var bytes: UInt64 { reads.reduce(0) { $0 + UInt64($1.range.count) } }

    /// Whether a read `range` of the same pack can take a chunk at `location` within `gap` and the cap.
    private static func fits(_ location: ChunkLocation, into range: Range<UInt64>, gap: UInt64, cap: UInt64) -> Bool {
        let end = location.offset + UInt64(location.length)
        return location.offset >= range.lowerBound
            && location.offset <= range.upperBound + gap
            && max(range.upperBound, end) - range.lowerBound <= cap
    }

    private static func runs(_ wanted: [Wanted], limits: Limits) -> [Read] {
        var reads: [Read] = []
        for chunk in wanted {
            let location = chunk.location
            if var last = reads.last, last.pack == location.pack,
               fits(location, into: last.range, gap: limits.gap, cap: limits.cap) {
                if let same = last.chunks.firstIndex(where: { $0.id == chunk.id }) {
                    last.chunks[same].requests.append(chunk.request)
                } else {
                    last.range = last.range.lowerBound..<max(last.range.upperBound, location.offset + UInt64(location.length))
                    last.chunks.append(Slice(id: chunk.id, offset: location.offset, length: location.length, requests: [chunk.request]))
                }
                reads[reads.count - 1] = last
            } else {
                reads.append(Read(pack: location.pack, range: location.offset..<location.offset + UInt64(location.length),
                                  chunks: [Slice(id: chunk.id, offset: location.offset, length: location.length, requests: [chunk.request])]))
            }
        }
        return reads
    }

    private static func grouped(_ wanted: [Wanted], limits: Limits, packBytes: [Digest32: UInt64]) -> [Read] {
        // One slice per distinct chunk, grouped by pack.
        var slices: [Digest32: [Digest32: Slice]] = [:]
        for chunk in wanted {
            slices[chunk.location.pack, default: [:]][chunk.id, default: Slice(id: chunk.id, offset: chunk.location.offset,
                                                                               length: chunk.location.length, requests: [])]
                .requests.append(chunk.request)
        }
        var reads: [Read] = []
        for (pack, chunks) in slices {
            let sorted = chunks.values.sorted { $0.offset < $1.offset }
            let wantedBytes = sorted.reduce(UInt64(0)) { $0 + UInt64($1.length) }
            let span = sorted.last.map { $0.offset + UInt64($0.length) } ?? 0
            let whole = Double(wantedBytes) >= limits.wholePackShare * Double(max(packBytes[pack] ?? span, span))
            let gap = whole ? UInt64.max / 2 : limits.gap
            var current: Read?
            for slice in sorted {
                let location = ChunkLocation(pack: pack, offset: slice.offset, length: slice.length)
                if var read = current, fits(location, into: read.range, gap: gap, cap: limits.cap) {
                    read.range = read.range.lowerBound..<max(read.range.upperBound, slice.offset + UInt64(slice.length))
                    read.chunks.append(slice)
                    current = read
                } else {
                    if let read = current { reads.append(read) }
                    current = Read(pack: pack, range: slice.offset..<slice.offset + UInt64(slice.length), chunks: [slice])
                }
            }
            if let read = current { reads.append(read) }
        }
        for index in reads.indices {
            for slice in reads[index].chunks.indices { reads[index].chunks[slice].requests.sort() }
        }
        return reads.map { read in (first: read.chunks.lazy.compactMap(\.requests.first).min() ?? 0, read: read) }
            .sorted { $0.first < $1.first }.map(\.read)
    }
}
