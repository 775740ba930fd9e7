import Chunking
import Testing

/// Small sizes keep debug-build tests fast while exercising every branch of the chunker.
let testParameters = try! ChunkingParameters(minSize: 4 << 10, averageSize: 16 << 10, maxSize: 64 << 10)

/// Reproducible pseudo-random bytes (splitmix64), so a failure replays exactly.
func pseudoRandomBytes(count: Int, seed: UInt64) -> [UInt8] {
    var state = seed
    var bytes = [UInt8](repeating: 0, count: count)
    bytes.withUnsafeMutableBytes { buffer in
        var offset = 0
        while offset < count {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            z ^= z >> 31
            withUnsafeBytes(of: z.littleEndian) { word in
                let n = min(8, count - offset)
                buffer.baseAddress!.advanced(by: offset).copyMemory(from: word.baseAddress!, byteCount: n)
            }
            offset += 8
        }
    }
    return bytes
}

/// Streams `input` through a `ChunkStream` whose reads return at most the sizes in `readSizes`, in turn.
func streamedChunks(_ input: [UInt8], parameters: ChunkingParameters = testParameters,
                    bufferSize: Int = 0, readSizes: [Int]) throws -> [Chunk] {
    var position = 0, turn = 0
    let stream = ChunkStream(parameters: parameters, bufferSize: bufferSize) { room in
        let count = min(room.count, readSizes[turn % readSizes.count], input.count - position)
        turn += 1
        input.withUnsafeBytes { source in
            room.baseAddress!.copyMemory(from: source.baseAddress! + position, byteCount: count)
        }
        position += count
        return count
    }
    var chunks: [Chunk] = []
    try stream.forEach { chunk, bytes in
        #expect(bytes.count == chunk.length)
        #expect(Array(bytes) == Array(input[chunk.offset..<chunk.offset + chunk.length]))
        chunks.append(chunk)
    }
    return chunks
}
