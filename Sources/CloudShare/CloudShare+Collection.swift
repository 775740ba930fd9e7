import Backends
import Foundation
import Hashing

/// The writer's side of garbage collection (docs/gc.md): which packs not to deduplicate against, and
/// appending a commit only after checking, shortly before, that none of its chunks lives only in a
/// pack a collector is about to delete.
extension CloudShare {
    /// The safety interval writers assume when no record names a shorter one: the collector's default.
    public static let defaultSafetyInterval: Double = 3600

    /// Reads the collection records (`gc/pending/`, `gc/deleted/`) not read yet and marks their packs
    /// as collected: writers no longer deduplicate against them, and readers prefer other copies.
    public func refreshCollected() async throws {
        var fresh: [String] = []
        for prefix in CollectionRecord.prefixes {
            let keys = try await store.listAll(prefix: prefix).map(\.key)
            fresh += index.withLock { table in keys.filter { !table.collectionRecords.contains($0) } }
        }
        for key in fresh {
            let record: CollectionRecord
            do {
                record = try CollectionRecord.decode(try await store.get(key), share: name, key: key)
            } catch let error as StoreError where error.code == .notFound {
                continue // a pending record moved to gc/deleted/ meanwhile: read there
            }
            index.withLock { table in
                table.collectionRecords.insert(key)
                table.collected.formUnion(record.packIDs)
                table.smallestSafetyInterval = min(table.smallestSafetyInterval ?? record.safetyInterval, record.safetyInterval)
            }
        }
    }

    /// Packs marked for deletion or deleted by a garbage collector, as far as this process has read.
    public var collectedPacks: Set<Digest32> {
        index.withLock { $0.collected }
    }

    /// How long a writer's check of the collection records stays good: half the smallest safety
    /// interval in use (the default, or a shorter one some record names). See docs/gc.md.
    public var collectionCheckValidity: Duration {
        let interval = index.withLock { $0.smallestSafetyInterval }.map { min($0, Self.defaultSafetyInterval) } ?? Self.defaultSafetyInterval
        return .milliseconds(Int64(interval * 500))
    }

    /// Chunks `operations` reference whose only known copies are in collected packs.
    func chunksOnlyInCollectedPacks(_ operations: [NamespaceOperation]) -> [Digest32] {
        index.withLock { table in
            var found: Set<Digest32> = []
            for operation in operations {
                for chunk in operation.entry?.chunks ?? [] {
                    // A chunk not in the index was referenced by an earlier commit (this session
                    // indexed every chunk it stored or reused): the collector keeps it.
                    guard let location = table.preferredLocation(chunk.id), table.collected.contains(location.pack) else { continue }
                    found.insert(chunk.id)
                }
            }
            return found.sorted { $0.hex < $1.hex }
        }
    }

    /// Builds the commit of `operations` and hands it to `append` (which writes it to the log) only
    /// after the collection records were read again and no chunk it references lives only in a pack
    /// marked for deletion; such chunks are stored again through `uploader` first. When the check is
    /// older than ``collectionCheckValidity`` (half the safety interval) by the time `append` would run,
    /// it is made again. Every writer appends through here.
    ///
    /// Throws `missingChunk` when a chunk's only copy was already deleted (the writer decided to reuse
    /// it before the collector's record existed and took longer than the safety interval): nothing is
    /// appended, and the next upload session stores the content again.
    public func appendCommit<Result: Sendable>(author: String, authorName: String, operations: [NamespaceOperation], uploader: PackUploader,
                                               append: @Sendable (Commit) async throws -> Result) async throws -> Result {
        // The commit names the packs of the chunks it references, and the check below needs their
        // locations: both come from the index, loaded again when it does not place a chunk (one stored
        // since it was loaded, by another server, in a commit this one did not fetch).
        let referenced = operations.flatMap { $0.entry?.chunks.map(\.id) ?? [] }
        if !referenced.isEmpty { _ = try await placements(referenced) }
        for _ in 0..<8 {
            try await uploader.finish()
            let checked = ContinuousClock.now
            try await refreshCollected()
            let doomed = chunksOnlyInCollectedPacks(operations)
            if !doomed.isEmpty {
                for chunk in doomed {
                    let bytes: [UInt8]
                    do {
                        bytes = try await readChunk(chunk)
                    } catch let error as ShareError {
                        throw ShareError(.missingChunk, share: name, object: "chunk \(chunk.hex)",
                                         cause: "its only copy was in a pack the garbage collector deleted while this upload ran; nothing was committed, and the next pass stores the content again (\(error.cause))")
                    }
                    try await uploader.addAgain(id: chunk, bytes: bytes)
                }
                continue // finish the new packs, then check again
            }
            let commit = commit(author: author, authorName: authorName, operations: operations)
            guard ContinuousClock.now - checked < collectionCheckValidity else { continue }
            return try await append(commit)
        }
        throw ShareError(.missingChunk, share: name, object: "gc/pending/",
                         cause: "the garbage collector kept marking this commit's chunks for deletion; nothing was committed (retried at the next pass)")
    }
}
