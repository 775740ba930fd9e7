import Backends
import Chunking
import CloudShare
import Foundation
import Glibc
import Hashing

/// Copying a local tree (an existing file server, or an NFS/SMB mount of one) into a cloud share as
/// direct cloud edits: `tiergate migrate` (and `tiergate put`, its one-shot form).
///
/// Files are read, chunked and hashed by several readers at once; new chunks are deduplicated against
/// the share and packed; operations are committed in batches (by count, bytes and time), so servers see
/// progress and a crash loses at most one batch. A ledger in the state directory remembers each copied
/// file's source identity, so a rerun reads only what changed (and, with `mirror`, deletes in the share
/// what left the source). The source wins: a share entry changed since the last run is replaced.
public enum Migration {
    /// How a migration runs.
    public struct Options: Sendable {
        /// The folder inside the share the source lands in (default: the share root).
        public var destination = ""
        /// Delete in the share what is not in the source (below `destination`).
        public var mirror = false
        /// Read every copied file back from the share and compare fingerprints.
        public var verify = false
        /// Files read at once.
        public var readers = max(2, ProcessInfo.processInfo.activeProcessorCount)
        /// A batch is committed after this many operations…
        public var batchOperations = 20_000
        /// …or this many bytes read…
        public var batchBytes: Int64 = 1 << 30
        /// …or this many seconds.
        public var batchSeconds = 30.0
        /// The state directory holding the checkpoint ledger; nil runs without one (every file is read,
        /// nothing already stored is uploaded again).
        public var stateDirectory: String?
        /// The per-item log, if any.
        public var itemLog: String?
        /// Its format (default: implied by the file name).
        public var itemLogFormat: MigrationItemLog.Format?
        /// Bytes per second to and from the store, if limited.
        public var bandwidthLimit: Int64?

        /// Defaults.
        public init() {}

        /// `destination` as a path in the share (no empty components); refused when no share may hold it.
        func shareDestination() throws -> String {
            let path = destination.split(separator: "/").joined(separator: "/")
            if !path.isEmpty, let problem = SafePath.problem(with: path) {
                throw GatewayError("the destination '\(destination)' cannot be a path in the share: \(problem)")
            }
            return path
        }

        /// The per-item log, opened for appending, if one was asked for.
        func openItemLog() throws -> MigrationItemLog? {
            try itemLog.map { try MigrationItemLog(path: $0, format: itemLogFormat ?? .implied(by: $0)) }
        }
    }

    /// What a migration did.
    public struct Report: Sendable {
        /// Files copied that the share did not have at that path.
        public var copied = 0
        /// Files copied over another version at that path.
        public var updated = 0
        /// Files already in the share as they are in the source.
        public var unchanged = 0
        /// Folders created or changed in the share.
        public var directories = 0
        /// Items deleted in the share (mirror).
        public var deleted = 0
        /// Items not copied because of what they are (name, kind), with reasons.
        public var skipped: [SkippedItem] = []
        /// Items that failed (unreadable, changed during the copy, failed verification), with causes.
        public var failed: [SkippedItem] = []
        /// Bytes of file content read.
        public var bytesRead: Int64 = 0
        /// Bytes of new chunks stored (after dedup).
        public var newBytes: Int64 = 0
        /// Packs written.
        public var packs = 0
        /// Commits appended.
        public var commits = 0
        /// Files read back and verified.
        public var verified = 0
        /// The log sequence number after the last commit.
        public var sequence: UInt64 = 0
        /// Seconds taken.
        public var seconds = 0.0
        /// The checkpoint ledger used, if any.
        public var ledger: String?
        /// `--mirror` deleted nothing because the source changed while it was copied.
        public var mirrorHeldBack = false

        /// Whether every item of the source is in the share.
        public var isComplete: Bool { skipped.isEmpty && failed.isEmpty && !mirrorHeldBack }

        /// Lines for people: totals, then the items not copied (the first 20 of each kind).
        public var summary: String {
            let files = copied + updated
            let rate = seconds > 0 ? Double(files) / seconds : 0
            let mbps = seconds > 0 ? Double(bytesRead) / seconds / 1e6 : 0
            var text = "copied \(copied) new and \(updated) changed files (\(ByteFormat.string(bytesRead)) read, \(ByteFormat.string(newBytes)) new after dedup, \(packs) packs), \(directories) folders, \(deleted) deleted, \(unchanged) unchanged; \(commits) commits, log sequence \(sequence); \(String(format: "%.2f", seconds)) s — \(Int(rate)) files/s, \(String(format: "%.1f", mbps)) MB/s"
            if verified > 0 { text += "\nverified \(verified) files against the share" }
            if mirrorHeldBack { text += "\nmirror: deletes held back, the source changed while it was copied; run again once it is quiet" }
            text += "\n\(skipped.count) skipped, \(failed.count) failed"
            for (label, items) in [("skipped", skipped), ("failed", failed)] {
                for item in items.prefix(20) { text += "\n  \(label) \(ConsoleText.safe(item.path)): \(item.reason)" }
                if items.count > 20 { text += "\n  … and \(items.count - 20) more \(label)" }
            }
            return text
        }
    }

    /// Opens the share at `url` and migrates `source` into it: a local directory, or another share's URL
    /// (its namespace at the log head is copied). Both stores are paced through one limit: the server's
    /// network limit schedule (when `stateDirectory` names a registered server) and `bandwidthLimit`,
    /// the lower of the two.
    public static func run(source: String, url: String, options: Options = Options(), progress: ProgressHandler? = nil) async throws -> Report {
        let limit = NetworkLimit(directory: options.stateDirectory.map(StateDirectory.init(path:)), fixedLimit: options.bandwidthLimit)
        func open(_ url: String) async throws -> CloudShare {
            try await CloudShare.open(limit.wrap(StoreLocator.open(url)))
        }
        if source.contains("://") {
            return try await run(sourceShare: try await open(source), share: try await open(url), options: options, progress: progress)
        }
        // The walk of the source overlaps with loading the share's index and log.
        let walk = walkTask(source)
        return try await run(source: source, share: try await open(url), options: options, progress: progress, walk: walk)
    }

    /// Walks `source` on a thread of its own (it only makes system calls).
    static func walkTask(_ source: String) -> Task<(items: [LocalItem], skipped: [SkippedItem]), any Error> {
        Task.detached { try TreeWalker(root: source).walk() }
    }

    /// Copies the namespace of `sourceShare` at its log head into `share` (below the destination): chunks
    /// the destination lacks are read (SHA-256 checked) and stored, entries keep their attributes and
    /// fingerprints. Needs no checkpoint: a rerun compares entries and copies only what differs.
    public static func run(sourceShare: CloudShare, share: CloudShare, options: Options = Options(), progress: ProgressHandler? = nil) async throws -> Report {
        let started = Date()
        guard sourceShare.manifest.shareID != share.manifest.shareID else {
            throw GatewayError("the source and the destination are the same share (\(share.manifest.shareID))")
        }
        let destination = try options.shareDestination()
        let itemLog = try options.openItemLog()
        progress?(JobProgress(phase: "reading the source share", items: 0, totalItems: nil, bytes: 0, elapsed: 0))
        let run = Run(share: share, namespace: try await share.namespace(), options: options, destination: destination, sourceFD: -1,
                      ledger: nil, itemLog: itemLog, started: started, progress: progress)
        try await run.copy(from: sourceShare, namespace: try await sourceShare.namespace())
        run.report.seconds = Date().timeIntervalSince(started)
        return run.report
    }

    /// Migrates `source` into `share`.
    public static func run(source: String, share: CloudShare, options: Options = Options(), progress: ProgressHandler? = nil) async throws -> Report {
        try await run(source: source, share: share, options: options, progress: progress, walk: walkTask(source))
    }

    static func run(source: String, share: CloudShare, options: Options, progress: ProgressHandler?,
                    walk: Task<(items: [LocalItem], skipped: [SkippedItem]), any Error>) async throws -> Report {
        let started = Date()
        guard let sourceInfo = try Posix.status(source) else { throw GatewayError("'\(source)' does not exist") }
        guard (sourceInfo.st_mode & S_IFMT) == S_IFDIR else { throw GatewayError("'\(source)' is not a directory") }
        let destination = try options.shareDestination()
        let sourceFD = try Posix.open(source, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        defer { close(sourceFD) }
        let ledger = try options.stateDirectory.map { directory in
            var absolute = source
            if let resolved = realpath(source, nil) {
                absolute = String(cString: resolved)
                free(resolved)
            }
            return try MigrationLedger(path: MigrationLedger.path(stateDirectory: directory, source: absolute, shareID: share.manifest.shareID, destination: destination),
                                       description: "source \(absolute)\nshare \(StoreLocator.redacted(share.name)) (id \(share.manifest.shareID))\ndestination /\(destination)")
        }
        defer { ledger?.close() }
        let itemLog = try options.openItemLog()

        progress?(JobProgress(phase: "scanning the source and reading the share's log", items: 0, totalItems: nil, bytes: 0, elapsed: 0))
        let namespace = try await share.namespace()
        let walked = try await walk.value
        let run = Run(share: share, namespace: namespace, options: options, destination: destination, sourceFD: sourceFD,
                      ledger: ledger, itemLog: itemLog, started: started, progress: progress)
        try await run.copy(walked: walked, sourceInfo: sourceInfo)
        run.report.seconds = Date().timeIntervalSince(started)
        return run.report
    }

    /// One migration's state while it runs (owned by the task running it).
    private final class Run {
        let share: CloudShare
        let namespace: Namespace
        let options: Options
        let destination: String
        let sourceFD: Int32
        let ledger: MigrationLedger?
        let itemLog: MigrationItemLog?
        let started: Date
        let progress: ProgressHandler?
        let uploader: PackUploader
        var report = Report()

        // The batch being built: operations, the ledger records they carry, and their log rows.
        var operations: [NamespaceOperation] = []
        var records: [(String, MigrationLedger.Record)] = []
        var rows: [(MigrationItemLog.Action, String, Int64?)] = []
        var batchBytes: Int64 = 0
        var lastCommit = Date()
        var lastProgress = Date()
        var copiedEntries: [Copied] = []
        var changedDuringRead: [LocalItem] = []
        /// Items vanished, moved or changed while the tree was copied: a mirror holds its deletes back.
        var sourceChanged = false
        var totalItems = 0
        /// Files known unchanged before reading began, and when it began.
        var unchangedBefore = 0
        var copyStarted = Date()
        var totalBytes: Int64 = 0

        struct Copied: Sendable {
            var relative: String
            var path: String
            var entry: NamespaceEntry
            /// The checkpoint record, marked verified once the file reads back equal.
            var record: MigrationLedger.Record?
        }

        enum Outcome: Sendable {
            case stored(StoredContent)
            case failed(LocalItem, String, retry: Bool)
            /// A file of a source share whose new chunks are now in the upload (`NamespaceEntry` as the source has it).
            case copied(String, NamespaceEntry)
            /// A file of a source share that cannot be read (a chunk missing or corrupt there).
            case unreadable(String, Int64, String)
        }

        init(share: CloudShare, namespace: Namespace, options: Options, destination: String, sourceFD: Int32, ledger: MigrationLedger?,
             itemLog: MigrationItemLog?, started: Date, progress: ProgressHandler?) {
            self.share = share
            self.namespace = namespace
            self.options = options
            self.destination = destination
            self.sourceFD = sourceFD
            self.ledger = ledger
            self.itemLog = itemLog
            self.started = started
            self.progress = progress
            uploader = share.makeUploader()
            report.sequence = namespace.sequence
            report.ledger = ledger?.path
        }

        func sharePath(_ relative: String) -> String {
            destination.isEmpty ? relative : relative.isEmpty ? destination : destination + "/" + relative
        }

        func copy(walked: (items: [LocalItem], skipped: [SkippedItem]), sourceInfo: stat) async throws {
            // A mirror deletes what the source lacks: a source that is not the folder earlier runs copied
            // (an NFS or SMB share that is no longer mounted leaves its empty mount point) must not empty the share.
            let root = MigrationLedger.Root(device: UInt64(sourceInfo.st_dev), inode: UInt64(sourceInfo.st_ino))
            if options.mirror {
                if let recorded = try ledger?.root(), recorded != root {
                    throw GatewayError("--mirror refused: the source is not the folder earlier runs of this migration copied (its device and inode changed: an unmounted share, or a folder replaced); nothing was copied or deleted. Check the source, or start over with a new --state-dir")
                }
                let prefix = destination.isEmpty ? "" : destination + "/"
                if walked.items.isEmpty && walked.skipped.isEmpty,
                   namespace.entries.keys.contains(where: { prefix.isEmpty || $0 == destination || $0.hasPrefix(prefix) }) {
                    throw GatewayError("--mirror refused: the source is empty and would delete everything below /\(destination) in the share; nothing was deleted. Check the source (an unmounted share?); to empty the share on purpose, delete there")
                }
            }
            try ledger?.setRoot(root)
            for item in walked.skipped {
                report.skipped.append(item)
                try itemLog?.log(.skipped, sharePath(item.path), reason: item.reason)
            }
            let folders = localFolders(walked.items, sourceInfo: sourceInfo)
            planFolders(folders)
            let toRead = try planFiles(walked.items)
            totalItems = toRead.count
            totalBytes = toRead.reduce(0) { $0 + $1.size }
            unchangedBefore = report.unchanged
            copyStarted = Date()
            try await read(toRead, lastChance: false)
            // Files that changed (or moved) while they were read get one more try, now that time has passed.
            if !changedDuringRead.isEmpty {
                let changed = changedDuringRead
                changedDuringRead = []
                var again: [LocalItem] = []
                for item in changed {
                    if let now = LocalFiles.item(rootFD: sourceFD, path: item.path), !now.isDirectory {
                        again.append(now)
                    } else {
                        sourceChanged = true
                        try fail(item, "vanished or replaced while the tree was copied")
                    }
                }
                try await read(again, lastChance: true)
            }
            if options.mirror { try await mirror(present: Set(folders.map(\.path) + walked.items.map { sharePath($0.path) })) }
            try await finish()
        }

        /// Copies another share's namespace: folders, then files whose entry differs here, read in parallel.
        func copy(from source: CloudShare, namespace sourceNamespace: Namespace) async throws {
            var folders = destinationAncestors()
            if !destination.isEmpty { folders.append((destination, nil)) }
            var files: [(String, NamespaceEntry)] = []
            for (path, entry) in sourceNamespace.entries.sorted(by: { $0.key < $1.key }) {
                if let problem = SafePath.problem(with: sharePath(path)) {
                    report.skipped.append(SkippedItem(path: path, reason: "not copied: \(problem)"))
                    try itemLog?.log(.skipped, sharePath(path), reason: problem)
                } else if entry.kind == .directory {
                    folders.append((sharePath(path), entry))
                } else {
                    files.append((path, entry))
                }
            }
            planFolders(folders)
            totalItems = files.count
            totalBytes = files.reduce(0) { $0 + $1.1.size }
            copyStarted = Date()
            let (share, uploader) = (share, uploader)
            try await BoundedTasks.run(files, width: max(8, options.readers), work: { (path, entry) -> Outcome in
                do {
                    var missing: [Digest32] = []
                    for chunk in entry.chunks {
                        if try await !share.hasIndexed(chunk.id) { missing.append(chunk.id) }
                    }
                    try await source.readChunks(missing) { index, chunk in
                        try await uploader.add(id: missing[index], bytes: Array(try chunk.get()))
                    }
                    return .copied(path, entry)
                } catch let error as ShareError {
                    return .unreadable(path, entry.size, "\(error)")
                }
            }, collect: { try await self.take($0, lastChance: true) })
            if options.mirror { try await mirror(present: Set(folders.map(\.path) + files.map { sharePath($0.0) })) }
            try await finish()
        }

        /// The last commit, the figures of the upload, and the read-back when asked.
        func finish() async throws {
            try await commit()
            report.packs = await uploader.packs.count
            report.newBytes = await uploader.storedBytes
            if options.verify { try await verify() }
        }

        /// Commits the batch: packs durable first, then the ledger records, then the log record.
        func commit() async throws {
            guard !operations.isEmpty || !records.isEmpty else { return }
            try await uploader.finish()
            try ledger?.write(records)
            if !operations.isEmpty {
                let (log, knownHead) = (share.log, report.sequence)
                report.sequence = try await share.appendCommit(author: "cloud", authorName: "Cloud", operations: operations, uploader: uploader) {
                    try await log.append($0, knownHead: knownHead)
                }
                report.commits += 1
            }
            for (action, path, size) in rows { try itemLog?.log(action, path, size: size) }
            operations.removeAll(keepingCapacity: true)
            records.removeAll(keepingCapacity: true)
            rows.removeAll(keepingCapacity: true)
            batchBytes = 0
            lastCommit = Date()
        }

        /// The folders of a local source: the destination's own folders, then the source's (parents
        /// before children), each with the attributes it should have in the share.
        func localFolders(_ items: [LocalItem], sourceInfo: stat) -> [(path: String, entry: NamespaceEntry?)] {
            func entry(_ item: LocalItem) -> NamespaceEntry {
                NamespaceEntry(kind: .directory, fileID: "", size: 0, mode: item.mode, mtime: item.mtime, uid: item.uid, gid: item.gid,
                               acl: LocalFiles.acl(rootFD: sourceFD, path: item.path.isEmpty ? "." : item.path))
            }
            var folders = destinationAncestors()
            if !destination.isEmpty { folders.append((destination, entry(LocalItem(path: "", sourceInfo)))) }
            return folders + items.filter(\.isDirectory).map { (sharePath($0.path), entry($0)) }
        }

        /// The folders above the destination (made when missing, otherwise left as they are).
        func destinationAncestors() -> [(path: String, entry: NamespaceEntry?)] {
            let components = destination.split(separator: "/")
            guard components.count > 1 else { return [] }
            return (1..<components.count).map { (components.prefix($0).joined(separator: "/"), nil) }
        }

        /// Commits folders whose share entry is missing or has other attributes than `folders` give.
        func planFolders(_ folders: [(path: String, entry: NamespaceEntry?)]) {
            for (path, wanted) in folders {
                if let problem = SafePath.problem(with: path) {
                    let relative = String(path.dropFirst(destination.isEmpty ? 0 : destination.count + 1))
                    report.skipped.append(SkippedItem(path: relative, reason: "not copied: \(problem)"))
                    try? itemLog?.log(.skipped, path, reason: problem)
                    continue
                }
                let existing = namespace.entries[path]
                guard let wanted else {
                    if existing?.kind != .directory {
                        if existing != nil { operations.append(.delete(path)) }
                        operations.append(.upsert(path, NamespaceEntry(kind: .directory, fileID: NamespaceEntry.newFileID(), size: 0, mode: 0o755,
                                                                       mtime: Int64(Date().timeIntervalSince1970 * 1e9), uid: geteuid(), gid: getegid())))
                        report.directories += 1
                        rows.append((.directory, path, nil))
                    }
                    continue
                }
                if let existing, existing.kind == .directory, existing.mode == wanted.mode, existing.mtime == wanted.mtime,
                   existing.uid == wanted.uid, existing.gid == wanted.gid, existing.acl == wanted.acl { continue }
                if let existing, existing.kind != .directory { operations.append(.delete(path)) }
                var entry = wanted
                entry.fileID = existing?.kind == .directory ? existing!.fileID : NamespaceEntry.newFileID()
                entry.version = nil
                operations.append(.upsert(path, entry))
                report.directories += 1
                rows.append((.directory, path, nil))
            }
        }

        /// Files whose source identity or share entry moved since the last run: those are read.
        func planFiles(_ items: [LocalItem]) throws -> [LocalItem] {
            var toRead: [LocalItem] = []
            for item in items where !item.isDirectory {
                let path = sharePath(item.path)
                if let problem = SafePath.problem(with: path) {
                    report.skipped.append(SkippedItem(path: item.path, reason: "not copied: \(problem)"))
                    try itemLog?.log(.skipped, path, reason: problem)
                    continue
                }
                if let record = try ledger?.record(item.path), record.matches(item), let existing = namespace.entries[path], existing.kind == .file,
                   existing.fileID == record.fileID, existing.fingerprint == record.fingerprint, existing.mode == item.mode,
                   existing.uid == item.uid, existing.gid == item.gid {
                    report.unchanged += 1
                    // Copied by a run that stopped before it verified: verified now, without reading the source.
                    if options.verify && !record.verified {
                        copiedEntries.append(Copied(relative: item.path, path: path, entry: existing, record: record))
                    }
                    continue
                }
                toRead.append(item)
            }
            return toRead
        }

        /// Reads `items` in parallel; each result joins the batch, committed when it is full.
        func read(_ items: [LocalItem], lastChance: Bool) async throws {
            let (sourceFD, uploader) = (sourceFD, uploader)
            let chunker = FastCDC(share.manifest.chunking)
            // Results are taken on this task while the readers go on (a commit may wait for uploads); a
            // store or share failure ends the run.
            try await BoundedTasks.run(items, width: options.readers, work: { item -> Outcome in
                do {
                    return .stored(try await FileReader.store(rootFD: sourceFD, item: item, chunker: chunker, uploader: uploader))
                } catch let error as PosixError {
                    return .failed(item, "\(error.function): \(error.reason)", retry: error.errno == ENOENT)
                } catch is FileReader.ChangedWhileReading {
                    return .failed(item, "changed while it was read (copy it again once it is quiet)", retry: true)
                } catch is FileReader.UnrecordedStub {
                    return .failed(item, "a Tiergate stub (holes, not content): recall it before migrating", retry: false)
                }
            }, collect: { try await self.take($0, lastChance: lastChance) })
        }

        func fail(_ item: LocalItem, _ reason: String) throws {
            report.failed.append(SkippedItem(path: item.path, reason: reason))
            try itemLog?.log(.failed, sharePath(item.path), size: item.size, reason: reason)
        }

        func take(_ outcome: Outcome, lastChance: Bool) async throws {
            switch outcome {
            case .failed(let item, let reason, let retry):
                if retry && !lastChance {
                    changedDuringRead.append(item)
                } else {
                    if retry { sourceChanged = true }
                    try fail(item, reason)
                }
            case .unreadable(let relative, let size, let reason):
                report.failed.append(SkippedItem(path: relative, reason: reason))
                try itemLog?.log(.failed, sharePath(relative), size: size, reason: reason)
            case .stored(let content):
                let item = content.item
                report.bytesRead += content.size
                batchBytes += content.size
                let file = NamespaceEntry(kind: .file, fileID: "", size: content.size, mode: item.mode, mtime: item.mtime, uid: item.uid, gid: item.gid,
                                          chunks: content.chunks, fingerprint: content.fingerprint.description, acl: content.acl)
                place(item.path, file, identity: item)
            case .copied(let relative, let file):
                let unchanged = report.unchanged
                place(relative, file, identity: nil)
                if report.unchanged == unchanged {
                    report.bytesRead += file.size
                    batchBytes += file.size
                }
            }
            if operations.count >= options.batchOperations || batchBytes >= options.batchBytes
                || Date().timeIntervalSince(lastCommit) >= options.batchSeconds {
                try await commit()
            }
            if let progress, Date().timeIntervalSince(lastProgress) > 0.5 {
                lastProgress = Date()
                // The work of this run: files to read (those known unchanged are counted apart), their bytes,
                // and the time since reading began, so that rates and the ETA are this run's.
                let phase = unchangedBefore > 0 ? "copying (\(unchangedBefore) unchanged, not read)" : "copying"
                progress(JobProgress(phase: phase, items: report.copied + report.updated + report.unchanged - unchangedBefore + report.failed.count,
                                     totalItems: totalItems, bytes: report.bytesRead, elapsed: lastProgress.timeIntervalSince(copyStarted),
                                     totalBytes: totalBytes))
            }
        }

        /// Joins a file to the batch as `file` (its content and attributes, as read from the source), unless
        /// the share already has it so. `identity` is a local source file's stat, for the checkpoint.
        func place(_ relative: String, _ file: NamespaceEntry, identity: LocalItem?) {
            let path = sharePath(relative)
            let existing = namespace.entries[path]
            let fingerprint = file.fingerprint ?? ""
            if let existing, existing.kind == .file, existing.fingerprint == file.fingerprint, existing.size == file.size,
               existing.mode == file.mode, existing.mtime == file.mtime, existing.uid == file.uid, existing.gid == file.gid, existing.acl == file.acl {
                // Already there (copied by a run whose checkpoint was lost, or by someone else).
                if let identity { records.append((relative, .init(item: identity, fileID: existing.fileID, fingerprint: fingerprint))) }
                report.unchanged += 1
                return
            }
            if let existing, existing.kind != .file { operations.append(.delete(path)) }
            let isUpdate = existing?.kind == .file
            var entry = file
            entry.fileID = isUpdate ? existing!.fileID : NamespaceEntry.newFileID()
            entry.version = nil
            operations.append(.upsert(path, entry))
            let record = identity.map { MigrationLedger.Record(item: $0, fileID: entry.fileID, fingerprint: fingerprint) }
            if let record { records.append((relative, record)) }
            if isUpdate { report.updated += 1 } else { report.copied += 1 }
            rows.append((isUpdate ? .updated : .copied, path, file.size))
            if options.verify { copiedEntries.append(Copied(relative: relative, path: path, entry: entry, record: record)) }
        }

        /// What is in the share below the destination but not in the source goes. Items the source has
        /// but could not copy (skipped, failed, unreadable folders) keep their share copy.
        func mirror(present: Set<String>) async throws {
            // A folder renamed during the walk is absent under both names: deleting its old path would
            // drop it from the share until the next run. Deletes wait for a run over a quiet source.
            guard !sourceChanged else {
                report.mirrorHeldBack = true
                return
            }
            let kept = Set((report.skipped + report.failed).map { sharePath($0.path) })
            func isKept(_ path: String) -> Bool {
                var candidate = Substring(path)
                while true {
                    if kept.contains(String(candidate)) { return true }
                    guard let slash = candidate.lastIndex(of: "/") else { return false }
                    candidate = candidate[..<slash]
                }
            }
            let prefix = destination.isEmpty ? "" : destination + "/"
            var removed: [String] = []
            var forgotten: [String] = []      // ledger records of everything removed, folders' contents too
            for path in namespace.entries.keys.sorted() where (prefix.isEmpty || path.hasPrefix(prefix)) && !present.contains(path) {
                if let last = removed.last, path.hasPrefix(last + "/") {
                    forgotten.append(String(path.dropFirst(prefix.count)))
                    continue
                }
                if isKept(path) { continue }
                removed.append(path)
                forgotten.append(String(path.dropFirst(prefix.count)))
                operations.append(.delete(path))
                report.deleted += 1
                rows.append((.deleted, path, nil))
            }
            try await commit()
            try ledger?.write([], removing: forgotten)
        }

        /// Every copied file read back from the store (each chunk's SHA-256 is checked on read) must have
        /// the fingerprint its source had; one that does not is failed and copied again by the next run.
        func verify() async throws {
            var failures: [String] = []
            var verified: [(String, MigrationLedger.Record)] = []
            try await BoundedTasks.run(copiedEntries, width: 8, work: { [share] copied -> (Copied, String?) in
                let fingerprint = XXH3()
                var size: Int64 = 0
                do {
                    try await share.readChunks(copied.entry.chunks.map(\.id)) { _, chunk in
                        let bytes = try chunk.get()
                        fingerprint.update(bytes)
                        size += Int64(bytes.count)
                    }
                } catch {
                    return (copied, "cannot be read back from the share: \(error)")
                }
                guard size == copied.entry.size, fingerprint.digest128().description == copied.entry.fingerprint else {
                    return (copied, "reads back from the share with other content than was read from the source")
                }
                return (copied, nil)
            }, collect: { copied, problem in
                if let problem {
                    self.report.failed.append(SkippedItem(path: copied.relative, reason: problem))
                    failures.append(copied.relative)
                    try self.itemLog?.log(.failed, copied.path, reason: problem)
                } else {
                    self.report.verified += 1
                    if var record = copied.record {
                        record.verified = true
                        verified.append((copied.relative, record))
                    }
                }
            })
            try ledger?.write(verified, removing: failures)
        }
    }
}
