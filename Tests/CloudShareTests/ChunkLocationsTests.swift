@testable import CloudShare
import Hashing
import Testing

/// The loaded index's sorted arrays answer what a dictionary would: chunks added pack by pack, some
/// moved to another copy, found before and after the merges that move recent chunks into the arrays.
@Suite struct ChunkLocationsTests {
    @Test(arguments: [0, 1, 4_095, 4_096, 30_000, 200_000])
    func itAnswersWhatADictionaryAnswers(_ count: Int) {
        var generator = SystemRandomNumberGenerator()
        let packs = (0..<max(1, count / 500)).map { SHA256.hash([UInt8]("pack \($0)".utf8)) }
        var locations = ChunkLocations()
        var oracle: [Digest32: ChunkLocation] = [:]
        var ids: [Digest32] = []
        for index in 0..<count {
            let id = SHA256.hash([UInt8]("chunk \(index) \(UInt64.random(in: 0...UInt64.max, using: &generator))".utf8))
            let location = ChunkLocation(pack: packs.randomElement()!, offset: UInt64(index) * 4096, length: UInt32.random(in: 1...65536))
            locations.set(location, for: id)
            oracle[id] = location
            ids.append(id)
            // Now and then a chunk known already gets another copy (alternates, trailer packs).
            if index % 7 == 3, let again = ids.randomElement() {
                let moved = ChunkLocation(pack: packs.randomElement()!, offset: UInt64(index), length: 9)
                locations.set(moved, for: again)
                oracle[again] = moved
            }
            if index % 997 == 0 { #expect(ids.suffix(50).allSatisfy { locations[$0] == oracle[$0] }) }
        }
        #expect(locations.count == oracle.count)
        #expect(ids.allSatisfy { locations[$0] == oracle[$0] })
        #expect(locations.totalLength == oracle.values.reduce(0) { $0 + Int64($1.length) })
        // Ids that are not there, among them the first and last possible and neighbours of known ones.
        var unknown = [Digest32(), Digest32(bytes: [UInt8](repeating: 0xff, count: 32))!]
        for id in ids.prefix(100) {
            var bytes = id.array
            bytes[31] ^= 1
            unknown.append(Digest32(bytes: bytes)!)
        }
        #expect(unknown.allSatisfy { oracle[$0] != nil || locations[$0] == nil })
    }
}
