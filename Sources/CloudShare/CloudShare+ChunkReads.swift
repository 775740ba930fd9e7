import Backends
import Hashing

extension CloudShare {
    /// Reads many chunks with coalesced ranged GETs (see ``ChunkReadPlan``) and hands each to `deliver`
    /// with its index in `ids`: its bytes, verified by SHA-256 after slicing, or why it cannot be read.
    /// A chunk that is missing or fails its check gets the same error ``readChunk(_:)`` gives it (naming
    /// the chunk and the pack), and the other chunks of its read are still delivered; a GET that fails
    /// fails the chunks of that read only. A chunk asked for twice is read once and delivered twice.
    ///
    /// Chunks not found are delivered first; then reads are handed over in plan order (with
    /// ``ChunkReadPlan/Order/asRequested``, that is request order), each read's chunks by request index.
    /// At most `parallelReads` reads are in flight or waiting to be handed over, so memory stays below
    /// `parallelReads` × `limits.cap` (64 MiB with the defaults). `deliver` runs on the calling task,
    /// one call at a time; only an error it throws (or cancellation) ends the call early.
    public func readChunks(_ ids: [Digest32], order: ChunkReadPlan.Order = .asRequested, parallelReads: Int = 4,
                           limits: ChunkReadPlan.Limits = ChunkReadPlan.Limits(),
                           deliver: (_ index: Int, _ chunk: Result<ArraySlice<UInt8>, any Error>) async throws -> Void) async throws {
        guard !ids.isEmpty else { return }
        let locations = await locate(ids)
        var wanted: [ChunkReadPlan.Wanted] = []
        wanted.reserveCapacity(ids.count)
        for (request, id) in ids.enumerated() {
            switch locations[id]! {
            case .success(let location): wanted.append(ChunkReadPlan.Wanted(request: request, id: id, location: location))
            case .failure(let error): try await deliver(request, .failure(error))
            }
        }
        let plan = ChunkReadPlan(wanted, order: order, limits: limits, packBytes: packBytes(Set(wanted.map(\.location.pack))))
        try await withThrowingTaskGroup(of: FetchedRead.self) { group in
            var started = 0
            func start() {
                guard started < plan.reads.count else { return }
                let (index, read) = (started, plan.reads[started])
                started += 1
                group.addTask { FetchedRead(index: index, chunks: await self.fetch(read)) }
            }
            for _ in 0..<max(1, parallelReads) { start() }
            // Reads finish in any order; they are handed over in plan order, which bounds what waits.
            var finished: [Int: FetchedRead] = [:]
            var next = 0
            while next < plan.reads.count {
                if let read = finished.removeValue(forKey: next) {
                    for (request, chunk) in read.chunks { try await deliver(request, chunk) }
                    next += 1
                    start()
                } else if let read = try await group.next() {
                    finished[read.index] = read
                }
            }
        }
    }

    /// `read`'s chunks when its pack is gone (a collector deleted it after this process indexed it): the
    /// pack is taken as collected, the index is reloaded, and each chunk is read from another copy if one
    /// is known, in `read`'s order; a chunk with no other copy is a `missingChunk` error.
    private func readElsewhere(_ read: ChunkReadPlan.Read, _ error: StoreError) async -> [(Int, Result<ArraySlice<UInt8>, any Error>)] {
        index.withLock { _ = $0.collected.insert(read.pack) }
        try? await loadIndex()
        var chunks: [(Int, Result<ArraySlice<UInt8>, any Error>)] = []
        for slice in read.chunks {
            let result: Result<ArraySlice<UInt8>, any Error>
            if let other = index.withLock({ $0.preferredLocation(slice.id) }), other.pack != read.pack {
                do {
                    let bytes = try await store.get(PackFormat.key(other.pack), range: Int64(other.offset)..<Int64(other.offset) + Int64(other.length))
                    if bytes.withUnsafeBytes({ SHA256.hash($0) }) == slice.id {
                        result = .success(bytes[...])
                    } else {
                        result = .failure(ShareError(.corrupt, share: name, object: PackFormat.key(other.pack), cause: "chunk \(slice.id.hex) at offset \(other.offset) fails its SHA-256 check"))
                    }
                } catch {
                    result = .failure(error)
                }
            } else {
                result = .failure(ShareError(.missingChunk, share: name, object: PackFormat.key(read.pack),
                                             cause: "chunk \(slice.id.hex): its pack is gone (\(error.cause)) and no other copy is known"))
            }
            for request in slice.requests { chunks.append((request, result)) }
        }
        return chunks.sorted { $0.0 < $1.0 }
    }

    /// One GET of `read`, sliced into its chunks, each checked against its SHA-256; by request index.
    private func fetch(_ read: ChunkReadPlan.Read) async -> [(Int, Result<ArraySlice<UInt8>, any Error>)] {
        let key = PackFormat.key(read.pack)
        let bytes: [UInt8]
        do {
            bytes = try await store.get(key, range: Int64(read.range.lowerBound)..<Int64(read.range.upperBound))
        } catch let error as StoreError where error.code == .notFound {
            return await readElsewhere(read, error)
        } catch {
            return read.requests.map { ($0, .failure(error)) }
        }
        var chunks: [(Int, Result<ArraySlice<UInt8>, any Error>)] = []
        for slice in read.chunks {
            let start = Int(slice.offset - read.range.lowerBound), end = start + Int(slice.length)
            // A short answer (a truncated pack) fails the chunks past its end, not those before.
            let result: Result<ArraySlice<UInt8>, any Error>
            if end <= bytes.count, bytes[start..<end].withUnsafeBytes({ SHA256.hash($0) }) == slice.id {
                result = .success(bytes[start..<end])
            } else {
                result = .failure(ShareError(.corrupt, share: name, object: key,
                                             cause: "chunk \(slice.id.hex) at offset \(slice.offset) fails its SHA-256 check (pack corrupt or truncated)"))
            }
            for request in slice.requests { chunks.append((request, result)) }
        }
        return chunks.sorted { $0.0 < $1.0 }
    }
}

/// A read's chunks crossing the task group as one reference: tuple results came back corrupted from task
/// groups in the optimized build (Swift 6.3.1).
private final class FetchedRead: Sendable {
    let index: Int
    let chunks: [(Int, Result<ArraySlice<UInt8>, any Error>)]

    init(index: Int, chunks: [(Int, Result<ArraySlice<UInt8>, any Error>)]) {
        self.index = index
        self.chunks = chunks
    }
}
