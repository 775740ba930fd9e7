import Backends
import Hashing

/// One upload session: takes chunks, skips those the share (or this session) already has, fills packs
/// to the share's target size, and uploads full packs in parallel with their index segments.
///
/// An actor: several readers (a migration's parallel file readers) may add chunks at once. `finish()`
/// must be called before the chunks are referenced by a commit: it uploads the current pack and waits
/// until every pack sealed so far and its index segment are durable in the store.
public actor PackUploader {
    private let share: CloudShare
    private let parallelUploads: Int
    private var pack: PackWriter
    private var sessionChunks: Set<Digest32> = []
    private var uploads: [Task<Void, any Error>] = []
    /// Ids of the packs this session stored.
    public private(set) var packs: [Digest32] = []
    /// Bytes of new chunk data this session stored.
    public private(set) var storedBytes: Int64 = 0
    /// Chunks this session skipped because the share already had them.
    public private(set) var dedupedChunks = 0
    /// Reads the garbage collector's records and loads the share's index, once, at the session's first
    /// chunk; every chunk waits for it (a chunk added meanwhile must not be judged on an empty index).
    private var opening: Task<Void, any Error>?

    init(share: CloudShare, parallelUploads: Int) {
        self.share = share
        self.parallelUploads = max(1, parallelUploads)
        pack = PackWriter(capacity: share.manifest.packSize + (1 << 20))
    }

    /// Adds a chunk whose SHA-256 is `id`; returns true when it is new to the share.
    @discardableResult
    public func add(id: Digest32, bytes: [UInt8]) async throws -> Bool {
        if opening == nil {
            // Packs a collector marked for deletion since the share was opened are not deduplicated against.
            opening = Task { [share] in
                try await share.refreshCollected()
                try await share.ensureIndexLoaded()
            }
        }
        try await opening!.value
        // No suspension from here to the insert: two readers adding one chunk store it once.
        if sessionChunks.contains(id) || share.hasIndexedCopy(id) {
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

    /// Stores a chunk again although this session or the share has it: its known copies are in packs a
    /// garbage collector marked for deletion (see ``CloudShare/appendCommit(author:authorName:operations:uploader:append:)``).
    func addAgain(id: Digest32, bytes: [UInt8]) async throws {
        sessionChunks.insert(id)
        bytes.withUnsafeBytes { pack.add(id: id, bytes: $0) }
        storedBytes += Int64(bytes.count)
        if pack.size >= share.manifest.packSize {
            try await flush()
        }
    }

    /// Seals the current pack and starts its upload, waiting first if too many are in flight. The pack
    /// is replaced before any suspension, so a chunk added meanwhile lands in the next pack.
    private func flush() async throws {
        guard !pack.isEmpty else { return }
        var sealed = pack.seal()
        if share.collectedPacks.contains(sealed.id) {
            // Pack ids are content hashes: the same chunks in the same order make the same pack again, and
            // this one is being collected. A random filler chunk gives the copy an id of its own.
            let filler = (0..<32).map { _ in UInt8.random(in: 0...255) }
            var salted = PackWriter(capacity: sealed.bytes.count + filler.count)
            for chunk in sealed.chunks {
                let range = Int(chunk.location.offset)..<Int(chunk.location.offset) + Int(chunk.location.length)
                sealed.bytes[range].withUnsafeBytes { salted.add(id: chunk.id, bytes: $0) }
            }
            filler.withUnsafeBytes { salted.add(id: SHA256.hash(filler), bytes: $0) }
            sealed = salted.seal()
        }
        pack = PackWriter(capacity: share.manifest.packSize + (1 << 20))
        packs.append(sealed.id)
        let share = self.share
        uploads.append(Task {
            try await share.store.put(PackFormat.key(sealed.id), bytes: sealed.bytes)
            try await share.store.put(IndexSegment.key(sealed.id), bytes: IndexSegment.encode(pack: sealed.id, chunks: sealed.chunks))
            share.record(pack: sealed.id, chunks: sealed.chunks)
        })
        while uploads.count > parallelUploads {
            try await uploads.removeFirst().value
        }
    }

    /// Uploads the current pack and waits for every upload started so far (also those started by adds
    /// that ran while it waited); after it returns, every chunk added before the call is readable.
    public func finish() async throws {
        try await flush()
        var firstError: (any Error)?
        while !uploads.isEmpty {
            do { try await uploads.removeFirst().value } catch { firstError = firstError ?? error }
        }
        if let firstError { throw firstError }
    }
}
