import Backends
import Foundation
import Hashing
import Synchronization

/// A cloud share: the on-store format (manifest, packs, index segments, commit log, snapshots) over
/// one ``ObjectStore``. It knows nothing of local files.
public final class CloudShare: Sendable {
    /// The store holding the share.
    public let store: any ObjectStore
    /// The share's `share.json`.
    public let manifest: ShareManifest
    /// The commit log.
    public let log: CommitLog
    let index = Mutex<ChunkTable>(ChunkTable())
    /// The files of the snapshot the history begins at, by file id (see ``committedEntry(fileID:version:)``).
    let compacted = Mutex<(base: UInt64, files: [String: NamespaceEntry])?>(nil)

    struct ChunkTable {
        /// The first load of every index segment in the store (see ``ensureIndexLoaded()``): callers that
        /// need the index at once (parallel download batches) share it; a failed one is tried again.
        var firstLoad: Task<Void, any Error>?
        var locations = ChunkLocations()
        /// Packs whose chunk list is known (from the index segment, or from the trailer when the segment is damaged).
        var loadedPacks: Set<Digest32> = []
        /// Packs whose index segment could not be read, with the reason; their chunks are found from the
        /// pack's trailer when a chunk is not found elsewhere.
        var damagedSegments: [Digest32: String] = [:]
        /// Packs whose chunks were recorded from their trailer, not from an index segment.
        var trailerPacks: Set<Digest32> = []
        /// Trailer reads in flight, so that parallel readers of one damaged pack share one read.
        var trailerReads: [Digest32: Task<String?, Never>] = [:]
        /// Packs the garbage collector marked for deletion or deleted (see CloudShare+Collection.swift):
        /// never deduplicated against, read only when no other copy of a chunk is known.
        var collected: Set<Digest32> = []
        /// Collection records already read, by key, and the smallest safety interval they named.
        var collectionRecords: Set<String> = []
        var smallestSafetyInterval: Double?
        /// Other copies of chunks stored in more than one pack (rare: racing writers, or a chunk stored
        /// again because its pack was being collected), so that a collected copy is never the only one known.
        var alternates: [Digest32: [ChunkLocation]] = [:]

        /// Whether a writer may reference the copy at `location` instead of storing the chunk again.
        func isDedupable(_ location: ChunkLocation) -> Bool {
            !trailerPacks.contains(location.pack) && !collected.contains(location.pack)
        }

        /// The copy of `chunk` to read or to name in a commit: the primary one unless its pack is
        /// collected and another copy is known.
        func preferredLocation(_ chunk: Digest32) -> ChunkLocation? {
            guard let primary = locations[chunk] else { return nil }
            guard collected.contains(primary.pack) else { return primary }
            return alternates[chunk]?.first { !collected.contains($0.pack) } ?? primary
        }
        /// The end of each pack's last known chunk, for planning reads (see ``ChunkReadPlan``).
        var packBytes: [Digest32: UInt64] = [:]
    }

    /// The share as printed in messages.
    public var name: String { store.displayName }

    private init(store: any ObjectStore, manifest: ShareManifest) {
        self.store = store
        self.manifest = manifest
        log = CommitLog(store: store, writesBinary: manifest.format >= 2)
    }

    /// Creates a new, empty share in `store`; refuses when one exists there.
    public static func create(in store: any ObjectStore, manifest: ShareManifest = ShareManifest()) async throws -> CloudShare {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        do {
            try await store.putIfAbsent(ShareManifest.key, bytes: Array(try encoder.encode(manifest)))
        } catch let error as StoreError where error.code == .alreadyExists {
            throw ShareError(.shareExists, share: store.displayName, object: ShareManifest.key, cause: "a share already exists here")
        }
        return CloudShare(store: store, manifest: manifest)
    }

    /// Opens the share in `store`. Its chunk index is not loaded here: the first question that needs it
    /// (``hasIndexed(_:)``, ``location(of:)``, a read, a commit that references chunks) loads it, so a pass
    /// or a command that needs only the manifest and the log never pays for it.
    public static func open(_ store: any ObjectStore) async throws -> CloudShare {
        let bytes: [UInt8]
        do {
            bytes = try await store.get(ShareManifest.key)
        } catch let error as StoreError where error.code == .notFound {
            throw ShareError(.noShare, share: store.displayName, object: ShareManifest.key, cause: "no share here (create one with `tiergate share create`)")
        }
        struct Version: Decodable { var format: Int }
        guard let version = try? JSONDecoder().decode(Version.self, from: Data(bytes)) else {
            throw ShareError(.corrupt, share: store.displayName, object: ShareManifest.key, cause: "not a share manifest (unreadable JSON)")
        }
        guard ShareManifest.readableFormats.contains(version.format) else {
            throw ShareError(.unsupportedFormat, share: store.displayName, object: ShareManifest.key,
                             cause: "share format version \(version.format) is not supported (this build reads versions \(ShareManifest.readableFormats.lowerBound) to \(ShareManifest.readableFormats.upperBound))")
        }
        let manifest: ShareManifest
        do {
            manifest = try JSONDecoder().decode(ShareManifest.self, from: Data(bytes))
        } catch {
            throw ShareError(.corrupt, share: store.displayName, object: ShareManifest.key, cause: "malformed manifest: \(error)")
        }
        return CloudShare(store: store, manifest: manifest)
    }

    /// Checks that the store still holds this share (its `share.json`, same id): a share deleted or
    /// replaced under a running writer must stop it before it writes anything.
    public func checkIdentity() async throws {
        let bytes: [UInt8]
        do {
            bytes = try await store.get(ShareManifest.key)
        } catch let error as StoreError where error.code == .notFound {
            throw ShareError(.noShare, share: name, object: ShareManifest.key, cause: "the share is gone (deleted or moved); nothing was synced")
        }
        struct Identity: Decodable { var shareID: String }
        guard let identity = try? JSONDecoder().decode(Identity.self, from: Data(bytes)) else {
            throw ShareError(.corrupt, share: name, object: ShareManifest.key, cause: "not a share manifest (unreadable JSON)")
        }
        guard identity.shareID == manifest.shareID else {
            throw ShareError(.noShare, share: name, object: ShareManifest.key,
                             cause: "the store now holds another share (\(identity.shareID), not \(manifest.shareID)); nothing was synced")
        }
    }

    /// Loads index segments of packs not yet known (all of them, on first call). A segment that is
    /// damaged does not stop the load: it is recorded (see ``damagedIndexSegments``) and its pack's
    /// chunks are found from the pack's trailer when they are needed.
    public func loadIndex() async throws {
        let segments = try await store.listAll(prefix: "index/")
        try await refreshCollected()
        let known = index.withLock { $0.loadedPacks.union($0.damagedSegments.keys) }
        let missing = segments.compactMap { Digest32(hex: $0.key.dropFirst("index/".count)) }.filter { !known.contains($0) }
        try await loadSegments(missing)
    }

    /// Loads the chunk index unless it was loaded once already (later packs become known through
    /// ``ensureIndexed(packs:)`` as commits are applied, and through ``loadIndex()`` on a miss).
    public func ensureIndexLoaded() async throws {
        let load = index.withLock { table in
            if let running = table.firstLoad { return running }
            let load = Task { try await self.loadIndex() }
            table.firstLoad = load
            return load
        }
        do {
            try await load.value
        } catch {
            index.withLock { table in if table.firstLoad == load { table.firstLoad = nil } }
            throw error
        }
    }

    /// Loads the index segments of `packs` unless already loaded (called when applying commits).
    public func ensureIndexed(packs: [String]) async throws {
        let known = index.withLock { $0.loadedPacks.union($0.damagedSegments.keys) }
        try await loadSegments(packs.compactMap { Digest32(hex: $0) }.filter { !known.contains($0) })
    }

    /// Packs whose index segment is damaged or missing, with the reason, by pack id.
    public var damagedIndexSegments: [Digest32: String] {
        index.withLock { $0.damagedSegments }
    }

    private func loadSegments(_ packs: [Digest32]) async throws {
        try await withThrowingTaskGroup(of: (Digest32, Result<[(id: Digest32, location: ChunkLocation)], ShareError>).self) { group in
            var pending = packs[...]
            func next() {
                guard let pack = pending.popFirst() else { return }
                group.addTask {
                    let key = IndexSegment.key(pack)
                    let bytes: [UInt8]
                    do {
                        bytes = try await self.store.get(key)
                    } catch let error as StoreError where error.code == .notFound {
                        return (pack, .failure(ShareError(.corrupt, share: self.name, object: key, cause: "index segment missing")))
                    }
                    // Only damage is recorded; a store that fails (network, permissions) still stops the load.
                    do {
                        return (pack, .success(try IndexSegment.decode(bytes, share: self.name, name: key)))
                    } catch let error as ShareError {
                        return (pack, .failure(error))
                    }
                }
            }
            for _ in 0..<8 { next() }
            while let (pack, result) = try await group.next() {
                switch result {
                case .success(let chunks): record(pack: pack, chunks: chunks)
                case .failure(let error): index.withLock { $0.damagedSegments[pack] = error.cause }
                }
                next()
            }
        }
    }

    /// Records where `pack`'s chunks are. Chunks known only from a pack's trailer (its index segment is
    /// damaged) are readable but never deduplicated against, and an indexed copy takes their place, so
    /// that new commits only name packs whose index segment is whole.
    func record(pack: Digest32, chunks: [(id: Digest32, location: ChunkLocation)], fromTrailer: Bool = false) {
        index.withLock { table in
            table.loadedPacks.insert(pack)
            if fromTrailer { table.trailerPacks.insert(pack) } else { table.trailerPacks.remove(pack) }
            for chunk in chunks {
                table.packBytes[pack] = max(table.packBytes[pack] ?? 0, chunk.location.offset + UInt64(chunk.location.length))
                if let known = table.locations[chunk.id], known.pack != pack {
                    // Keep the copy a writer may dedup against as the primary; remember the other.
                    let keepKnown = table.isDedupable(known) || (fromTrailer || table.collected.contains(pack))
                    let other = keepKnown ? chunk.location : known
                    if !(table.alternates[chunk.id]?.contains { $0.pack == other.pack } ?? false) {
                        table.alternates[chunk.id, default: []].append(other)
                    }
                    if keepKnown { continue }
                }
                table.locations.set(chunk.location, for: chunk.id)
            }
        }
    }

    /// Whether a writer may reference the stored copy of `chunk` instead of storing it: it is in a pack
    /// whose index segment is whole and that the garbage collector has not marked for deletion.
    public func hasIndexed(_ chunk: Digest32) async throws -> Bool {
        try await ensureIndexLoaded()
        return hasIndexedCopy(chunk)
    }

    /// ``hasIndexed(_:)`` without loading the index: for a caller that loaded it already and must not suspend.
    func hasIndexedCopy(_ chunk: Digest32) -> Bool {
        index.withLock { table in
            guard let location = table.locations[chunk] else { return false }
            if table.isDedupable(location) { return true }
            guard let other = table.alternates[chunk]?.first(where: { table.isDedupable($0) }) else { return false }
            table.alternates[chunk]?.removeAll { $0.pack == other.pack }
            table.alternates[chunk, default: []].append(location)
            table.locations.set(other, for: chunk)
            return true
        }
    }

    /// Where a chunk is stored, if the share has it (a copy outside collected packs when one is known).
    public func location(of chunk: Digest32) async throws -> ChunkLocation? {
        try await placements([chunk])[chunk]
    }

    /// Which of `ids` no pack of the share holds.
    public func unstoredChunks(_ ids: Set<Digest32>) async throws -> Set<Digest32> {
        let placed = try await placements(ids)
        return ids.filter { placed[$0] == nil }
    }

    /// Where each of `ids` is stored, from the index: loaded first, and loaded again once when it does
    /// not place one of them (stored since it was loaded, by another server, in a commit this process did
    /// not fetch). A chunk no pack holds is not in the answer.
    func placements(_ ids: some Collection<Digest32>) async throws -> [Digest32: ChunkLocation] {
        try await ensureIndexLoaded()
        func lookUp() -> [Digest32: ChunkLocation] {
            index.withLock { table in
                var found: [Digest32: ChunkLocation] = [:]
                for id in ids { if let location = table.preferredLocation(id) { found[id] = location } }
                return found
            }
        }
        let found = lookUp()
        guard ids.contains(where: { found[$0] == nil }) else { return found }
        try await loadIndex()
        return lookUp()
    }

    /// Counts of the loaded index: chunks, packs and stored chunk bytes.
    public func indexFigures() -> (chunks: Int, packs: Int, chunkBytes: Int64) {
        index.withLock { table in
            (table.locations.count, table.loadedPacks.count, table.locations.totalLength)
        }
    }

    /// Reads one chunk and verifies its SHA-256; a mismatch is a `corrupt` error naming the pack. Many
    /// chunks are read with ``readChunks(_:order:parallelReads:limits:deliver:)``, which coalesces GETs.
    public func readChunk(_ id: Digest32) async throws -> [UInt8] {
        var chunk: Result<ArraySlice<UInt8>, any Error>?
        try await readChunks([id]) { _, result in chunk = result }
        return Array(try chunk!.get())
    }

    /// Where `ids` are stored, or why a chunk cannot be found: the loaded index first; for chunks not in
    /// it, the index segments in the store, then the trailers of packs whose segment is damaged or
    /// missing. A chunk found nowhere is a `missingChunk` error naming the pack that may hold it.
    func locate(_ ids: some Sequence<Digest32>) async -> [Digest32: Result<ChunkLocation, any Error>] {
        var found: [Digest32: Result<ChunkLocation, any Error>] = [:]
        var missing: Set<Digest32> = []
        do {
            try await ensureIndexLoaded()
        } catch {
            for id in ids { found[id] = .failure(error) }
            return found
        }
        index.withLock { table in
            for id in ids {
                if let location = table.preferredLocation(id) { found[id] = .success(location) } else { missing.insert(id) }
            }
        }
        guard !missing.isEmpty else { return found }
        func take() {
            index.withLock { table in
                for id in missing {
                    if let location = table.preferredLocation(id) { found[id] = .success(location) }
                }
            }
            missing.subtract(found.keys)
        }
        do {
            // A commit may name too few packs (written by an older build, or its writer lost a race
            // before the packs were listed): the index segments in the store are the truth.
            try await loadIndex()
            take()
            var unreadable: [(pack: Digest32, cause: String)] = []
            if !missing.isEmpty {
                // The chunk may be in a pack whose index segment is damaged or missing: its trailer lists its chunks.
                try await recordPacksWithoutSegments()
                unreadable = await readDamagedPackTrailers()
                take()
            }
            for id in missing {
                if let first = unreadable.first {
                    let others = unreadable.count > 1 ? " (and \(unreadable.count - 1) more packs like it)" : ""
                    found[id] = .failure(ShareError(.missingChunk, share: name, object: PackFormat.key(first.pack),
                                                    cause: "chunk \(id.hex) is in no known pack; it may be in this pack, whose index segment is damaged (\(damagedIndexSegments[first.pack] ?? "unreadable")) and whose trailer is unreadable (\(first.cause))\(others)"))
                } else {
                    found[id] = .failure(ShareError(.missingChunk, share: name, object: "chunk \(id.hex)", cause: "the chunk is in no known pack"))
                }
            }
        } catch {
            for id in missing where found[id] == nil { found[id] = .failure(error) }
        }
        return found
    }

    /// The chunk bytes of each pack in `packs` that the index knows (the end of its last chunk).
    func packBytes(_ packs: some Sequence<Digest32>) -> [Digest32: UInt64] {
        index.withLock { table in
            var result: [Digest32: UInt64] = [:]
            for pack in packs { result[pack] = table.packBytes[pack] }
            return result
        }
    }

    /// Records packs in the store that have no index segment (lost, or never written by a writer that
    /// stopped between the two puts) as damaged, so that their trailers are read.
    private func recordPacksWithoutSegments() async throws {
        let segments = Set(try await store.listAll(prefix: "index/").map { $0.key.dropFirst("index/".count) })
        let packs = try await store.listAll(prefix: "packs/").compactMap { Digest32(hex: $0.key.split(separator: "/").last ?? "") }
        index.withLock { table in
            for pack in packs where !segments.contains(Substring(pack.hex)) && !table.loadedPacks.contains(pack) && table.damagedSegments[pack] == nil {
                table.damagedSegments[pack] = "index segment missing"
            }
        }
    }

    /// Reads the trailers of packs whose index segment is damaged and whose chunks are not known yet,
    /// and records their chunks. Returns the packs whose trailer could not be read either, with why.
    private func readDamagedPackTrailers() async -> [(pack: Digest32, cause: String)] {
        let reads: [(Digest32, Task<String?, Never>)] = index.withLock { table in
            table.damagedSegments.keys.filter { !table.loadedPacks.contains($0) }.map { pack in
                if let running = table.trailerReads[pack] { return (pack, running) }
                let read = Task<String?, Never> {
                    defer { self.index.withLock { _ = $0.trailerReads.removeValue(forKey: pack) } }
                    do {
                        let entries = try await PackFormat.readTrailer(of: pack, in: self.store)
                        self.record(pack: pack, chunks: entries.map { ($0.id, ChunkLocation(pack: pack, offset: $0.offset, length: $0.length)) },
                                    fromTrailer: true)
                        return nil
                    } catch {
                        return "\(error)"
                    }
                }
                table.trailerReads[pack] = read
                return (pack, read)
            }
        }
        var unreadable: [(pack: Digest32, cause: String)] = []
        for (pack, read) in reads {
            if let cause = await read.value { unreadable.append((pack, cause)) }
        }
        return unreadable.sorted { $0.pack.hex < $1.pack.hex }
    }

    /// Reads a pack whole and checks its id, trailer and every chunk: the `verify` of one pack.
    public func verifyPack(_ pack: Digest32) async throws -> Int {
        let key = PackFormat.key(pack)
        let check = try PackFormat.check(try await store.get(key), pack: pack, share: name)
        if let bad = check.badChunks.first {
            throw ShareError(.corrupt, share: name, object: key, cause: "chunk \(bad.hex) fails its SHA-256 check")
        }
        guard check.matchesID else {
            throw ShareError(.corrupt, share: name, object: key, cause: "pack content does not match its id (corrupt or truncated)")
        }
        return check.entries.count
    }

    /// A commit of `operations` that names every pack holding a chunk its upserts reference, so a
    /// reader that indexes only the packs a commit names can read all of it. Computed from the index,
    /// not from one upload session: a retried commit reuses the packs its lost attempt uploaded.
    public func commit(author: String, authorName: String, operations: [NamespaceOperation]) -> Commit {
        var packs: Set<Digest32> = []
        index.withLock { table in
            for operation in operations {
                for chunk in operation.entry?.chunks ?? [] {
                    if let location = table.preferredLocation(chunk.id) { packs.insert(location.pack) }
                }
            }
        }
        return Commit(author: author, authorName: authorName, packs: packs.map(\.hex).sorted(), operations: operations)
    }

    /// A new upload session that packs and stores chunks the share does not have yet.
    public func makeUploader(parallelUploads: Int = 4) -> PackUploader {
        PackUploader(share: self, parallelUploads: parallelUploads)
    }

    /// Replays the whole log (from the newest snapshot) into a namespace.
    public func namespace() async throws -> Namespace {
        var namespace = try await latestSnapshot() ?? Namespace()
        for try await commit in log.reading(after: namespace.sequence) {
            namespace.apply(commit)
        }
        return namespace
    }

    /// The namespace as it was right after `sequence` (the newest snapshot at or before it, then the log
    /// up to it); throws when the log has not reached `sequence`, or no longer reaches back to it.
    public func namespace(through sequence: UInt64) async throws -> Namespace {
        let history = try await history()
        guard sequence >= history.base else {
            throw ShareError(.badLog, share: name, object: CommitLog.key(sequence),
                             cause: "version #\(sequence) is older than the share's history, which begins at #\(history.base): log compaction deleted the records before it (the version is outside the share's retention)")
        }
        var namespace = Namespace()
        if let start = history.snapshots.last(where: { $0 >= history.base && $0 <= sequence }) { namespace = try await snapshot(at: start) }
        for try await commit in log.reading(after: namespace.sequence) {
            guard commit.sequence <= sequence else { break }
            namespace.apply(commit)
        }
        guard namespace.sequence == sequence else {
            throw ShareError(.badLog, share: name, object: CommitLog.key(sequence), cause: "the log ends at \(namespace.sequence); there is no sequence \(sequence)")
        }
        return namespace
    }

    /// The namespace where the share's history begins (see ``historyBase()``): the snapshot there, or
    /// the empty namespace when the whole log is there. Its sequence is that beginning.
    public func historyStart() async throws -> Namespace {
        let base = try await historyBase()
        return base > 0 ? try await snapshot(at: base) : Namespace()
    }

    /// The namespace as of `date`: the log applied through its last commit written at or before `date`
    /// (a commit's time is its author's clock; the log's order stays the truth, so an earlier record
    /// stamped later by a fast clock is still applied before it). Throws when the share's history (see
    /// ``historyBase()``) begins after `date`: the namespace then is not known.
    public func namespace(asOf date: Date) async throws -> Namespace {
        var namespace = try await historyStart()
        let base = namespace.sequence
        var found = base == 0
        // Records stamped after `date` wait here until a later one stamped at or before it applies them.
        var waiting: [Commit] = []
        for try await commit in log.reading(after: base) {
            waiting.append(commit)
            guard commit.time <= date.timeIntervalSince1970 else { continue }
            for record in waiting { namespace.apply(record) }
            waiting.removeAll()
            found = true
        }
        guard found else {
            throw ShareError(.badLog, share: name, object: CloudShare.snapshotKey(base),
                             cause: "the share's history begins at #\(base), after \(ISO8601DateFormatter().string(from: date)): log compaction deleted the records before it (that time is outside the share's retention)")
        }
        return namespace
    }

    /// The sequence the share's history begins at: every version from it on can be rebuilt (0: the whole
    /// log is there). Log compaction (`share gc` under a retention policy) deletes the records before it.
    /// See ``CommitLog/base(firstRecord:snapshots:)``.
    public func historyBase() async throws -> UInt64 {
        try await history().base
    }

    /// Where the share's history begins, and the snapshots' sequences (ascending), from one listing of each.
    private func history() async throws -> (base: UInt64, snapshots: [UInt64]) {
        let snapshots = try await snapshotSequences()
        guard let first = try await log.first(), first > 1 else { return (0, snapshots) }
        guard let base = CommitLog.base(firstRecord: first, snapshots: snapshots) else {
            throw ShareError(.badLog, share: name, object: CommitLog.key(first - 1),
                             cause: "missing log records: the log begins at \(first) and no snapshot stands for the sequences before it")
        }
        return (base, snapshots)
    }

    /// The file entry the share committed for `fileID` at `version` (from the record at `version`,
    /// whose upsert wrote that content; nil when it names no such file). Once log compaction deleted
    /// that record, the file is looked up in the snapshot the history begins at: a version some server
    /// still holds is in every namespace from its commit to that server's cursor, so it is there, under
    /// its file id with that version (perhaps renamed). The snapshot's files are cached for one base.
    public func committedEntry(fileID: String, version: UInt64) async throws -> NamespaceEntry? {
        do {
            let commit = try await log.read(version)
            try await ensureIndexed(packs: commit.packs)
            return commit.operations.last(where: { $0.op == .upsert && $0.entry?.fileID == fileID && $0.entry?.kind == .file })?.entry
        } catch let error as StoreError where error.code == .notFound {
            let base = try await historyBase()
            guard version <= base else { throw error }
            let files: [String: NamespaceEntry]
            if let cached = compacted.withLock({ $0 }), cached.base == base {
                files = cached.files
            } else {
                var byFileID: [String: NamespaceEntry] = [:]
                if base > 0 {
                    for entry in try await snapshot(at: base).entries.values where entry.kind == .file { byFileID[entry.fileID] = entry }
                }
                compacted.withLock { $0 = (base, byFileID) }
                files = byFileID
            }
            guard let entry = files[fileID], (entry.version ?? base) == version else { return nil }
            return entry
        }
    }

    /// The sequences of the share's snapshots, ascending (a listing, no read).
    public func snapshotSequences() async throws -> [UInt64] {
        try await store.listAll(prefix: Self.snapshotPrefix).compactMap { Self.snapshotSequence(ofKey: $0.key) }.sorted()
    }

    /// The snapshot at `sequence`.
    func snapshot(at sequence: UInt64) async throws -> Namespace {
        try await Self.readSnapshot(Namespace.self, key: Self.snapshotKey(sequence), from: store)
    }

    /// Reads the snapshot object `key` as `type` (a ``Namespace``, or a ``CompactNamespace`` where only
    /// paths and chunks matter); one that does not decode is corrupt, and `consequence` says what that stopped.
    static func readSnapshot<T: Decodable>(_ type: T.Type, key: String, from store: any ObjectStore, consequence: String? = nil) async throws -> T {
        do {
            return try JSONDecoder().decode(T.self, from: Data(try await store.get(key)))
        } catch is DecodingError {
            throw ShareError(.corrupt, share: store.displayName, object: key, cause: "unreadable snapshot" + (consequence.map { "; " + $0 } ?? ""))
        }
    }

    /// The newest snapshot at or before `sequence`, if any.
    func snapshot(atOrBefore sequence: UInt64) async throws -> Namespace? {
        guard let newest = try await snapshotSequences().last(where: { $0 <= sequence }) else { return nil }
        return try await snapshot(at: newest)
    }

    /// Where snapshots are stored.
    static let snapshotPrefix = "snapshots/"

    /// The object key of the snapshot at `sequence`.
    public static func snapshotKey(_ sequence: UInt64) -> String {
        snapshotPrefix + CommitLog.key(sequence).dropFirst("log/".count)
    }

    /// The sequence of the snapshot stored as `key`; nil for any other key (one not written by
    /// ``snapshotKey(_:)``, such as `snapshots/5`, would be read under another name).
    static func snapshotSequence(ofKey key: String) -> UInt64? {
        guard key.hasPrefix(snapshotPrefix), let sequence = UInt64(key.dropFirst(snapshotPrefix.count)),
              snapshotKey(sequence) == key else { return nil }
        return sequence
    }

    /// Stores `namespace` as a snapshot (a compacted namespace at its sequence number). Encoded with sorted
    /// keys, so every writer of the snapshot at one sequence writes the same bytes; one that exists is kept.
    public func writeSnapshot(_ namespace: Namespace) async throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let bytes = Array(try encoder.encode(namespace))
        do {
            try await store.putIfAbsent(Self.snapshotKey(namespace.sequence), bytes: bytes)
        } catch let error as StoreError where error.code == .alreadyExists {
            return
        }
    }

    /// The sequence of the newest snapshot, 0 when there is none (a listing, no read).
    public func latestSnapshotSequence() async throws -> UInt64 {
        try await snapshotSequences().last ?? 0
    }

    /// Log compaction: when the log has grown by `interval` commits or more past the newest snapshot by
    /// `sequence`, writes the snapshot at `sequence` (the newest snapshot plus the log after it, replayed),
    /// so a new endpoint reads it and the tail instead of the whole log. Returns the sequence written.
    @discardableResult
    public func compactLog(through sequence: UInt64, interval: UInt64) async throws -> UInt64? {
        guard sequence > 0, sequence >= (try await latestSnapshotSequence()) + interval else { return nil }
        try await writeSnapshot(try await namespace(through: sequence))
        return sequence
    }

    /// The newest snapshot, if any.
    public func latestSnapshot() async throws -> Namespace? {
        try await snapshot(atOrBefore: .max)
    }
}

/// Figures about a share, for `tiergate share info`.
public struct ShareInfo: Sendable, Codable {
    /// The share's URL as printed by its store.
    public var share: String
    /// `share.json`.
    public var manifest: ShareManifest
    /// Pack objects in the store.
    public var packs: Int
    /// Distinct chunks indexed.
    public var chunks: Int
    /// Bytes of pack objects in the store (what the share costs).
    public var storedBytes: Int64
    /// Files in the namespace at the log head.
    public var files: Int
    /// Directories in the namespace at the log head.
    public var directories: Int
    /// Sum of file sizes at the log head.
    public var logicalBytes: Int64
    /// The log head.
    public var headSequence: UInt64
    /// Where the share's history begins (0: at the first commit; else the snapshot log compaction left).
    public var historyBegins: UInt64
    /// Packs whose index segment is damaged or missing (their chunks are read from the pack's trailer).
    public var damagedIndexSegments: Int
    /// Which versions the garbage collector keeps.
    public var retention: RetentionPolicy
    /// logical / stored (1.0 when nothing is stored).
    public var dedupRatio: Double { storedBytes == 0 ? 1 : Double(logicalBytes) / Double(storedBytes) }
}

extension CloudShare {
    /// Counts packs, chunks and bytes, and replays the namespace for logical sizes.
    public func info() async throws -> ShareInfo {
        let packObjects = try await store.listAll(prefix: "packs/")
        try await loadIndex()
        let figures = indexFigures()
        let namespace = try await namespace()
        return ShareInfo(share: name, manifest: manifest, packs: packObjects.count, chunks: figures.chunks,
                         storedBytes: packObjects.reduce(0) { $0 + $1.size }, files: namespace.fileCount,
                         directories: namespace.entries.count - namespace.fileCount,
                         logicalBytes: namespace.logicalBytes, headSequence: namespace.sequence, historyBegins: try await historyBase(),
                         damagedIndexSegments: damagedIndexSegments.count, retention: try await RetentionPolicy.load(from: store))
    }
}
