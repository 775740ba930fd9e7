import Chunking
import Foundation
import Hashing

/// Chunking throughput on one core: FastCDC cut points alone, then with SHA-256 chunk ids, over pseudo-random
/// data held in memory (no I/O). The peer for SHA-256 is `openssl speed` on the same machine.
///
/// Figures divide by the benchmark thread's CPU time, as `openssl speed` does, so that a machine shared with
/// builds still reports what one core does.
enum ChunkingBench {
    static let group = BenchGroup(name: "chunking", summary: "FastCDC and SHA-256 throughput on one core, in memory") { table in
        try run(table)
    }

    /// Input size in MiB; `TIERGATE_BENCH_CHUNKING_MIB` overrides the 1 GiB default.
    static var sizeMiB: Int {
        ProcessInfo.processInfo.environment["TIERGATE_BENCH_CHUNKING_MIB"].flatMap(Int.init) ?? 1024
    }

    static func run(_ table: BenchTable) throws {
        let count = sizeMiB << 20
        let input = UnsafeMutableRawBufferPointer.allocate(byteCount: count, alignment: 64)
        defer { input.deallocate() }
        fill(input)
        let bytes = UnsafeRawBufferPointer(input)
        let chunker = FastCDC(.standard)
        let megabytes = Double(count) / 1e6
        let runs = 5

        var chunkCount = 0
        let cutSeconds = Stopwatch.bestCPU(of: runs) {
            chunkCount = 0
            var offset = 0
            while offset < count {
                offset += chunker.cut(UnsafeRawBufferPointer(rebasing: bytes[offset...]))
                chunkCount += 1
            }
        }
        let averageKiB = Double(count) / Double(chunkCount) / 1024
        table.add("chunking: FastCDC cut points", megabytes / cutSeconds, "MB/s",
                  note: "\(sizeMiB) MiB random, params \(ChunkingParameters.standard), \(chunkCount) chunks, mean \(Int(averageKiB)) KiB; no peer CDC tool installed")

        let hashSeconds = Stopwatch.bestCPU(of: runs) { _ = SHA256.hash(bytes) }
        let peer = opensslSHA256MegabytesPerSecond()
        table.add("chunking: SHA-256 alone (libcrypto EVP)", megabytes / hashSeconds, "MB/s", peer: peer,
                  note: "one-shot over the whole input; peer: openssl speed -evp sha256, 1 MiB blocks")

        let chunkAndHashSeconds = Stopwatch.bestCPU(of: runs) { _ = chunker.chunks(of: bytes) }
        table.add("chunking: FastCDC + SHA-256 ids, in memory", megabytes / chunkAndHashSeconds, "MB/s", peer: peer,
                  note: "FastCDC.chunks(of:); bound by 1/(1/cut + 1/sha256) on one core")

        let streamSeconds = try Stopwatch.bestCPU(of: runs) {
            var position = 0
            let stream = ChunkStream(parameters: .standard) { room in
                let length = min(room.count, count - position)
                room.baseAddress!.copyMemory(from: bytes.baseAddress! + position, byteCount: length)
                position += length
                return length
            }
            while try stream.next() != nil {}
        }
        table.add("chunking: ChunkStream (8 MiB buffer) + SHA-256", megabytes / streamSeconds, "MB/s", peer: peer,
                  note: "adds the copy a read(2) source would make")

        let xxhSeconds = Stopwatch.bestCPU(of: runs) { _ = XXH3.hash128(bytes) }
        table.add("chunking: xxh3-128 fingerprint", megabytes / xxhSeconds, "MB/s",
                  note: "libxxhash one-shot; change-detection fingerprint, for scale")
    }

    /// Pseudo-random bytes (splitmix64): incompressible and free of the long runs that would cut at max size.
    static func fill(_ buffer: UnsafeMutableRawBufferPointer) {
        var state: UInt64 = 0x0123_4567_89AB_CDEF
        let words = buffer.count / 8
        let output = buffer.baseAddress!.assumingMemoryBound(to: UInt64.self)
        for index in 0..<words {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            output[index] = z ^ (z >> 31)
        }
    }

    /// `openssl speed -evp sha256` over 1 MiB blocks, in MB/s; nil when openssl is not installed or prints
    /// something unexpected.
    static func opensslSHA256MegabytesPerSecond() -> Double? {
        guard let output = PeerTool.output(["openssl", "speed", "-evp", "sha256", "-bytes", "1048576", "-seconds", "2"]) else {
            return nil
        }
        // The result line reads "sha256   1446402.57k": thousands of bytes per second.
        guard let line = output.split(separator: "\n").last(where: { $0.lowercased().hasPrefix("sha256") }),
              let field = line.split(separator: " ").last, field.hasSuffix("k"),
              let kilobytes = Double(field.dropLast()) else { return nil }
        return kilobytes / 1000
    }
}
