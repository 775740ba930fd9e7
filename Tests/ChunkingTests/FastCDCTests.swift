import Chunking
import Foundation
import Hashing
import Testing

@Suite struct FastCDCTests {
    @Test func everyChunkIsWithinBoundsAndTheyTileTheInput() {
        let input = pseudoRandomBytes(count: 3 << 20, seed: 1)
        let chunks = FastCDC(testParameters).chunks(of: input)
        var offset = 0
        for (index, chunk) in chunks.enumerated() {
            #expect(chunk.offset == offset)
            #expect(chunk.length <= testParameters.maxSize)
            if index < chunks.count - 1 { #expect(chunk.length >= testParameters.minSize) }
            #expect(chunk.length > 0)
            offset += chunk.length
        }
        #expect(offset == input.count)
    }

    @Test func chunkIdsAreTheSHA256OfTheChunkBytes() {
        let input = pseudoRandomBytes(count: 300_000, seed: 2)
        for chunk in FastCDC(testParameters).chunks(of: input) {
            #expect(chunk.id == SHA256.hash(Array(input[chunk.offset..<chunk.offset + chunk.length])))
        }
    }

    @Test func averageChunkSizeIsNearTheTarget() {
        let input = pseudoRandomBytes(count: 16 << 20, seed: 3)
        let lengths = input.withUnsafeBytes { FastCDC(testParameters).chunkLengths($0) }
        let mean = input.count / lengths.count
        // Normalized chunking keeps the mean close to the average; a broken mask would be off by 2x or more.
        #expect(mean > testParameters.averageSize * 3 / 4 && mean < testParameters.averageSize * 3 / 2, "mean \(mean)")
        // Most chunks are cut by content, not by the maximum.
        #expect(lengths.filter { $0 == testParameters.maxSize }.count < lengths.count / 50)
    }

    @Test func cutPointsAreDeterministicAcrossRuns() {
        let input = pseudoRandomBytes(count: 2 << 20, seed: 4)
        let first = FastCDC(testParameters).chunks(of: input)
        let second = FastCDC(testParameters).chunks(of: pseudoRandomBytes(count: 2 << 20, seed: 4))
        #expect(first == second)
    }

    /// Pins the cut points of a fixed input: the gear table and the masks are part of the share format,
    /// so any change here must be a deliberate format change.
    @Test func cutPointsOfAFixedInputNeverChange() {
        let input = pseudoRandomBytes(count: 256 << 10, seed: 2024)
        let lengths = input.withUnsafeBytes { FastCDC(testParameters).chunkLengths($0) }
        #expect(lengths == pinnedLengths)
    }

    @Test(arguments: [testParameters, ChunkingParameters.standard, try! ChunkingParameters(minSize: 64, averageSize: 128, maxSize: 1000)])
    func theUnrolledScanAgreesWithAByteAtATimeReference(parameters: ChunkingParameters) {
        let input = pseudoRandomBytes(count: parameters == .standard ? 12 << 20 : 1 << 20, seed: 8)
        let fast = input.withUnsafeBytes { FastCDC(parameters).chunkLengths($0) }
        #expect(fast == referenceLengths(input, parameters))
    }

    @Test func emptyInputHasNoChunks() throws {
        #expect(FastCDC().chunks(of: [UInt8]()).isEmpty)
        #expect(try streamedChunks([], readSizes: [4096]).isEmpty)
        #expect([UInt8]().withUnsafeBytes { FastCDC().cut($0) } == 0)
    }

    @Test(arguments: [1, 100, 4 << 10])
    func inputUpToTheMinimumIsOneChunk(count: Int) throws {
        let input = pseudoRandomBytes(count: count, seed: 5)
        let expected = [Chunk(offset: 0, length: count, id: SHA256.hash(input))]
        #expect(FastCDC(testParameters).chunks(of: input) == expected)
        #expect(try streamedChunks(input, readSizes: [1000]) == expected)
    }

    @Test func uniformInputIsCutAtTheMaximumSize() {
        // A run of one byte value never satisfies the gear test, so only the maximum ends its chunks.
        let input = [UInt8](repeating: 0, count: 3 * (64 << 10) + 5)
        let lengths = input.withUnsafeBytes { FastCDC(testParameters).chunkLengths($0) }
        #expect(lengths == [64 << 10, 64 << 10, 64 << 10, 5])
    }

    @Test func aSmallInsertionNearTheStartChangesOnlyTheChunksAroundIt() {
        let original = pseudoRandomBytes(count: 64 << 20, seed: 6)
        var edited = original
        edited.insert(contentsOf: [0xde, 0xad, 0xbe, 0xef, 0x42], at: 100_000)
        let chunker = FastCDC(testParameters)
        let before = chunker.chunks(of: original), after = chunker.chunks(of: edited)
        let beforeIDs = Set(before.map(\.id)), afterIDs = Set(after.map(\.id))
        let changed = afterIDs.subtracting(beforeIDs).count
        #expect(before.count > 3000)
        #expect(changed >= 1 && changed <= 3, "\(changed) of \(after.count) chunks changed")
        #expect(beforeIDs.intersection(afterIDs).count >= before.count - 3)
    }

    @Test func aDeletionInTheMiddleChangesOnlyTheChunksAroundIt() {
        let original = pseudoRandomBytes(count: 8 << 20, seed: 7)
        var edited = original
        edited.removeSubrange(4_000_000..<4_000_100)
        let chunker = FastCDC(testParameters)
        let beforeIDs = Set(chunker.chunks(of: original).map(\.id))
        let afterIDs = Set(chunker.chunks(of: edited).map(\.id))
        #expect(afterIDs.subtracting(beforeIDs).count <= 3)
    }
}

/// Chunk lengths of `pseudoRandomBytes(count: 256 KiB, seed: 2024)` with the 4/16/64 KiB test parameters.
let pinnedLengths = [7798, 27489, 18426, 18734, 24345, 19241, 21294, 20489, 18842, 17513, 20059, 16803, 19537, 11574]

/// FastCDC as specified, one byte at a time, with its own copy of the gear table: the chunker must match it.
func referenceLengths(_ input: [UInt8], _ parameters: ChunkingParameters) -> [Int] {
    var state: UInt64 = 0x5469_6572_6761_7465
    let gear: [UInt64] = (0..<256).map { _ in
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    let bits = parameters.averageSize.trailingZeroBitCount
    let strictMask = ~UInt64(0) << UInt64(64 - (bits + 2)), looseMask = ~UInt64(0) << UInt64(64 - (bits - 2))
    var lengths: [Int] = []
    var start = 0
    while start < input.count {
        let remaining = input.count - start
        var length = min(remaining, parameters.maxSize)
        if remaining > parameters.minSize {
            var hash: UInt64 = 0
            for index in parameters.minSize..<length {
                hash = (hash << 1) &+ gear[Int(input[start + index])]
                let mask = index < parameters.averageSize ? strictMask : looseMask
                if hash & mask == 0 { length = index + 1; break }
            }
        }
        lengths.append(length)
        start += length
    }
    return lengths
}
