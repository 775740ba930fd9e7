import Hashing

/// The chunks the collector's mark found: one array of ids, sorted and distinct once ``compact()`` ran.
/// 32 bytes a chunk, where a `Set` takes 43–85 (its table is a power of two at most three quarters full:
/// 64 MiB at a million chunks).
///
/// Ids are appended as the mark finds them. When the array is full it is first sorted in place with its
/// duplicates dropped, and its storage grows only when that leaves it more than three quarters full. So
/// duplicates never cost more than the spare capacity, and the ids are never held twice but while the
/// storage grows. Membership is a binary search, once compacted.
struct ChunkMark: Sendable {
    /// The ids: `ids[..<distinct]` sorted and distinct, those after it appended since.
    private(set) var ids: [Digest32] = []
    private var distinct = 0

    /// The ids held: the distinct ones once compacted.
    var count: Int { ids.count }

    /// Adds `id`.
    mutating func insert(_ id: Digest32) {
        if ids.count == ids.capacity { makeRoom() }
        ids.append(id)
    }

    /// Adds every id of `more`.
    mutating func formUnion<S: Sequence>(_ more: S) where S.Element == Digest32 {
        for id in more { insert(id) }
    }

    /// Makes room for `count` ids in all without growing on the way.
    mutating func reserveCapacity(_ count: Int) {
        guard count > ids.capacity else { return }
        compact()
        if count > ids.capacity { ids.reserveCapacity(count) }
    }

    /// Sorts the ids and drops the duplicates, in place.
    mutating func compact() {
        guard distinct < ids.count else { return }
        ids.sort()
        var kept = 0
        for index in ids.indices where kept == 0 || ids[index] != ids[kept - 1] {
            ids[kept] = ids[index]
            kept += 1
        }
        ids.removeLast(ids.count - kept)
        distinct = kept
    }

    /// Whether `id` is marked; only once compacted (the mark compacts before it returns).
    func contains(_ id: Digest32) -> Bool { index(of: id) != nil }

    /// Where `id` is in ``ids``, by binary search; only once compacted.
    func index(of id: Digest32) -> Int? {
        precondition(distinct == ids.count, "a chunk mark is looked up only once compacted")
        return ids.sortedIndex(of: id, in: ids.indices)
    }

    /// The mark, compacted; this one is left empty, so the ids are not held twice.
    mutating func take() -> ChunkMark {
        compact()
        defer { self = ChunkMark() }
        return self
    }

    /// Compacts a full array, and doubles its storage when it stays more than three quarters full.
    private mutating func makeRoom() {
        compact()
        if ids.count >= ids.capacity / 4 * 3 { ids.reserveCapacity(max(2 * ids.capacity, 1024)) }
    }
}

extension Array where Element == Digest32 {
    /// Where `id` is within `range` of these ids, which is sorted and distinct: a binary search.
    func sortedIndex(of id: Digest32, in range: Range<Int>) -> Int? {
        var low = range.lowerBound, high = range.upperBound
        while low < high {
            let middle = (low + high) / 2
            if self[middle] < id { low = middle + 1 } else { high = middle }
        }
        return low < range.upperBound && self[low] == id ? low : nil
    }
}
