@testable import CloudShare
import Hashing
import Testing

/// The mark's array of chunk ids holds what a `Set` would: ids added one by one and in runs, with
/// duplicates across its compactions and growths, come out sorted and distinct, and are found by
/// binary search.
@Suite struct ChunkMarkTests {
    @Test(arguments: [0, 1, 700, 5_000, 100_000])
    func itHoldsWhatASetHolds(_ count: Int) {
        var generator = SystemRandomNumberGenerator()
        let pool = (0..<max(1, count / 2)).map { _ in SHA256.hash([UInt8]("\(UInt64.random(in: 0...UInt64.max, using: &generator))".utf8)) }
        var mark = ChunkMark()
        var oracle: Set<Digest32> = []
        var added = 0
        while added < count {
            // One id, a run, or a reserved run, each mostly drawn again from the pool.
            let run = (0..<Int.random(in: 1...64)).map { _ in pool.randomElement()! }
            switch Int.random(in: 0..<3) {
            case 0: mark.insert(run[0]); oracle.insert(run[0]); added += 1
            case 1: mark.formUnion(run); oracle.formUnion(run); added += run.count
            default: mark.reserveCapacity(mark.count + run.count); mark.formUnion(run); oracle.formUnion(run); added += run.count
            }
        }
        mark.compact()
        #expect(mark.count == oracle.count)
        #expect(mark.ids == oracle.sorted())
        #expect(pool.allSatisfy { mark.contains($0) == oracle.contains($0) })
        #expect(!mark.contains(SHA256.hash([1, 2, 3])))
        let taken = mark.take()
        #expect(taken.ids == oracle.sorted() && mark.count == 0)
    }
}
