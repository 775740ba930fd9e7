import Backends
import Foundation
import Hashing

/// Checks every object of a cloud share against the others (`tiergate share verify`): the manifest, the
/// commit log, snapshots, index segments against their packs' trailers, and that every chunk any version
/// of any file references is in some pack. Optionally reads packs whole and checks every chunk, and
/// rebuilds damaged or missing index segments from their packs' trailers. It never deletes anything.
///
/// It does not open the share with ``CloudShare/open(_:)``: a share too damaged to open is the case it
/// must still describe.
public struct ShareVerifier: Sendable {
    /// What to check beyond the objects' structure, and whether to repair.
    public struct Options: Sendable {
        /// Percent of packs (0 < p ≤ 100) to read whole and check chunk by chunk; nil reads none.
        public var readDataPercent: Double?
        /// Seeds the choice of packs when fewer than all are read, so a run can be repeated.
        public var seed: UInt64
        /// Rebuild damaged, missing or differing index segments from their packs' trailers.
        public var repair: Bool

        /// Options; the seed is random unless given.
        public init(readDataPercent: Double? = nil, seed: UInt64? = nil, repair: Bool = false) {
            self.readDataPercent = readDataPercent
            self.seed = seed ?? UInt64.random(in: 1...UInt64(Int64.max))
            self.repair = repair
        }
    }

    /// A file at one version: who needs a chunk.
    public struct FileVersion: Codable, Sendable, Hashable, Comparable {
        /// The file's path in the share.
        public var path: String
        /// The log sequence of the version (the commit that wrote that content).
        public var sequence: UInt64

        public static func < (a: Self, b: Self) -> Bool { (a.path, a.sequence) < (b.path, b.sequence) }
    }

    /// One problem with one object.
    public struct Problem: Codable, Sendable {
        /// The kinds of problem, as named in reports.
        public enum Kind: String, Codable, Sendable, CaseIterable {
            case unreadableManifest = "unreadable manifest"
            case missingLogRecord = "missing log record"
            case unreadableLogRecord = "unreadable log record"
            case unreadableSnapshot = "unreadable snapshot"
            case differingSnapshot = "snapshot differs from the log"
            case damagedIndexSegment = "damaged index segment"
            case missingIndexSegment = "missing index segment"
            case differingIndexSegment = "index segment differs from its pack"
            case damagedPack = "damaged pack"
            case missingPack = "missing pack"
            case lostChunk = "lost chunk"
            case orphanPack = "orphan pack"
            case outsideRetention = "outside retention"
        }

        /// What kind of problem.
        public var kind: Kind
        /// The object's key (or `chunk <id>` for a chunk that is in no pack).
        public var object: String
        /// What is wrong.
        public var problem: String
        /// What it affects.
        public var consequence: String
        /// How to fix it.
        public var fix: String
        /// The file versions that need the object, when it holds file content.
        public var needs: [FileVersion] = []
        /// True when `--repair` fixed it (and the repaired object verified).
        public var repaired = false
        /// True for findings that are no fault (orphan packs): they do not make a share unclean.
        public var isInfo = false
    }

    /// Progress of a run.
    public struct Progress: Sendable {
        /// The step (`reading the log`, `checking packs`, `reading packs`).
        public var phase: String
        /// Objects done in this step.
        public var done: Int
        /// Objects in this step.
        public var total: Int
        /// Bytes read so far (in this step when it gives `totalBytes`, else in the whole run).
        public var bytes: Int64
        /// Bytes this step will read, when known.
        public var totalBytes: Int64?
    }

    /// What a run found.
    public struct Report: Codable, Sendable {
        /// The share as its store prints it.
        public var share: String
        /// Objects checked, by kind (`manifest`, `log records`, `snapshots`, `packs`, `index segments`,
        /// `chunk references`).
        public var checked: [String: Int]
        /// Bytes read from the store.
        public var bytesRead: Int64
        /// With `--read-data`: the percent of packs read and the seed that chose them.
        public var readDataPercent: Double?
        /// The seed that chose the packs read (when fewer than all).
        public var seed: UInt64?
        /// The packs read whole (keys).
        public var packsRead: [String] = []
        /// Every problem, ordered by object.
        public var problems: [Problem]

        /// True when no problem remains (repaired ones and information do not count).
        public var isClean: Bool { problems.allSatisfy { $0.repaired || $0.isInfo } }
        /// Objects checked in all.
        public var objectsChecked: Int { checked.filter { $0.key != "chunk references" }.values.reduce(0, +) }
    }

    let store: any ObjectStore
    let options: Options
    private var name: String { store.displayName }

    /// A verifier of the share in `store`.
    public init(store: any ObjectStore, options: Options = Options()) {
        self.store = store
        self.options = options
    }

    /// What is known about one pack after its trailer and index segment were read.
    private struct PackState: Sendable {
        var pack: Digest32
        var size: Int64?
        /// The chunk list readers will use: the trailer's, else the index segment's (nil: neither readable).
        var chunks: [(id: Digest32, offset: UInt64, length: UInt32)]?
        /// Chunks an index segment lists for a pack that is gone.
        var listedButGone: [Digest32] = []
        var trailerUnreadable: String?
        var problems: [Problem] = []
        var bytesRead: Int64 = 0
    }

    /// Runs every check; `progress` is called every half second or so.
    public func run(progress: (@Sendable (Progress) -> Void)? = nil) async throws -> Report {
        var problems: [Problem] = []
        var checked: [String: Int] = [:]
        var bytesRead: Int64 = 0
        var lastReport = Date.distantPast
        func report(_ phase: String, _ done: Int, _ total: Int, bytes: Int64? = nil, totalBytes: Int64? = nil, force: Bool = false) {
            guard let progress, force || Date().timeIntervalSince(lastReport) >= 0.5 else { return }
            lastReport = Date()
            progress(Progress(phase: phase, done: done, total: total, bytes: bytes ?? bytesRead, totalBytes: totalBytes))
        }

        // The manifest.
        report("reading share.json", 0, 0, force: true)
        checked["manifest"] = 1
        do {
            let bytes = try await store.get(ShareManifest.key)
            bytesRead += Int64(bytes.count)
            if let cause = Self.manifestProblem(bytes) {
                problems.append(Problem(kind: .unreadableManifest, object: ShareManifest.key, problem: cause,
                                        consequence: "no command opens the share", fix: "restore share.json from a copy of the share"))
            }
        } catch let error as StoreError where error.code == .notFound {
            problems.append(Problem(kind: .unreadableManifest, object: ShareManifest.key, problem: "missing",
                                    consequence: "no command opens the share (or this is not a share's URL)",
                                    fix: "check the URL; restore share.json from a copy of the share"))
        }

        // The log: contiguous sequences, every record readable.
        let logKeys = try await store.listAll(prefix: "log/", pageSize: 1000)
        let sequences = logKeys.compactMap { CommitLog.sequence(ofKey: $0.key) }.sorted()
        let snapshotKeys = try await store.listAll(prefix: CloudShare.snapshotPrefix)
        let snapshotSequences = snapshotKeys.compactMap { CloudShare.snapshotSequence(ofKey: $0.key) }
        let replay = "the namespace cannot be replayed past this sequence: new endpoints, `tiergate get` and `share info` fail, and endpoints stop applying the log here"
        let restoreLog = "restore the record from a copy of the share (records cannot be rebuilt from packs)"
        // The log may begin after the snapshot its history starts at (log compaction deleted the records before it).
        let base = CommitLog.base(firstRecord: sequences.first, snapshots: snapshotSequences) ?? 0
        var previous: UInt64 = 0
        for sequence in sequences where sequence > base {
            let floor = previous == 0 ? base : previous
            if sequence > floor + 1 {
                let range = sequence == floor + 2 ? "\(floor + 1)" : "\(floor + 1) to \(sequence - 1)"
                problems.append(Problem(kind: .missingLogRecord, object: CommitLog.key(floor + 1),
                                        problem: "missing log record (sequences \(range) are absent; next present is \(sequence))",
                                        consequence: replay, fix: restoreLog))
            }
            previous = sequence
        }
        checked["log records"] = sequences.count
        var commits: [Commit] = []
        let log = CommitLog(store: store)
        var done = 0
        try await Self.forEach(sequences, parallel: 8) { sequence -> Result<Commit, ShareError> in
            do { return .success(try await log.read(sequence)) } catch let error as ShareError { return .failure(error) }
        } result: { sequence, result in
            done += 1
            switch result {
            case .success(let commit): commits.append(commit)
            case .failure(let error):
                problems.append(Problem(kind: .unreadableLogRecord, object: error.object, problem: error.cause,
                                        consequence: replay, fix: restoreLog))
            }
            report("reading the log", done, sequences.count)
        }
        bytesRead += logKeys.reduce(0) { $0 + $1.size }
        commits.sort { $0.sequence < $1.sequence }

        // Snapshots.
        checked["snapshots"] = snapshotKeys.count
        var snapshots: [Namespace] = []
        for object in snapshotKeys {
            let bytes = try await store.get(object.key)
            bytesRead += Int64(bytes.count)
            do {
                snapshots.append(try JSONDecoder().decode(Namespace.self, from: Data(bytes)))
            } catch {
                let newest = object.key == snapshotKeys.last?.key
                problems.append(Problem(kind: .unreadableSnapshot, object: object.key, problem: "unreadable snapshot (\(error))",
                                        consequence: newest ? "it is the newest snapshot: new endpoints, `tiergate get` and `share info` fail" : "a point-in-time restore at this sequence fails",
                                        fix: "restore it from a copy of the share"))
            }
        }

        // A snapshot must be the log replayed to its sequence: new endpoints start from it. Checked where
        // the log is whole from where the history begins up to the snapshot.
        var replayed = snapshots.first { $0.sequence == base } ?? Namespace()
        var next = commits.firstIndex { $0.sequence > replayed.sequence } ?? commits.endIndex
        for snapshot in snapshots.sorted(by: { $0.sequence < $1.sequence }) {
            while next < commits.endIndex, commits[next].sequence <= snapshot.sequence, commits[next].sequence == replayed.sequence + 1 {
                replayed.apply(commits[next])
                next += 1
            }
            guard replayed.sequence == snapshot.sequence else { continue }
            if replayed.entries != snapshot.entries {
                let differing = Set(replayed.entries.keys).symmetricDifference(snapshot.entries.keys)
                    .union(replayed.entries.keys.filter { key in snapshot.entries[key].map { $0 != replayed.entries[key] } ?? false })
                problems.append(Problem(kind: .differingSnapshot, object: CloudShare.snapshotKey(snapshot.sequence),
                                        problem: "\(differing.count) paths differ from the log replayed to \(snapshot.sequence) (first: \(differing.sorted().prefix(3).joined(separator: ", ")))",
                                        consequence: "new endpoints and `tiergate get` at or after this sequence would see the snapshot's namespace, not the log's",
                                        fix: "delete the snapshot object: the log alone holds the truth (the next compaction writes it again)"))
            }
        }

        // Who needs which chunk: every upsert of every record, and every snapshot's entries.
        var needs: [Digest32: Set<FileVersion>] = [:]
        var namedPacks: Set<Digest32> = []
        for commit in commits {
            namedPacks.formUnion(commit.packs.compactMap { Digest32(hex: $0) })
            for operation in commit.operations where operation.op == .upsert {
                guard let entry = operation.entry, entry.kind == .file else { continue }
                for chunk in entry.chunks {
                    needs[chunk.id, default: []].insert(FileVersion(path: operation.path, sequence: entry.version ?? commit.sequence))
                }
            }
        }
        for snapshot in snapshots {
            for (path, entry) in snapshot.entries where entry.kind == .file {
                for chunk in entry.chunks {
                    needs[chunk.id, default: []].insert(FileVersion(path: path, sequence: entry.version ?? snapshot.sequence))
                }
            }
        }
        checked["chunk references"] = needs.count

        // Packs and index segments.
        let packObjects = try await store.listAll(prefix: "packs/")
        let segmentObjects = try await store.listAll(prefix: "index/")
        let packSizes = Dictionary(packObjects.compactMap { object in
            Digest32(hex: object.key.split(separator: "/").last ?? "").map { ($0, object.size) }
        }, uniquingKeysWith: { first, _ in first })
        let segments = Set(segmentObjects.compactMap { Digest32(hex: $0.key.dropFirst("index/".count)) })
        let allPacks = Set(packSizes.keys).union(segments).sorted()
        checked["packs"] = packSizes.count
        checked["index segments"] = segments.count
        // Packs a garbage collector marked for deletion or deleted: one killed between removing a
        // pack's index segment and the pack leaves a pack without a segment, which is no damage.
        var collecting: Set<Digest32> = []
        for prefix in CollectionRecord.prefixes {
            for object in try await store.listAll(prefix: prefix) {
                if let record = try? CollectionRecord.decode(try await store.get(object.key), share: name, key: object.key) {
                    collecting.formUnion(record.packIDs)
                }
            }
        }
        var states: [Digest32: PackState] = [:]
        done = 0
        try await Self.forEach(allPacks, parallel: 8) { [collecting] pack in
            try await checkPack(pack, size: packSizes[pack], hasSegment: segments.contains(pack), collecting: collecting.contains(pack))
        } result: { pack, state in
            done += 1
            states[pack] = state
            bytesRead += state.bytesRead
            problems += state.problems
            report("checking packs", done, allPacks.count)
        }

        // Reading packs whole.
        var packsRead: [Digest32] = []
        if let percent = options.readDataPercent {
            packsRead = choosePacks(packSizes.keys.sorted(), percent: percent)
            let total = packsRead.reduce(Int64(0)) { $0 + (packSizes[$1] ?? 0) }
            var readBytes: Int64 = 0
            done = 0
            report("reading packs", 0, packsRead.count, bytes: 0, totalBytes: total, force: true)
            try await Self.forEach(packsRead, parallel: 4) { pack in
                try await readPack(pack)
            } result: { pack, outcome in
                done += 1
                readBytes += outcome.bytes
                bytesRead += outcome.bytes
                if var problem = outcome.problem {
                    let chunks = outcome.badChunks.isEmpty ? (states[pack]?.chunks?.map(\.id) ?? []) : outcome.badChunks
                    problem.needs = Set(chunks.flatMap { needs[$0] ?? [] }).sorted()
                    problem.consequence = Self.describe(problem.needs, or: "no file needs its chunks")
                    problems.append(problem)
                }
                report("reading packs", done, packsRead.count, bytes: readBytes, totalBytes: total)
            }
        }

        // Chunks that no readable chunk list places in an existing pack.
        var home: [Digest32: Digest32] = [:]
        var listedInGonePack: [Digest32: Digest32] = [:]
        for state in states.values {
            for chunk in state.chunks ?? [] where home[chunk.id] == nil { home[chunk.id] = state.pack }
            for chunk in state.listedButGone { listedInGonePack[chunk] = state.pack }
        }
        let unreadableLists = states.values.filter { $0.size != nil && $0.chunks == nil }.map { PackFormat.key($0.pack) }.sorted()
        // Under a retention policy, chunks only versions outside it need are the garbage collector's to delete.
        var kept: ChunkMark?
        if try await !RetentionPolicy.load(from: store).keepsEverything, needs.keys.contains(where: { home[$0] == nil }) {
            kept = try? await GarbageCollector.mark(store: store, now: Date().timeIntervalSince1970, progress: nil).chunks
        }
        var collected: [FileVersion] = []
        for (chunk, versions) in needs where home[chunk] == nil {
            if let kept, !kept.contains(chunk) {
                collected += versions
                continue
            }
            var problem = "in no pack"
            var fix = "store the files again from a server that holds them (`tiergate put`, `tiergate migrate`, or a sync of an endpoint with full copies); otherwise restore those files from a backup"
            if let gone = listedInGonePack[chunk] {
                problem += " (\(IndexSegment.key(gone)) places it in \(PackFormat.key(gone)), which is missing)"
                fix = "restore \(PackFormat.key(gone)) from a copy of the share; a writer dedups against \(IndexSegment.key(gone)) while it exists, so storing the files again does not bring the chunk back"
            } else if !unreadableLists.isEmpty {
                problem += " it can read (it may be in \(unreadableLists.joined(separator: ", ")), whose chunk list is unreadable)"
            }
            problems.append(Problem(kind: .lostChunk, object: "chunk \(chunk.hex)", problem: problem,
                                    consequence: Self.describe(versions.sorted(), or: ""), fix: fix, needs: versions.sorted()))
        }

        if !collected.isEmpty {
            let versions = Set(collected).sorted()
            problems.append(Problem(kind: .outsideRetention, object: RetentionPolicy.key,
                                    problem: "\(versions.count) file versions outside the share's retention are no longer readable (the garbage collector deleted their data)",
                                    consequence: "restores of them fail, saying so: " + versions.prefix(10).map { "\($0.path) (version \($0.sequence))" }.joined(separator: ", ")
                                        + (versions.count > 10 ? " and \(versions.count - 10) more" : ""),
                                    fix: "none needed", isInfo: true))
        }

        // Orphan packs: named by no commit, holding no chunk any file needs. Not judged when a record or
        // snapshot is unreadable: what it references is unknown.
        let referencesKnown = !problems.contains { [.missingLogRecord, .unreadableLogRecord, .unreadableSnapshot].contains($0.kind) }
        let needed = Set(needs.keys.compactMap { home[$0] })
        for pack in packSizes.keys.sorted() where referencesKnown && !namedPacks.contains(pack) && !needed.contains(pack) {
            let marked = collecting.contains(pack)
            problems.append(Problem(kind: .orphanPack, object: PackFormat.key(pack),
                                    problem: "no commit names it and no file version needs its chunks" + (marked ? "; `tiergate share gc` marked it for deletion" : ""),
                                    consequence: "none (left by a writer that stopped before its commit, or still uploading)",
                                    fix: marked ? "none needed; a later `tiergate share gc` run deletes it" : "none needed; `tiergate share gc` removes it", isInfo: true))
        }

        problems.sort { ($0.isInfo ? 1 : 0, $0.object) < ($1.isInfo ? 1 : 0, $1.object) }
        let chosen = options.readDataPercent.map { $0 < 100 } ?? false
        return Report(share: name, checked: checked, bytesRead: bytesRead, readDataPercent: options.readDataPercent,
                      seed: chosen ? options.seed : nil, packsRead: packsRead.map(PackFormat.key), problems: problems)
    }

    /// Why `share.json` cannot be used, or nil.
    static func manifestProblem(_ bytes: [UInt8]) -> String? {
        struct Version: Decodable { var format: Int }
        guard let version = try? JSONDecoder().decode(Version.self, from: Data(bytes)) else { return "not a share manifest (unreadable JSON)" }
        guard ShareManifest.readableFormats.contains(version.format) else { return "format version \(version.format) is not one this build reads" }
        do {
            _ = try JSONDecoder().decode(ShareManifest.self, from: Data(bytes))
            return nil
        } catch {
            return "malformed manifest: \(error)"
        }
    }

    /// `versions` as a sentence (at most ten named), or `none` when empty.
    static func describe(_ versions: [FileVersion], or none: String) -> String {
        guard !versions.isEmpty else { return none }
        let named = versions.prefix(10).map { "\($0.path) (version \($0.sequence))" }.joined(separator: ", ")
        return "needed by " + named + (versions.count > 10 ? " and \(versions.count - 10) more file versions" : "")
    }

    /// Reads a pack's trailer and index segment, compares them, and repairs the segment when asked.
    private func checkPack(_ pack: Digest32, size: Int64?, hasSegment: Bool, collecting: Bool) async throws -> PackState {
        let packKey = PackFormat.key(pack), segmentKey = IndexSegment.key(pack)
        var state = PackState(pack: pack, size: size)
        var trailer: [(id: Digest32, offset: UInt64, length: UInt32)]?
        if let size {
            do {
                trailer = try await PackFormat.readTrailer(of: pack, in: store)
                state.bytesRead += min(size, Int64(64 << 10))
            } catch let error as ShareError {
                state.trailerUnreadable = error.cause
            }
            if let trailer {
                let implied = trailer.reduce(Int64(0)) { $0 + Int64($1.length) } + Int64(trailer.count * PackFormat.entrySize + PackFormat.footerSize)
                if implied != size {
                    state.problems.append(Problem(kind: .damagedPack, object: packKey,
                                                  problem: "\(size) bytes, but its trailer implies \(implied) (\(trailer.count) chunks)",
                                                  consequence: "its chunks may read wrong bytes (every read is checked by SHA-256, so they fail rather than mislead)",
                                                  fix: "run `tiergate share verify --read-data` to find the chunks affected; restore the pack from a copy of the share"))
                }
            }
        }
        var segment: [(id: Digest32, location: ChunkLocation)]?
        var segmentProblem: (Problem.Kind, String)?
        if hasSegment {
            do {
                let bytes = try await store.get(segmentKey)
                state.bytesRead += Int64(bytes.count)
                segment = try IndexSegment.decode(bytes, share: name, name: segmentKey)
            } catch let error as ShareError {
                segmentProblem = (.damagedIndexSegment, error.cause)
            } catch let error as StoreError where error.code == .notFound {
                if !collecting { segmentProblem = (.missingIndexSegment, "index segment missing (deleted while verifying)") }
            }
        } else if size != nil && !collecting {
            segmentProblem = (.missingIndexSegment, "index segment missing")
        }
        if let segment, let trailer, !Self.same(segment, trailer, pack: pack) {
            segmentProblem = (.differingIndexSegment, "its chunk list (\(segment.count) chunks) differs from the trailer of \(packKey) (\(trailer.count) chunks)")
        }
        state.chunks = trailer ?? (size == nil ? nil : segment?.map { ($0.id, $0.location.offset, $0.location.length) })

        guard size != nil else {
            if collecting {
                // A collected pack whose segment outlived it (its writer's segment upload finished after the
                // deletion): no commit needed its chunks when it was deleted, and writers never trust it.
                state.problems.append(Problem(kind: .orphanPack, object: segmentKey, problem: "the index segment of a pack `tiergate share gc` deleted",
                                              consequence: "none (writers do not dedup against a collected pack)", fix: "none needed", isInfo: true))
                return state
            }
            state.listedButGone = segment?.map(\.id) ?? []
            let listing = segment.map { "its index segment lists \($0.count) chunk\($0.count == 1 ? "" : "s")" } ?? "its index segment is unreadable too"
            state.problems.append(Problem(kind: .missingPack, object: packKey, problem: "missing (\(listing))",
                                          consequence: "the chunks it held are lost (the lost chunk lines name the files that need them)",
                                          fix: "restore the pack from a copy of the share"))
            return state
        }
        if let unreadable = state.trailerUnreadable {
            let consequence = segment != nil
                ? "readers use its index segment; if that is lost too, the pack's chunks cannot be found (it cannot be rebuilt from packs alone)"
                : "its chunks cannot be found: neither the trailer nor the index segment is readable (see the lost chunks)"
            state.problems.append(Problem(kind: .damagedPack, object: packKey, problem: unreadable, consequence: consequence,
                                          fix: "restore the pack from a copy of the share; `--read-data` shows whether its chunks still check"))
        }
        if let (kind, cause) = segmentProblem {
            var problem = Problem(kind: kind, object: segmentKey, problem: cause,
                                  consequence: trailer != nil
                                    ? "none for reading: readers find the pack's chunks from its trailer (one more request), but writers do not dedup against them until then"
                                    : "its pack's trailer is unreadable too: the pack's chunks cannot be found",
                                  fix: trailer != nil ? "`tiergate share verify --repair` rebuilds it from the pack's trailer" : "restore the pack and its index segment from a copy of the share")
            if options.repair, let trailer {
                problem.repaired = try await rebuildSegment(pack, from: trailer)
                if !problem.repaired { problem.problem += "; the rebuilt segment did not read back equal" }
            }
            state.problems.append(problem)
        }
        return state
    }

    /// True when a segment lists exactly the trailer's chunks, in order, for this pack.
    static func same(_ segment: [(id: Digest32, location: ChunkLocation)], _ trailer: [(id: Digest32, offset: UInt64, length: UInt32)], pack: Digest32) -> Bool {
        segment.count == trailer.count && zip(segment, trailer).allSatisfy {
            $0.id == $1.id && $0.location.pack == pack && $0.location.offset == $1.offset && $0.location.length == $1.length
        }
    }

    /// Writes the index segment of `pack` from its trailer, then reads it back and compares.
    private func rebuildSegment(_ pack: Digest32, from trailer: [(id: Digest32, offset: UInt64, length: UInt32)]) async throws -> Bool {
        let key = IndexSegment.key(pack)
        try await store.put(key, bytes: IndexSegment.encode(pack: pack, chunks: trailer.map { ($0.id, ChunkLocation(pack: pack, offset: $0.offset, length: $0.length)) }))
        guard let written = try? IndexSegment.decode(try await store.get(key), share: name, name: key) else { return false }
        return Self.same(written, trailer, pack: pack)
    }

    /// Reads a pack whole and checks its id and every chunk.
    private func readPack(_ pack: Digest32) async throws -> (bytes: Int64, problem: Problem?, badChunks: [Digest32]) {
        let key = PackFormat.key(pack)
        let bytes: [UInt8]
        do {
            bytes = try await store.get(key)
        } catch let error as StoreError where error.code == .notFound {
            return (0, nil, [])   // deleted meanwhile: reported as missing by the pack check only if its segment remains
        }
        let restore = "restore the pack from a copy of the share; a writer dedups against its index entries, so storing the files again does not replace these chunks"
        do {
            let check = try PackFormat.check(bytes, pack: pack, share: name)
            if !check.badChunks.isEmpty {
                let listed = check.badChunks.prefix(5).map(\.hex).joined(separator: ", ") + (check.badChunks.count > 5 ? ", …" : "")
                return (Int64(bytes.count), Problem(kind: .damagedPack, object: key, problem: "\(check.badChunks.count) of \(check.entries.count) chunks fail their SHA-256 check (\(listed))",
                                                    consequence: "", fix: restore), check.badChunks)
            }
            if !check.matchesID {
                return (Int64(bytes.count), Problem(kind: .damagedPack, object: key, problem: "content does not match its id, although every chunk checks",
                                                    consequence: "", fix: "restore the pack from a copy of the share (its chunks still read correctly)"), [])
            }
            return (Int64(bytes.count), nil, [])
        } catch let error as ShareError {
            return (Int64(bytes.count), Problem(kind: .damagedPack, object: key, problem: error.cause, consequence: "", fix: restore), [])
        }
    }

    /// The packs to read: all of them, or `percent` of them chosen by the seed (at least one).
    func choosePacks(_ packs: [Digest32], percent: Double) -> [Digest32] {
        guard percent < 100 else { return packs }
        var generator = SplitMix64(state: options.seed)
        let count = min(packs.count, max(1, Int((Double(packs.count) * percent / 100).rounded(.up))))
        return Array(packs.shuffled(using: &generator).prefix(count)).sorted()
    }

    /// Runs `work` over `items`, at most `parallel` at once, handing each result to `result` in the
    /// caller's context (in completion order).
    static func forEach<Item: Sendable, Output: Sendable>(_ items: [Item], parallel: Int,
                                                         _ work: @escaping @Sendable (Item) async throws -> Output,
                                                         result: (Item, Output) -> Void) async throws {
        try await withThrowingTaskGroup(of: (Item, Output).self) { group in
            var pending = items[...]
            func next() {
                guard let item = pending.popFirst() else { return }
                group.addTask { (item, try await work(item)) }
            }
            for _ in 0..<parallel { next() }
            while let (item, output) = try await group.next() {
                result(item, output)
                next()
            }
        }
    }
}

/// A small seeded generator (SplitMix64) so a sampled `--read-data` run can be repeated with its seed.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
