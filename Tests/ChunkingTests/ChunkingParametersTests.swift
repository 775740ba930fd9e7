import Chunking
import Foundation
import Testing

@Suite struct ChunkingParametersTests {
    @Test func standardParametersAreTheDesignDefaults() {
        #expect(ChunkingParameters.standard.minSize == 256 << 10)
        #expect(ChunkingParameters.standard.averageSize == 1 << 20)
        #expect(ChunkingParameters.standard.maxSize == 4 << 20)
        #expect(throws: Never.self) { try ChunkingParameters(minSize: 256 << 10, averageSize: 1 << 20, maxSize: 4 << 20) }
    }

    @Test(arguments: [
        (4096, 16384, 16384, "min < average < max"),
        (16384, 16384, 65536, "min < average < max"),
        (8192, 4096, 65536, "min < average < max"),
        (4096, 20000, 65536, "not a power of two"),
        (32, 16384, 65536, "below 64 bytes"),
        (4096, 16384, 1 << 30, "above"),
    ])
    func invalidParametersAreRejectedWithAReason(min: Int, average: Int, max: Int, reason: String) {
        do {
            _ = try ChunkingParameters(minSize: min, averageSize: average, maxSize: max)
            Issue.record("\(min)/\(average)/\(max) was accepted")
        } catch {
            #expect(error.description.contains(reason), "\(error)")
        }
    }

    @Test func parametersRoundTripThroughJSON() throws {
        let data = try JSONEncoder().encode(testParameters)
        #expect(try JSONDecoder().decode(ChunkingParameters.self, from: data) == testParameters)
        let text = String(decoding: data, as: UTF8.self)
        #expect(text.contains("\"averageSize\":16384"))
    }

    @Test func decodingRefusesImpossibleParameters() {
        let json = Data(#"{"minSize":4096,"averageSize":3000,"maxSize":65536}"#.utf8)
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(ChunkingParameters.self, from: json) }
    }
}
