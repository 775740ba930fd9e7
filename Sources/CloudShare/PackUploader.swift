import Backends
import Hashing

/// One upload session: takes chunks, skips those the share (or this session) already has, fills packs
/// to the share's target size, and uploads full packs in parallel with their index segments.
///
/// Owned by one task at a time. `finish()` must be called before the chunks are referenced by a commit:
/// it uploads the last pack and waits until every pack and index segment is durable in the store.
public final class PackUploader {
    private let share: CloudShare
    private let parallelUploads: Int
    private var pack: PackWriter
    private var packChunks: Set<Digest32> = []
    private var sessionChunks: Set<Digest32> = []
    private var uploads: [Task<Void, any Error>] = []
    /// Ids of the packs this session stored.
    public private(set) var packs: [Digest32] = []
    /// Bytes of new chunk data this session stored.
    public private(set) var storedBytes: Int64 = 0
    /// Chunks this session skipped because the share already had them.
    public private(set) var dedupedChunks = 0

    init(share: CloudShare, parallelUploads: Int) {
        self.share = share
        self.parallelUploads = max(1, parallelUploads)
        pack = PackWriter(capacity: share.manifest.packSize + (1 << 20))
    }

    /// Adds a chunk whose SHA-256 is `id`; returns true when it is new to the share.
    @discardableResult
    public func add(id: Digest32, bytes: [UInt8]) async throws -> Bool {
        if sessionChunks.contains(id) || share.location(of: id) != nil {
            dedupedChunks += 1
            return false
        }
        sessionChunks.insert(id)
        bytes.withUnsafeBytes { pack.add(id: id, bytes: $0) }
        storedBytes += Int64(bytes.count)
        if pack.size >= share.manifest.packSize {
            try await flush()
        }
        return true
    }

    /// Seals the current pack and starts its upload, waiting first if too many are in flight.
    private func flush() async throws {
        guard !pack.isEmpty else { return }
        let sealed = pack.seal()
        pack = PackWriter(capacity: share.manifest.packSize + (1 << 20))
        packs.append(sealed.id)
        if uploads.count >= parallelUploads {
            try await uploads.removeFirst().value
        }
        let share = self.share
        uploads.append(Task {
            try await share.store.put(PackFormat.key(sealed.id), bytes: sealed.bytes)
            try await share.store.put(IndexSegment.key(sealed.id), bytes: IndexSegment.encode(pack: sealed.id, chunks: sealed.chunks))
            share.record(pack: sealed.id, chunks: sealed.chunks)
        })
    }

    /// Uploads the last pack and waits for every upload; after it returns, all added chunks are readable.
    public func finish() async throws {
        try await flush()
        var firstError: (any Error)?
        for upload in uploads {
            do { try await upload.value } catch { firstError = firstError ?? error }
        }
        uploads.removeAll()
        if let firstError { throw firstError }
    }
}
