import Backends
import CloudShare
import Glibc
import Hashing

/// Writes the content of several files from a share into descriptors the caller opened, with one
/// coalesced read of all their chunks (``CloudShare/readChunks(_:order:parallelReads:limits:deliver:)``):
/// small files of one commit usually sit side by side in one pack, so a batch of them costs one GET, not
/// one per chunk. Every chunk is verified by SHA-256 before it is written. The caller owns the files:
/// it names them, opens them, and finishes each (attributes, fsync, rename) when told it is complete.
enum ShareContentWriter {
    /// A file to write: an open descriptor, its path for messages, and its chunk list.
    struct Target: Sendable {
        var fd: Int32
        var path: String
        var chunks: [ChunkRef]
    }

    /// A file written whole: its size and its xxh3-128 fingerprint.
    struct Written: Sendable {
        var size: Int64
        var fingerprint: Fingerprint128
    }

    /// At most this many bytes of content, or this many files, go into one batch: a batch holds one
    /// open descriptor per file, and its reads are planned together.
    static let batchBytes: Int64 = 64 << 20, batchFiles = 128

    /// Batches written at once, and reads in flight per batch: a batch of small files is often a single
    /// read, so batches, not reads, make the parallelism. Their product (8) bounds the reads in flight,
    /// and with reads of at most 16 MiB, the memory a download holds (128 MiB).
    static let parallelBatches = 4, readsPerBatch = 2

    /// Splits `items` into batches of at most ``batchBytes`` of content and ``batchFiles`` files, in order.
    static func batches<Item>(_ items: [Item], size: (Item) -> Int64) -> [[Item]] {
        var batches: [[Item]] = [], current: [Item] = [], bytes: Int64 = 0
        for item in items {
            if !current.isEmpty, current.count >= batchFiles || bytes + size(item) > batchBytes {
                batches.append(current)
                (current, bytes) = ([], 0)
            }
            current.append(item)
            bytes += size(item)
        }
        if !current.isEmpty { batches.append(current) }
        return batches
    }

    /// Writes every target's content at its offsets and calls `finished` once per target, as soon as it
    /// is whole or has failed (a chunk missing or corrupt, a write error); a failure of one file never
    /// stops the others. Chunks arrive in pack order: each is written where it belongs, and the
    /// fingerprint, which needs file order, reads back the few chunks that came early.
    static func write(_ targets: [Target], share: CloudShare, parallelReads: Int = readsPerBatch,
                      finished: (_ target: Int, _ result: Result<Written, any Error>) async throws -> Void) async throws {
        var files = targets.map(FileProgress.init)
        var owners: [(file: Int, chunk: Int)] = []
        var ids: [Digest32] = []
        for (file, target) in targets.enumerated() {
            for (chunk, ref) in target.chunks.enumerated() {
                owners.append((file, chunk))
                ids.append(ref.id)
            }
            if target.chunks.isEmpty {
                files[file].isOver = true
                try await finished(file, .success(Written(size: 0, fingerprint: XXH3().digest128())))
            }
        }
        try await share.readChunks(ids, order: .byLocation, parallelReads: parallelReads) { request, chunk in
            let (file, index) = owners[request]
            guard !files[file].isOver else { return }
            let outcome: Result<Written, any Error>?
            do {
                outcome = try files[file].take(try chunk.get(), at: index).map { .success($0) }
            } catch {
                outcome = .failure(error)
            }
            if let outcome {
                files[file].isOver = true
                try await finished(file, outcome)
            }
        }
    }

    /// What has arrived of one file.
    private struct FileProgress {
        let target: Target
        let offsets: [Int64]
        var arrived: [Bool]
        /// Chunks before this one are in the fingerprint.
        var hashed = 0
        let hash = XXH3()
        var isOver = false

        init(_ target: Target) {
            self.target = target
            var offset: Int64 = 0
            offsets = target.chunks.map { chunk in
                defer { offset += Int64(chunk.length) }
                return offset
            }
            arrived = Array(repeating: false, count: target.chunks.count)
        }

        /// Writes chunk `index`; returns the file's figures when it is whole.
        mutating func take(_ bytes: ArraySlice<UInt8>, at index: Int) throws -> Written? {
            let ref = target.chunks[index]
            guard bytes.count == Int(ref.length) else {
                // The chunk list's lengths place every chunk: a list that lies about one would misplace the rest.
                throw GatewayError("'\(target.path)': chunk \(ref.id.hex) is \(bytes.count) bytes, its chunk list says \(ref.length)")
            }
            try bytes.withUnsafeBytes { try Posix.pwriteAll(target.fd, $0, offset: offsets[index], path: target.path) }
            arrived[index] = true
            if index == hashed {
                bytes.withUnsafeBytes { hash.update($0) }
                hashed += 1
            }
            while hashed < arrived.count, arrived[hashed] {
                // Came before the chunks ahead of it: read back from the file (the page cache) to hash in order.
                var buffer = [UInt8](repeating: 0, count: Int(target.chunks[hashed].length))
                let read = try buffer.withUnsafeMutableBytes { try Posix.preadFully(target.fd, into: $0, offset: offsets[hashed], path: target.path) }
                guard read == buffer.count else { throw GatewayError("'\(target.path)': a written chunk reads back short") }
                hash.update(buffer)
                hashed += 1
            }
            guard hashed == arrived.count else { return nil }
            return Written(size: (offsets.last ?? 0) + Int64(target.chunks.last?.length ?? 0), fingerprint: hash.digest128())
        }
    }
}
