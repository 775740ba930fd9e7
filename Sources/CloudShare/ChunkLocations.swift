import Hashing

/// Where each chunk of the loaded index is stored: 48 bytes a chunk (its id, and its place with the pack
/// named by a number), where a `[Digest32: ChunkLocation]` takes 80 bytes a slot in a table a power of two
/// at most three quarters full (168 MiB at a million chunks, held by every idle daemon).
///
/// Most chunks sit in two parallel arrays sorted by id, found by a binary search within the bucket of
/// their id's first bits (ids are SHA-256 digests, so buckets are even: about 16 ids each). Chunks added
/// since go to a small table, merged into the arrays once it holds an eighth of them, so adding a chunk
/// costs a few moves on average and the arrays are never rebuilt for each pack.
struct ChunkLocations: Sendable {
    /// A chunk's place: its pack by number (an index into ``packs``), offset and length.
    private struct Place: Sendable {
        var pack: UInt32
        var length: UInt32
        var offset: UInt64
    }

    /// The packs named by places, and their numbers.
    private var packs: [Digest32] = []
    private var packNumbers: [Digest32: UInt32] = [:]
    /// Ids in order, and their places.
    private var ids: [Digest32] = []
    private var places: [Place] = []
    /// The ids whose first `bucketBits` bits are `b` are `ids[starts[b]..<starts[b + 1]]`.
    private var starts: [UInt32] = [0, 0]
    private var bucketBits = 0
    /// Chunks not in `ids`, added since the last merge.
    private var recent: [Digest32: Place] = [:]

    /// The number of chunks.
    var count: Int { ids.count + recent.count }

    /// The bytes of every chunk.
    var totalLength: Int64 {
        places.reduce(0) { $0 + Int64($1.length) } + recent.values.reduce(0) { $0 + Int64($1.length) }
    }

    /// Where `id` is stored, if known.
    subscript(id: Digest32) -> ChunkLocation? {
        guard let place = recent[id] ?? sortedIndex(of: id).map({ places[$0] }) else { return nil }
        return ChunkLocation(pack: packs[Int(place.pack)], offset: place.offset, length: place.length)
    }

    /// Records that `id` is stored at `location` (in place of what was known).
    mutating func set(_ location: ChunkLocation, for id: Digest32) {
        let place = Place(pack: number(of: location.pack), length: location.length, offset: location.offset)
        if let index = sortedIndex(of: id) {
            places[index] = place
            return
        }
        recent[id] = place
        if recent.count >= max(4096, ids.count / 8) { merge() }
    }

    private mutating func number(of pack: Digest32) -> UInt32 {
        if let number = packNumbers[pack] { return number }
        let number = UInt32(packs.count)
        packs.append(pack)
        packNumbers[pack] = number
        return number
    }

    private func bucket(of id: Digest32) -> Int {
        bucketBits == 0 ? 0 : Int(truncatingIfNeeded: id.bytes.0.bigEndian >> UInt64(64 - bucketBits))
    }

    private func sortedIndex(of id: Digest32) -> Int? {
        let bucket = bucket(of: id)
        return ids.sortedIndex(of: id, in: Int(starts[bucket])..<Int(starts[bucket + 1]))
    }

    /// Moves the recent chunks into the sorted arrays, and sizes the buckets for the new count.
    private mutating func merge() {
        let added = recent.sorted { $0.key < $1.key }
        recent = [:]
        var mergedIDs: [Digest32] = []
        var mergedPlaces: [Place] = []
        mergedIDs.reserveCapacity(ids.count + added.count)
        mergedPlaces.reserveCapacity(ids.count + added.count)
        var old = 0
        for (id, place) in added {
            while old < ids.count && ids[old] < id {
                mergedIDs.append(ids[old])
                mergedPlaces.append(places[old])
                old += 1
            }
            mergedIDs.append(id)
            mergedPlaces.append(place)
        }
        mergedIDs.append(contentsOf: ids[old...])
        mergedPlaces.append(contentsOf: places[old...])
        ids = mergedIDs
        places = mergedPlaces
        // About 16 ids a bucket: 2^16 buckets (256 KiB of starts) at a million chunks.
        bucketBits = min(max(Int.bitWidth - ids.count.leadingZeroBitCount - 4, 0), 24)
        starts = [UInt32](repeating: 0, count: (1 << bucketBits) + 1)
        var bucket = 0
        for (index, id) in ids.enumerated() {
            let of = self.bucket(of: id)
            while bucket < of {
                bucket += 1
                starts[bucket] = UInt32(index)
            }
        }
        for rest in (bucket + 1)..<starts.count { starts[rest] = UInt32(ids.count) }
    }
}
