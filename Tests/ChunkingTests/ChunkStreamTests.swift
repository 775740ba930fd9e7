import Chunking
import Testing

@Suite struct ChunkStreamTests {
    static let readSizeTables: [[Int]] = [
        [1 << 30], [1], [7, 4093, 65_536], [65_537], [1 << 20, 3, 200_000], [12_345, 1, 99_999, 64 << 10],
    ]

    @Test(arguments: readSizeTables)
    func cutsAreTheSameWhateverTheReadSizes(readSizes: [Int]) throws {
        let input = pseudoRandomBytes(count: readSizes == [1] ? 300_000 : 3 << 20, seed: 10)
        let expected = FastCDC(testParameters).chunks(of: input)
        #expect(try streamedChunks(input, readSizes: readSizes) == expected)
    }

    @Test(arguments: [0, 128 << 10, 200_003, 8 << 20])
    func cutsAreTheSameWhateverTheBufferSize(bufferSize: Int) throws {
        let input = pseudoRandomBytes(count: 3 << 20, seed: 11)
        let expected = FastCDC(testParameters).chunks(of: input)
        #expect(try streamedChunks(input, bufferSize: bufferSize, readSizes: [70_001]) == expected)
    }

    @Test func nextWithoutBytesReturnsTheSameRecords() throws {
        let input = pseudoRandomBytes(count: 500_000, seed: 12)
        var position = 0
        let stream = ChunkStream(parameters: testParameters) { room in
            let count = min(room.count, input.count - position)
            input.withUnsafeBytes { room.baseAddress!.copyMemory(from: $0.baseAddress! + position, byteCount: count) }
            position += count
            return count
        }
        var chunks: [Chunk] = []
        while let chunk = try stream.next() { chunks.append(chunk) }
        #expect(chunks == FastCDC(testParameters).chunks(of: input))
        #expect(try stream.next() == nil)
    }

    @Test func aReadErrorReachesTheCaller() {
        struct Broken: Error {}
        let stream = ChunkStream(parameters: testParameters) { _ in throw Broken() }
        #expect(throws: Broken.self) { try stream.next() }
    }
}
