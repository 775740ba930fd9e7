import Backends
import CLinux
import CloudShare
import Foundation
import Glibc
import Hashing

/// A file's content fetched from the share into the staging folder, fsynced later as a batch.
struct StagedFile: Sendable {
    var name: String
    var fingerprint: Fingerprint128
    var size: Int64
}

extension SyncEngine {
    /// On the very first pass of an authoritative endpoint: the local tree wins, so the cloud namespace
    /// is not downloaded; cloud items missing locally are remembered to be deleted by the upload.
    func prepareFirstSync() async throws {
        guard try state.value(Bool.self, endpoint.id, "started") != true else { return }
        if endpoint.initialUpload == .authoritative, try state.cursor(endpoint.id) == 0 {
            let namespace = try await share.namespace()
            let missing = namespace.entries.keys.filter { !LocalFiles.exists(rootFD: rootFD, path: $0) }
            try state.setValue(missing, endpoint.id, "authoritativeDeletes")
            var batch = state.batch(endpoint.id)
            batch.setCursor(namespace.sequence, record: namespace.sequence > 0 ? try await share.log.read(namespace.sequence).id : "")
            try state.commit(batch, sync: true)
        }
        try state.setValue(true, endpoint.id, "started", sync: true)
    }

    /// Retries the deferred operations, then applies every commit after the cursor. A new endpoint
    /// starts from the namespace at the head (newest snapshot plus the log after it), applied as upserts
    /// in path order (a folder before what is in it), ``namespaceBatch`` at a time, the last batch moving
    /// the cursor: existing local files are compared with the head by content, history is not replayed.
    /// A pass stopped between batches keeps what it applied (recorded with its version, so the next
    /// pass finds it identical) and starts over from the head.
    func download(_ report: inout SyncReport) async throws {
        var deferred = try state.value(DeferredOperations.self, endpoint.id, DeferredOperations.stateKey) ?? DeferredOperations()
        for commit in deferred.takeCommits() {
            try await apply(commit, &report, deferred: &deferred, movesCursor: false)
        }
        let cursor = try state.cursor(endpoint.id)
        if cursor == 0 {
            try await downloadHead(&report, deferred: &deferred)
            // The head namespace, a million small allocations at a million files, is freed: given back,
            // the scan that follows does not stand on top of it.
            _ = CLinux_malloc_trim()
            return
        }
        // One record at a time: a server far behind never holds the log it has to catch up on.
        for try await commit in share.log.reading(after: cursor) {
            // The share moved: its log ends here, and the endpoint follows it (see `Gateway.follow`).
            if let redirect = commit.movedTo { throw ShareMoved(redirect, from: share.name) }
            try await apply(commit, &report, deferred: &deferred, movesCursor: true)
        }
        // A download error whose operation is no longer deferred (applied, or decided by a newer one) is over.
        let pending = deferred.paths
        let over = try state.errors(endpoint.id).filter { $0.kind == "download" && !pending.contains($0.path) }.map(\.path)
        if !over.isEmpty { try recordErrors([], cleared: over) }
    }

    /// A new endpoint's download: the namespace at the head, applied as upserts in path order (see
    /// ``download(_:)``).
    private func downloadHead(_ report: inout SyncReport, deferred: inout DeferredOperations) async throws {
        let namespace = try await share.namespace()
        guard namespace.sequence > 0 else { return }
        let head = try await share.log.read(namespace.sequence)
        if let redirect = head.movedTo { throw ShareMoved(redirect, from: share.name) }
        let (sequence, paths) = (namespace.sequence, namespace.entries.keys.sorted())
        namespaceTaken = paths.count
        // The first batches are small (1,000, doubling up to namespaceBatch): the first files land
        // after a thousand files' content is fetched, not twenty thousand.
        var start = 0, size = min(max(1, namespaceBatch), 1_000)
        func nextBatch() -> Commit? {
            guard start < paths.count else { return nil }
            let end = min(start + size, paths.count)
            size = min(2 * size, max(1, namespaceBatch))
            var commit = Commit(author: "namespace", authorName: "Cloud",
                                operations: paths[start..<end].map { .upsert($0, namespace.entries[$0]!) })
            commit.sequence = sequence
            commit.id = head.id
            start = end
            return commit
        }
        // The batches name distinct paths, so the next one is planned, and its content fetched into the
        // staging folder, while this one is moved into place: the fetch and the file system's work on
        // the tree overlap. Only the last batch moves the cursor.
        struct Batch {
            let commit: Commit
            let plan: ApplyPlan
            let content: Task<StagedContent, any Error>
        }
        func begin(_ commit: Commit, _ report: inout SyncReport) throws -> Batch {
            let plan = try plan(commit, &report)
            let (wanted, share, staging, progress) = (plan.wanted, share, stagingFD, progress)
            return Batch(commit: commit, plan: plan, content: Task {
                try await Self.stageContent(wanted, of: commit, share: share, staging: staging, progress: progress)
            })
        }
        // A batch's entries are recorded while the next one is planned and made (its paths are others),
        // and before that one's folders are looked up; the last batch waits for its record.
        guard var current = try nextBatch().map({ try begin($0, &report) }) else { return }
        var recording: Task<Void, any Error>?
        while true {
            var next: Batch?
            do {
                next = try nextBatch().map { try begin($0, &report) }
                let content = try await current.content.value
                recording = try await finish(current.commit, current.plan, content, &report, deferred: &deferred, movesCursor: next == nil,
                                             after: recording, recordsAhead: next != nil)
            } catch {
                // A record under way ends before the pass does; the fetch ahead is stopped, and what it
                // staged is dropped.
                _ = await recording?.result
                if let next {
                    next.content.cancel()
                    for file in (try? await next.content.value)?.staged.values.map({ $0 }) ?? [] { unlinkat(stagingFD, file.name, 0) }
                }
                throw error
            }
            guard let following = next else { return }
            current = following
        }
    }

    /// Why an operation from the share cannot be applied as written, or nil when it can.
    static func problem(with operation: NamespaceOperation) -> String? {
        if let problem = SafePath.problem(with: operation.path) { return "refused name from the cloud: \(problem)" }
        if let reason = SkipRules.reason(forPath: operation.path) {
            return "not synced on this server (\(reason)); it stays in the share"
        }
        switch operation.op {
        case .upsert:
            guard let entry = operation.entry else { return "malformed record: an upsert without an entry" }
            if entry.size < 0 { return "malformed record: negative size \(entry.size)" }
            if entry.kind == .file, entry.chunks.reduce(Int64(0), { $0 + Int64($1.length) }) != entry.size {
                return "malformed record: the chunks add up to another size than \(entry.size) bytes"
            }
        case .rename:
            guard let from = operation.from else { return "malformed record: a rename without a source" }
            if let problem = SafePath.problem(with: from) { return "refused name from the cloud (rename source '\(from)'): \(problem)" }
            if SkipRules.reason(forPath: from) != nil { return "not synced on this server (rename from a skipped name '\(from)')" }
        case .delete:
            break
        }
        return nil
    }

    /// What applying a commit decided before its operations run (``plan(_:_:)``): how each file upsert
    /// arrives, and the files whose content is fetched.
    struct ApplyPlan {
        /// Why each operation cannot be applied as written, or nil.
        var problems: [String?]
        /// New files made as stubs (when tiering asks), in step 2.
        var stubs: Set<Int> = []
        /// Changed files whose local copy is the synced one: they become stubs of the new version.
        var restubs: Set<Int> = []
        /// Files whose content is already the commit's.
        var identical: Set<Int> = []
        /// Files already here (seeded), adopted once their fingerprint matches.
        var seeded: [Int: (item: LocalItem, fingerprint: Fingerprint128)] = [:]
        /// Files whose content is fetched and staged.
        var wanted: [(index: Int, entry: NamespaceEntry)] = []
        var overlay: EntryOverlay
        var chunkLayouts: [String: [ChunkRef]] = [:]
        var cleared: [String] = []
    }

    /// A plan's wanted files, staged (not yet flushed), or why each could not be.
    struct StagedContent: Sendable {
        var staged: [Int: StagedFile] = [:]
        var failed: [Int: String] = [:]
    }

    /// Applies one commit: stage the new content in parallel, flush it with one syncfs, move it into
    /// place operation by operation (resolving conflicts), flush again, then record entries, the
    /// deferred operations and (when `movesCursor`) the cursor in one durable batch. An operation that
    /// cannot be applied becomes a per-item error and a deferred operation; it never holds the cursor.
    /// Re-applying a commit after a crash is harmless: identical content is adopted.
    func apply(_ commit: Commit, _ report: inout SyncReport, deferred: inout DeferredOperations, movesCursor: Bool) async throws {
        let plan = try plan(commit, &report)
        let content = try await Self.stageContent(plan.wanted, of: commit, share: share, staging: stagingFD, progress: progress)
        try await finish(commit, plan, content, &report, deferred: &deferred, movesCursor: movesCursor)
    }

    /// Step 1 of applying `commit`: decides how each file upsert arrives. It looks only at the paths the
    /// commit names, so the plan of a batch of distinct paths holds while an earlier batch is applied.
    func plan(_ commit: Commit, _ report: inout SyncReport) throws -> ApplyPlan {
        // The upload of this pass looks at every path the commit names: applying it may change the
        // database where nothing changes locally (a rename whose source was deleted here moves the
        // entry, and the upload then commits the delete under the new name).
        // Beyond the journal's bound the upload looks at everything (nil).
        if var paths = appliedPaths, paths.count + commit.operations.count <= ChangeJournal.maxPaths {
            for operation in commit.operations {
                paths.changed(operation.path)
                if let from = operation.from { paths.changed(from) }
            }
            appliedPaths = paths
        } else {
            appliedPaths = nil
        }
        var plan = ApplyPlan(problems: commit.operations.map(Self.problem(with:)), overlay: EntryOverlay(state: state, endpoint: endpoint.id))
        // New files arrive as stubs when tiering asks; those are made in step 2. Content already local is
        // not fetched again.
        let stubMode = endpoint.tiering?.downloadsStubs == true
        var lookup = LocalFiles.Lookup(rootFD: rootFD)
        defer { lookup.close() }
        // What an earlier rename of the commit moves away is not what is at its path now: a file put at or
        // beneath a rename's source after it is fetched, never judged by what is there before the rename.
        var movedAway: [String: Int] = [:]
        for (index, operation) in commit.operations.enumerated() where operation.op == .rename {
            if let from = operation.from, movedAway[from] == nil { movedAway[from] = index }
        }
        func movedBefore(_ index: Int, _ path: String) -> Bool {
            !movedAway.isEmpty && ([Substring(path)] + path.folderAncestors).contains { movedAway[String($0)].map { $0 < index } ?? false }
        }
        for (index, operation) in commit.operations.enumerated() where operation.op == .upsert && plan.problems[index] == nil {
            guard let entry = operation.entry, entry.kind == .file else { continue }
            if movedBefore(index, operation.path) {
                if stubMode, entry.size > 0 { plan.stubs.insert(index) } else { plan.wanted.append((index, entry)) }
                continue
            }
            let known = try state.entry(endpoint.id, operation.path)
            if known == nil {
                // A path the database does not know is mostly free (a new endpoint): one look decides.
                if !lookup.exists(operation.path) {
                    if stubMode, entry.size > 0 { plan.stubs.insert(index) } else { plan.wanted.append((index, entry)) }
                    continue
                }
                if let local = seededCopy(operation.path, of: entry) {
                    plan.seeded[index] = local
                    continue
                }
                if stubMode, let item = unrecordedStub(operation.path, of: entry, committedAt: commit.sequence) {
                    recordStub(operation.path, entry, item, commit: commit, overlay: &plan.overlay, chunks: &plan.chunkLayouts, report: &report)
                    plan.cleared.append(operation.path)
                    continue
                }
            }
            if let known, known.kind == .file {
                if known.version == entry.contentVersion(committedAt: commit.sequence) && known.fileID == entry.fileID {
                    plan.identical.insert(index)
                    continue
                }
                if known.fingerprint.description == entry.fingerprint, known.residency == .full,
                   let local = LocalFiles.item(rootFD: rootFD, path: operation.path), known.matches(local) {
                    plan.identical.insert(index)
                    continue
                }
                if stubMode, entry.size > 0, case .clean = try? localCondition(operation.path, known) {
                    plan.restubs.insert(index)
                    continue
                }
            }
            plan.wanted.append((index, entry))
        }
        return plan
    }

    /// Step 1's fetch: writes the content of `wanted` (files of `commit`) to new files in the staging
    /// folder, in batches whose chunks are read together (a commit's small files share packs). A batch of
    /// small files is often one read, so several batches run at once to keep the store busy. Touches
    /// nothing but the staging folder, so it may run beside the application of an earlier batch.
    static func stageContent(_ wanted: [(index: Int, entry: NamespaceEntry)], of commit: Commit, share: CloudShare, staging: Int32,
                             progress: ProgressHandler?) async throws -> StagedContent {
        var content = StagedContent()
        guard !wanted.isEmpty else { return content }
        // Progress counts this commit's (or namespace batch's) work: each step's rate is taken since it began.
        let started = Date()
        // Only content to fetch needs the index: the segments of the packs the commit names.
        try await share.ensureIndexed(packs: commit.packs)
        let batches = ShareContentWriter.batches(wanted) { $0.entry.size }
        let wantedBytes = wanted.reduce(Int64(0)) { $0 + $1.entry.size }
        var stagedBytes: Int64 = 0
        var lastProgress = Date()
        try await BoundedTasks.run(batches, width: ShareContentWriter.parallelBatches, work: { batch in
            await Self.stage(batch, share: share, staging: staging)
        }, collect: { results in
            for (index, result) in results {
                switch result {
                case .success(let file):
                    content.staged[index] = file
                    stagedBytes += file.size
                case .failure(let error): content.failed[index] = "\(error)"
                }
            }
            if let progress, Date().timeIntervalSince(lastProgress) > 0.5 {
                lastProgress = Date()
                progress(JobProgress(phase: "fetching the content of commit \(commit.sequence)", items: content.staged.count + content.failed.count,
                                     totalItems: wanted.count, bytes: stagedBytes, elapsed: lastProgress.timeIntervalSince(started), totalBytes: wantedBytes))
            }
        })
        return content
    }

    /// Steps 2 and 3 of applying `commit` as `plan` decided, with its staged `content`: applies and
    /// records it. The record of the batch before (`previous`) ends before this one's folders are looked
    /// up. With `recordsAhead`, this batch's record is returned under way (its entries are not read until
    /// the next batch's record); otherwise it has ended when this returns.
    @discardableResult
    func finish(_ commit: Commit, _ plan: ApplyPlan, _ content: StagedContent, _ report: inout SyncReport,
                deferred: inout DeferredOperations, movesCursor: Bool, after previous: Task<Void, any Error>? = nil,
                recordsAhead: Bool = false) async throws -> Task<Void, any Error>? {
        var plan = plan
        var errors: [(path: String, reason: String, kind: String)] = []
        let (problems, stubs, restubs, identical, seeded) = (plan.problems, plan.stubs, plan.restubs, plan.identical, plan.seeded)
        let (staged, failed) = (content.staged, content.failed)
        var lastProgress = Date()
        if !staged.isEmpty { try Posix.call("syncfs", path: root) { CLinux_syncfs(rootFD) } }

        // 2. Apply the operations in order; a run of new stubs is made in parallel (distinct new paths:
        //    the order among them does not matter).
        let started = (time: Date(), bytes: report.downloadedBytes)
        var skipBelow = 0
        for (index, operation) in commit.operations.enumerated() where index >= skipBelow {
            if movesCursor { deferred.supersede(by: operation) }
            if let problem = problems[index] {
                errors.append((operation.path, problem, "refused"))
                continue
            }
            if let failure = failed[index] {
                errors.append((operation.path, "download failed (retried at every pass): \(failure)", "download"))
                deferred.add(operation, of: commit)
                continue
            }
            if stubs.contains(index) {
                var run = [index], paths: Set<String> = [operation.path]
                while index + run.count < commit.operations.count, stubs.contains(index + run.count),
                      paths.insert(commit.operations[index + run.count].path).inserted {
                    run.append(index + run.count)
                }
                skipBelow = index + run.count
                for later in run.dropFirst() where movesCursor { deferred.supersede(by: commit.operations[later]) }
                try await makeStubs(run, commit: commit, overlay: &plan.overlay, chunks: &plan.chunkLayouts, report: &report, errors: &errors,
                                    cleared: &plan.cleared, deferred: &deferred, done: index, since: started)
                continue
            }
            do {
                if operation.op != .delete { try clearWay(to: operation.path, overlay: &plan.overlay, report: &report) }
                switch operation.op {
                case .upsert:
                    let entry = operation.entry!
                    if entry.kind == .directory {
                        try applyDirectory(operation.path, entry, commit: commit, overlay: &plan.overlay, report: &report)
                    } else if let file = staged[index] {
                        try applyFile(operation.path, entry, file, commit: commit, overlay: &plan.overlay, report: &report)
                    } else if restubs.contains(index) {
                        try replaceWithStub(operation.path, entry, commit: commit, overlay: &plan.overlay, chunks: &plan.chunkLayouts, report: &report)
                    } else if identical.contains(index) {
                        try applyAttributes(operation.path, entry, commit: commit, overlay: &plan.overlay)
                    } else if let local = seeded[index] {
                        // Already here (a server seeded from a backup or a copy): adopted as synced, with the
                        // commit's attributes, unless it changed since it was fingerprinted.
                        let expected = record(entry, local.item, fingerprint: local.fingerprint, version: entry.contentVersion(committedAt: commit.sequence))
                        plan.overlay.set(operation.path, record(entry, try setAttributes(operation.path, entry, expecting: expected),
                                                           fingerprint: local.fingerprint, version: entry.contentVersion(committedAt: commit.sequence)))
                        report.adopted += 1
                    }
                case .delete:
                    try applyDelete(operation.path, overlay: &plan.overlay, report: &report)
                case .rename:
                    try applyRename(from: operation.from!, to: operation.path, overlay: &plan.overlay, report: &report)
                }
                plan.cleared.append(operation.path)
            } catch let error as ConflictLimitReached {
                errors.append((operation.path, error.description + " (retried at every pass)", "download"))
                deferred.add(operation, of: commit)
            } catch {
                errors.append((operation.path, "cannot apply the share's \(operation.op.rawValue) (retried at every pass): \(error)", "download"))
                deferred.add(operation, of: commit)
            }
            if let progress, Date().timeIntervalSince(lastProgress) > 0.5 {
                lastProgress = Date()
                progress(applying(commit, done: max(index + 1, skipBelow), report: report, since: started))
            }
        }
        // Staged files that were not placed (adopted, conflicted away, or failed) are dropped.
        for (_, file) in staged { unlinkat(stagingFD, file.name, 0) }
        // Applying moved the mtimes of the folders it changed; they take the share's back, so folders
        // converge like files do (a folder's own change of mtime is uploaded by the scan).
        var touched: Set<String> = []
        var lastFolder: Substring?
        for operation in commit.operations {
            // A folder made, changed or moved here (a file's upsert is none), and the folders they are in.
            if operation.op != .upsert || operation.entry?.kind != .file { touched.insert(operation.path) }
            for path in [operation.path, operation.from].compactMap({ $0 }) {
                guard let slash = path.lastIndex(of: "/"), path[..<slash] != lastFolder else { continue }
                lastFolder = path[..<slash]
                touched.insert(String(path[..<slash]))
            }
        }
        try await previous?.value
        restoreFolderTimes(touched, overlay: &plan.overlay)
        try Posix.call("syncfs", path: root) { CLinux_syncfs(rootFD) }

        // 3. Record entries, deferred operations and the cursor together, durably.
        var batch = state.batch(endpoint.id)
        plan.overlay.flush(into: &batch)
        for (fileID, chunks) in plan.chunkLayouts {
            batch.setLayout(fileID, chunks)
        }
        batch.setValue(deferred, DeferredOperations.stateKey)
        if movesCursor { batch.setCursor(commit.sequence, record: commit.id) }
        guard recordsAhead else {
            try state.commit(batch, sync: true)
            try recordErrors(errors, cleared: plan.cleared)
            return nil
        }
        let (state, entries) = (state, batch)
        let record = Task { try await OwnThread.run { try state.commit(entries, sync: true) } }
        do {
            try recordErrors(errors, cleared: plan.cleared)
        } catch {
            _ = await record.result
            throw error
        }
        return record
    }

    /// Gives each folder of `paths` that the database knows its recorded mtime (the share's) again, and
    /// records its new ctime (only that: a mode changed here meanwhile is a local change the scan must
    /// still see and commit); a folder gone or replaced meanwhile is left alone.
    func restoreFolderTimes(_ paths: Set<String>, overlay: inout EntryOverlay) {
        for path in paths.sorted() {
            guard var known = try? overlay.get(path), known.kind == .directory,
                  let parent = try? SafePath.openParent(rootFD: rootFD, path: path, create: false) else { continue }
            defer { close(parent.fd) }
            var times = [timespec(tv_sec: 0, tv_nsec: (1 << 30) - 2), Posix.timespec(nanoseconds: known.mtime)]   // atime: UTIME_OMIT
            var info = stat()
            // A folder whose mtime is already the share's is not touched: a retried operation that failed
            // again changed nothing there, and a touch would wake the watcher for another pass at once.
            guard fstatat(parent.fd, parent.name, &info, AT_SYMLINK_NOFOLLOW) == 0, info.st_mode & S_IFMT == S_IFDIR,
                  UInt64(info.st_ino) == known.inode || known.inode == 0, LocalItem(path: path, info).mtime != known.mtime,
                  utimensat(parent.fd, parent.name, &times, AT_SYMLINK_NOFOLLOW) == 0,
                  fstatat(parent.fd, parent.name, &info, AT_SYMLINK_NOFOLLOW) == 0 else { continue }
            known.ctime = LocalItem(path: path, info).ctime
            overlay.set(path, known)
        }
    }

    /// The content at `path` is already the entry's: take the new identity, version and attributes
    /// (mode, owner, ACL, mtime), so a chmod or touch on another server converges here too.
    func applyAttributes(_ path: String, _ entry: NamespaceEntry, commit: Commit, overlay: inout EntryOverlay) throws {
        guard var known = try overlay.get(path) else { return }
        known.updateStat(try setAttributes(path, entry, expecting: known))
        known.aclDigest = EntryRecord.aclDigest(entry.acl)
        known.fileID = entry.fileID
        known.version = entry.contentVersion(committedAt: commit.sequence)
        overlay.set(path, known)
    }

    /// Gives the local file at `path` the entry's mode, owner, ACL and mtime (only what differs) and
    /// returns its stat after; when `expecting` is given, refuses a file whose stat no longer matches it.
    func setAttributes(_ path: String, _ entry: NamespaceEntry, expecting known: EntryRecord? = nil) throws -> LocalItem {
        let fd = try SafePath.open(rootFD: rootFD, path: path, flags: O_RDONLY | O_NONBLOCK)
        defer { close(fd) }
        var info = stat()
        try Posix.call("fstat", path: path) { fstat(fd, &info) }
        guard (info.st_mode & S_IFMT) == S_IFREG, known.map({ $0.matches(LocalItem(path: path, info)) }) ?? true else {
            throw GatewayError("'\(path)' changed while its new attributes were applied")
        }
        // The owner before the mode: a change of owner clears the set-user-ID and set-group-ID bits.
        let chowned = Self.runsAsRoot && (info.st_uid != entry.uid || info.st_gid != entry.gid) && fchown(fd, entry.uid, entry.gid) == 0
        if chowned || UInt32(info.st_mode & 0o7777) != entry.mode & 0o7777 {
            try Posix.call("fchmod", path: path) { fchmod(fd, mode_t(entry.mode & 0o7777)) }
        }
        LocalFiles.applyACL(entry.acl, fd: fd, replacing: true)
        if LocalItem(path: path, info).mtime != entry.mtime {
            var times = [Posix.timespec(nanoseconds: entry.mtime), Posix.timespec(nanoseconds: entry.mtime)]
            try Posix.call("futimens", path: path) { futimens(fd, &times) }
        }
        try Posix.call("fstat", path: path) { fstat(fd, &info) }
        return LocalItem(path: path, info)
    }

    /// Writes the content of `files` (every chunk verified) to new files in the staging folder, with
    /// their mode, owner, ACL and mtime, reading their chunks together; each file is staged or failed on
    /// its own. Not fsynced here: the caller flushes all staged files with one syncfs.
    static func stage(_ files: [(index: Int, entry: NamespaceEntry)], share: CloudShare, staging directory: Int32) async -> [(Int, Result<StagedFile, any Error>)] {
        var results: [(Int, Result<StagedFile, any Error>)] = []
        var opened: [(index: Int, entry: NamespaceEntry, name: String, fd: Int32)] = []
        let inheritedACL = LocalFiles.passesOnACLs(folder: directory)
        var open: Set<Int> = []     // positions in `opened` not finished yet
        for (index, entry) in files {
            let name = "f-" + NamespaceEntry.newFileID()
            do {
                let fd = try Posix.call("open", path: stagingFolder + "/" + name) { openat(directory, name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600) }
                open.insert(opened.count)
                opened.append((index, entry, name, fd))
            } catch {
                results.append((index, .failure(error)))
            }
        }
        func finish(_ position: Int, _ written: Result<ShareContentWriter.Written, any Error>) {
            let (index, entry, name, fd) = opened[position]
            open.remove(position)
            defer { close(fd) }
            do {
                let content = try written.get()
                if Self.runsAsRoot { _ = fchown(fd, entry.uid, entry.gid) }     // before the mode: it clears set-ID bits
                try Posix.call("fchmod", path: name) { fchmod(fd, mode_t(entry.mode & 0o7777)) }
                LocalFiles.applyACL(entry.acl, fd: fd, replacing: inheritedACL)
                var times = [Posix.timespec(nanoseconds: entry.mtime), Posix.timespec(nanoseconds: entry.mtime)]
                try Posix.call("futimens", path: name) { futimens(fd, &times) }
                results.append((index, .success(StagedFile(name: name, fingerprint: content.fingerprint, size: content.size))))
            } catch {
                unlinkat(directory, name, 0)
                results.append((index, .failure(error)))
            }
        }
        var stopped: any Error = GatewayError("the share's reads ended early")
        do {
            try await ShareContentWriter.write(opened.map { ShareContentWriter.Target(fd: $0.fd, path: $0.name, chunks: $0.entry.chunks) },
                                               share: share) { position, written in finish(position, written) }
        } catch {
            stopped = error
        }
        // Only a cancelled read leaves files unfinished; they are dropped.
        for position in open.sorted() { finish(position, .failure(stopped)) }
        return results
    }

    /// Moves a staged file to `path` (replacing what is there when `replace`, else only if nothing is).
    func place(_ file: StagedFile, at path: String, replace: Bool) throws -> LocalItem {
        let parent = try SafePath.openParent(rootFD: rootFD, path: path, create: true)
        defer { close(parent.fd) }
        try Posix.call("rename", path: path) {
            CLinux_renameat2(stagingFD, file.name, parent.fd, parent.name, replace ? 0 : UInt32(CLINUX_RENAME_NOREPLACE))
        }
        var info = stat()
        try Posix.call("fstatat", path: path) { fstatat(parent.fd, parent.name, &info, AT_SYMLINK_NOFOLLOW) }
        return LocalItem(path: path, info)
    }

    /// Removes the folder at `path` if it is empty; false when it is not (or cannot be removed).
    func removeEmptyFolder(_ path: String) -> Bool {
        guard let parent = try? SafePath.openParent(rootFD: rootFD, path: path, create: false) else { return false }
        defer { close(parent.fd) }
        return unlinkat(parent.fd, parent.name, AT_REMOVEDIR) == 0
    }

    /// Moves the local item at `path` aside to a free conflict name; returns that name.
    func moveAside(_ path: String, overlay: EntryOverlay, label: String) throws -> String {
        let target = try freeConflictName(for: path, label: label, overlay: overlay)
        try move(path, to: target)
        return target
    }

    /// Renames the local item at `path` to `target`, which must be free (its folders are made).
    func move(_ path: String, to target: String) throws {
        let from = try SafePath.openParent(rootFD: rootFD, path: path, create: false)
        defer { close(from.fd) }
        let to = try SafePath.openParent(rootFD: rootFD, path: target, create: true)
        defer { close(to.fd) }
        try Posix.call("rename", path: path) { CLinux_renameat2(from.fd, from.name, to.fd, to.name, UInt32(CLINUX_RENAME_NOREPLACE)) }
    }

    func freeConflictName(for path: String, label: String, overlay: EntryOverlay) throws -> String {
        for candidate in ConflictNames.candidates(for: path, serverName: label) {
            if !LocalFiles.exists(rootFD: rootFD, path: candidate), try overlay.get(candidate) == nil { return candidate }
        }
        throw ConflictLimitReached(path: path)
    }

    /// A folder of the share goes where something else is local (a file, a symlink): a kind conflict.
    /// The local item moves aside under a conflict name (it uploads from there as a new item), so the
    /// share's item can take its place and both sides' data is kept.
    func clearWay(to path: String, overlay: inout EntryOverlay, report: inout SyncReport) throws {
        var prefix = ""
        for component in path.split(separator: "/").dropLast() {
            prefix += (prefix.isEmpty ? "" : "/") + component
            guard let info = try LocalFiles.status(rootFD: rootFD, path: prefix) else { return }
            if (info.st_mode & S_IFMT) == S_IFDIR { continue }
            _ = try moveAside(prefix, overlay: overlay, label: serverName)
            overlay.remove(prefix)
            report.conflicts += 1
            return
        }
    }

    /// A local file the database does not know that already holds `entry`'s content (same size, then
    /// same fingerprint): a server whose disk was seeded joins without downloading it. Stubs never match.
    func seededCopy(_ path: String, of entry: NamespaceEntry) -> (item: LocalItem, fingerprint: Fingerprint128)? {
        guard let fingerprint = entry.fingerprint, let item = LocalFiles.item(rootFD: rootFD, path: path), !item.isDirectory,
              item.size == entry.size, LocalFiles.stubMarker(rootFD: rootFD, path: path) == nil,
              let local = try? LocalFiles.fingerprint(rootFD: rootFD, path: path), local.description == fingerprint,
              let after = LocalFiles.item(rootFD: rootFD, path: path), after.mtime == item.mtime, after.ctime == item.ctime,
              after.size == item.size, after.inode == item.inode else { return nil }
        return (item, local)
    }

    /// The stub of `entry` at `path` that a pass stopped between making and recording it left (its
    /// markers name the entry's file id and content version, its size and mtime are the entry's): it is
    /// recorded as it is, not replaced by the content.
    func unrecordedStub(_ path: String, of entry: NamespaceEntry, committedAt sequence: UInt64) -> LocalItem? {
        guard entry.size > 0, let item = LocalFiles.item(rootFD: rootFD, path: path), !item.isDirectory,
              item.size == entry.size, item.mtime == entry.mtime,
              let origin = LocalFiles.stubOrigin(rootFD: rootFD, path: path),
              origin.fileID == entry.fileID, origin.version == entry.contentVersion(committedAt: sequence) else { return nil }
        return item
    }

    /// Whether the local item at `path` still holds what was last synced (`record`).
    enum LocalCondition { case absent, clean(LocalItem), modified(LocalItem, Fingerprint128), directory(LocalItem), other }

    func localCondition(_ path: String, _ record: EntryRecord?) throws -> LocalCondition {
        guard LocalFiles.exists(rootFD: rootFD, path: path) else { return .absent }
        guard let item = LocalFiles.item(rootFD: rootFD, path: path) else { return .other }
        if item.isDirectory { return .directory(item) }
        if let record, record.kind == .file, record.matches(item) { return .clean(item) }
        // A file with stub markers is never read as content (its holes would read as zeros, or recall).
        // It holds only the share's bytes while its size and mtime are the recorded ones, or when the
        // database does not know it as a stub (a crash between making it and recording it).
        if LocalFiles.stubMarker(rootFD: rootFD, path: path) != nil {
            if let record, record.kind == .file, record.residency != .full, record.size != item.size || record.mtime != item.mtime {
                return .other
            }
            return .clean(item)
        }
        let fingerprint = try LocalFiles.fingerprint(rootFD: rootFD, path: path)
        if let record, record.kind == .file, fingerprint == record.fingerprint { return .clean(item) }
        return .modified(item, fingerprint)
    }

    func record(_ entry: NamespaceEntry, _ item: LocalItem, fingerprint: Fingerprint128, version: UInt64) -> EntryRecord {
        var record = EntryRecord(kind: entry.kind, fileID: entry.fileID, size: item.size, mtime: item.mtime, ctime: item.ctime, inode: item.inode,
                                 mode: item.mode, uid: item.uid, gid: item.gid, fingerprint: fingerprint, version: version)
        record.aclDigest = EntryRecord.aclDigest(entry.acl)
        return record
    }

    func applyFile(_ path: String, _ entry: NamespaceEntry, _ file: StagedFile, commit: Commit, overlay: inout EntryOverlay, report: inout SyncReport) throws {
        let known = try overlay.get(path)
        func placed(_ item: LocalItem) {
            overlay.set(path, record(entry, item, fingerprint: file.fingerprint, version: entry.contentVersion(committedAt: commit.sequence)))
            report.downloaded += 1
            report.downloadedBytes += file.size
        }
        if known == nil {
            // A path the database does not know is mostly absent (a new endpoint): the file is placed
            // without replacing anything, which also never overwrites a file made there since the pass
            // looked. One that is there (EEXIST; EINVAL where the file system cannot refuse to replace)
            // is judged below.
            do {
                return placed(try place(file, at: path, replace: false))
            } catch let error as PosixError where error.errno == EEXIST || error.errno == EINVAL {}
        }
        switch try localCondition(path, known) {
        case .absent, .clean:
            placed(try place(file, at: path, replace: true))
        case .modified(_, let fingerprint) where fingerprint == file.fingerprint:
            // Same content on both sides (also: our own commit re-applied after a crash): adopt it, with
            // the commit's attributes, so both sides end with the same mode and mtime.
            let item = try setAttributes(path, entry)
            overlay.set(path, record(entry, item, fingerprint: fingerprint, version: entry.contentVersion(committedAt: commit.sequence)))
        case .modified(let item, _):
            report.conflicts += 1
            if entry.mtime >= item.mtime {
                // The cloud's write is newer: it keeps the name; ours moves aside and uploads as a new file.
                _ = try moveAside(path, overlay: overlay, label: serverName)
                placed(try place(file, at: path, replace: false))
            } else {
                // Ours is newer: the cloud's version lands under the author's conflict name; ours keeps the
                // name and, recorded with an impossible stat, uploads over it in this pass.
                let target = try freeConflictName(for: path, label: commit.authorName, overlay: overlay)
                _ = try place(file, at: target, replace: false)
                var stale = record(entry, item, fingerprint: file.fingerprint, version: entry.contentVersion(committedAt: commit.sequence))
                stale.size = -1
                overlay.set(path, stale)
                report.downloaded += 1
                report.downloadedBytes += file.size
            }
        case .directory where known?.kind == .directory && removeEmptyFolder(path):
            // A synced folder with nothing left in it (the commit moved or deleted its items first).
            try overlay.removeSubtree(path)
            placed(try place(file, at: path, replace: false))
        case .directory, .other:
            report.conflicts += 1
            _ = try moveAside(path, overlay: overlay, label: serverName)
            try overlay.removeSubtree(path)
            placed(try place(file, at: path, replace: false))
        }
    }

    /// Makes the stubs of new cloud files at `indices` of `commit`, in parallel, and records them (their
    /// chunk lists are kept for recall). A path taken meanwhile is left alone: the next pass sees it.
    func makeStubs(_ indices: [Int], commit: Commit, overlay: inout EntryOverlay, chunks: inout [String: [ChunkRef]],
                   report: inout SyncReport, errors: inout [(path: String, reason: String, kind: String)], cleared: inout [String],
                   deferred: inout DeferredOperations, done: Int, since started: (time: Date, bytes: Int64)) async throws {
        var lastProgress = Date()
        var taken = 0
        let items = indices.compactMap { index -> (path: String, entry: NamespaceEntry)? in
            commit.operations[index].entry.map { (commit.operations[index].path, $0) }
        }
        let prefixes = items.first.map {
            StubFile.MarkerPrefixes(in: stagingFD, like: StubAttributes($0.entry, version: 0, of: endpoint).origin)
        }
        defer { prefixes?.close() }
        // A task makes the stubs of one folder (at most 512): its folder is opened once, and tasks at once
        // work in different folders rather than queueing for one folder's lock (a large folder's second
        // part comes after every folder's first).
        var parts: [[[(path: String, entry: NamespaceEntry)]]] = []
        var partsOfFolder: [Substring: Int] = [:]
        for item in items {
            let folder = item.path.lastIndex(of: "/").map { item.path[..<$0] } ?? ""
            if let index = partsOfFolder[folder] {
                if parts[index][parts[index].count - 1].count == 512 { parts[index].append([]) }
                parts[index][parts[index].count - 1].append(item)
            } else {
                partsOfFolder[folder] = parts.count
                parts.append([[item]])
            }
        }
        let groups = (0..<(parts.map(\.count).max() ?? 0)).flatMap { round in parts.compactMap { round < $0.count ? $0[round] : nil } }
        typealias Made = (path: String, entry: NamespaceEntry, item: LocalItem?, failure: String?)
        try await BoundedTasks.run(groups, width: 4, work: { [rootFD, stagingFD, endpoint, sequence = commit.sequence] group -> [Made] in
            let stubs = group.map { StubAttributes($0.entry, version: $0.entry.contentVersion(committedAt: sequence), of: endpoint) }
            let folder: StubFolder
            do {
                folder = try StubFolder(rootFD: rootFD, path: group[0].path, staging: stagingFD)
            } catch {
                return group.map { ($0.path, $0.entry, nil, "\(error)") }
            }
            defer { folder.close() }
            return zip(group, stubs).map { item, stub in
                do {
                    return (item.path, item.entry, try folder.makeStub(stub, at: item.path), nil)
                } catch {
                    return (item.path, item.entry, nil, "\(error)")
                }
            }
        }, collect: { made in
            for (path, entry, item, failure) in made {
                taken += 1
                if let failure {
                    errors.append((path, "cannot make the stub (retried at every pass): \(failure)", "download"))
                    deferred.add(.upsert(path, entry), of: commit)
                    continue
                }
                guard let item else { continue }
                recordStub(path, entry, item, commit: commit, overlay: &overlay, chunks: &chunks, report: &report)
                cleared.append(path)
            }
            if let progress, Date().timeIntervalSince(lastProgress) > 0.5 {
                lastProgress = Date()
                progress(applying(commit, done: done + taken, report: report, since: started))
            }
        })
    }

    /// Progress while `commit` is applied: operations done of its total, with the files written and
    /// stubs made so far; rate and bytes count from `started` (when, and at how many downloaded bytes,
    /// its apply step began).
    func applying(_ commit: Commit, done: Int, report: SyncReport, since started: (time: Date, bytes: Int64)) -> JobProgress {
        JobProgress(phase: "applying commit \(commit.sequence) (\(report.downloaded) files written, \(report.stubsCreated) stubs made)",
                    items: min(done, commit.operations.count), totalItems: commit.operations.count, bytes: report.downloadedBytes - started.bytes,
                    elapsed: Date().timeIntervalSince(started.time), unit: "operations")
    }

    /// Replaces the synced file at `path` with a stub of `entry` (a changed cloud file on an endpoint that
    /// downloads stubs). The stub is staged whole first; a file changed here meanwhile is not replaced:
    /// the operation is deferred, and its retry downloads the content and keeps both versions.
    func replaceWithStub(_ path: String, _ entry: NamespaceEntry, commit: Commit, overlay: inout EntryOverlay,
                         chunks: inout [String: [ChunkRef]], report: inout SyncReport) throws {
        switch try localCondition(path, try overlay.get(path)) {
        case .clean, .absent:
            break
        case .modified, .directory, .other:
            throw GatewayError("'\(path)' changed here while the share's new version was applied")
        }
        let stub = try Self.stageStub(StubAttributes(entry, version: commit.sequence, of: endpoint), staging: stagingFD)
        let item: LocalItem
        do {
            item = try place(stub, at: path, replace: true)
        } catch {
            unlinkat(stagingFD, stub.name, 0)
            throw error
        }
        recordStub(path, entry, item, commit: commit, overlay: &overlay, chunks: &chunks, report: &report)
    }

    /// Records the stub of `entry` just made at `path` (its chunk list kept for recall) and tells the
    /// daemon, which marks it for recall.
    func recordStub(_ path: String, _ entry: NamespaceEntry, _ item: LocalItem, commit: Commit, overlay: inout EntryOverlay,
                    chunks: inout [String: [ChunkRef]], report: inout SyncReport) {
        onStubCreated?(root + "/" + path)
        var record = record(entry, item, fingerprint: entry.fingerprintValue ?? Fingerprint128(high: 0, low: 0), version: entry.contentVersion(committedAt: commit.sequence))
        record.residency = .tiered
        overlay.set(path, record)
        chunks[entry.fileID] = entry.chunks
        report.stubsCreated += 1
    }

    /// A folder new stubs are made in, opened once for all of them.
    struct StubFolder {
        let fd: Int32
        let staging: Int32
        /// The group new files in the folder get (its own, when it is set-group-ID), and their owner.
        let newFileOwner: (uid: uid_t, gid: gid_t)
        /// Whether new files in the folder inherit ACLs.
        let passesOnACLs: Bool

        /// Opens (making it if need be) the folder of `path`, beneath the endpoint's root.
        init(rootFD: Int32, path: String, staging: Int32) throws {
            fd = try SafePath.openParent(rootFD: rootFD, path: path, create: true).fd
            self.staging = staging
            var info = stat()
            guard fstat(fd, &info) == 0 else {
                let error = PosixError("fstat", path: path, errno: errno)
                Glibc.close(fd)
                throw error
            }
            newFileOwner = (geteuid(), info.st_mode & S_ISGID != 0 ? info.st_gid : getegid())
            passesOnACLs = LocalFiles.passesOnACLs(folder: fd)
        }

        func close() { Glibc.close(fd) }

        /// Creates a stub at `path` (a name in this folder) unless something is there (nil then): an
        /// unnamed file (O_TMPFILE) in the folder gets the size, markers and attributes and is then linked
        /// in, so a stub only ever appears complete, and stubs in parallel contend only for their own
        /// folder. Where the file system has no unnamed files, the stub is staged and renamed into place.
        func makeStub(_ stub: StubAttributes, at path: String) throws -> LocalItem? {
            let name = path.lastIndex(of: "/").map { String(path[path.index(after: $0)...]) } ?? path
            guard let file = try Posix.openUnnamed(in: fd, mode: 0o600, path: path) else {
                let staged = try SyncEngine.stageStub(stub, staging: staging)
                if CLinux_renameat2(staging, staged.name, fd, name, UInt32(CLINUX_RENAME_NOREPLACE)) != 0 {
                    let failure = errno
                    unlinkat(staging, staged.name, 0)
                    if failure == EEXIST { return nil }
                    throw PosixError("rename", path: path, errno: failure)
                }
                var info = stat()
                try Posix.call("fstatat", path: path) { fstatat(fd, name, &info, AT_SYMLINK_NOFOLLOW) }
                return LocalItem(path: path, info)
            }
            defer { Glibc.close(file) }
            try SyncEngine.writeStub(stub, fd: file, path: path, owner: newFileOwner, inheritedACL: passesOnACLs)
            guard try Posix.linkUnnamed(file, into: fd, as: name, path: path) else { return nil }
            var info = stat()
            try Posix.call("fstat", path: path) { fstat(file, &info) }
            return LocalItem(path: path, info)
        }
    }

    /// Moves the file at `path` aside to a free conflict name and makes `path` a stub of `record` again
    /// (same markers, size, mode and mtime; the chunk list is already recorded). The stub is staged
    /// first, so a full disk changes nothing; a failed placement moves the file back. Returns the
    /// conflict name and the new record.
    func setAsideForStub(_ path: String, _ record: EntryRecord) throws -> (copy: String, record: EntryRecord) {
        var attributes = StubAttributes(record, of: endpoint)
        attributes.acl = LocalFiles.acl(rootFD: rootFD, path: path)     // the ACLs of the file it stands for
        let stub = try Self.stageStub(attributes, staging: stagingFD)
        var placed = false
        defer { if !placed { unlinkat(stagingFD, stub.name, 0) } }
        let copy = try moveAside(path, overlay: EntryOverlay(state: state, endpoint: endpoint.id), label: serverName)
        let item: LocalItem
        do {
            item = try placeStub(stub, at: path)
        } catch {
            try move(copy, to: path)
            throw error
        }
        placed = true
        var updated = record
        updated.updateStat(item)
        updated.residency = .tiered
        return (copy, updated)
    }

    /// Moves a staged stub to `path` (which must be free); the daemon is told so it can mark it for recall.
    func placeStub(_ stub: StagedFile, at path: String) throws -> LocalItem {
        let item = try place(stub, at: path, replace: false)
        onStubCreated?(root + "/" + path)
        return item
    }

    /// What a stub carries: its markers and the attributes of the file it stands for.
    struct StubAttributes: Sendable {
        var origin: StubFile.Origin, size: Int64, mode: UInt32, uid: UInt32, gid: UInt32, mtime: Int64
        /// The POSIX ACLs the file has (a stub carries them like the file would).
        var acl: [String: String]?

        init(_ entry: NamespaceEntry, version: UInt64, of endpoint: EndpointConfig) {
            self.init(origin: StubFile.Origin(shareID: endpoint.shareID ?? "", share: endpoint.shareURL, fileID: entry.fileID, version: version),
                      size: entry.size, mode: entry.mode, uid: entry.uid, gid: entry.gid, mtime: entry.mtime)
            acl = entry.acl
        }

        init(_ record: EntryRecord, of endpoint: EndpointConfig) {
            self.init(origin: StubFile.Origin(shareID: endpoint.shareID ?? "", share: endpoint.shareURL, fileID: record.fileID, version: record.version),
                      size: record.size, mode: record.mode, uid: record.uid, gid: record.gid, mtime: record.mtime)
        }

        init(origin: StubFile.Origin, size: Int64, mode: UInt32, uid: UInt32, gid: UInt32, mtime: Int64) {
            (self.origin, self.size, self.mode, self.uid, self.gid, self.mtime) = (origin, size, mode, uid, gid, mtime)
        }
    }

    /// Writes a sparse file of the right size with the stub markers, mode, owner and mtime in the
    /// staging folder, so a stub only ever appears at its path complete.
    static func stageStub(_ stub: StubAttributes, staging: Int32) throws -> StagedFile {
        let name = "s-" + NamespaceEntry.newFileID()
        let path = stagingFolder + "/" + name
        let fd = try Posix.call("open", path: path) { openat(staging, name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600) }
        var done = false
        defer {
            close(fd)
            if !done { unlinkat(staging, name, 0) }
        }
        try writeStub(stub, fd: fd, path: path)
        done = true
        return StagedFile(name: name, fingerprint: Fingerprint128(high: 0, low: 0), size: stub.size)
    }

    /// Gives the new file `fd` a stub's size, markers, mode, owner, ACLs and mtime. `owner` is the one
    /// it was created with, when known (a change of owner is then made only when it differs);
    /// `inheritedACL` says whether it may have inherited ACLs its folder passes on.
    static func writeStub(_ stub: StubAttributes, fd: Int32, path: String, owner: (uid: uid_t, gid: gid_t)? = nil,
                          inheritedACL: Bool = true) throws {
        try Posix.call("ftruncate", path: path) { ftruncate(fd, off_t(stub.size)) }
        let file = StubFile(descriptor: fd, path: path)
        try file.setMarkersOfNewFile(stub.origin)
        // The owner before the mode: a change of owner clears the set-user-ID and set-group-ID bits.
        if Self.runsAsRoot, owner.map({ $0.uid != stub.uid || $0.gid != stub.gid }) ?? true { _ = fchown(fd, stub.uid, stub.gid) }
        try Posix.call("fchmod", path: path) { fchmod(fd, mode_t(stub.mode & 0o7777)) }
        LocalFiles.applyACL(stub.acl, fd: fd, replacing: inheritedACL)
        let time = Posix.timespec(nanoseconds: stub.mtime)
        var times = [time, time]
        try Posix.call("futimens", path: path) { futimens(fd, &times) }
    }

    func applyDirectory(_ path: String, _ entry: NamespaceEntry, commit: Commit, overlay: inout EntryOverlay, report: inout SyncReport) throws {
        let known = try overlay.get(path)
        switch try localCondition(path, known) {
        case .directory:
            break
        case .absent:
            let parent = try SafePath.openParent(rootFD: rootFD, path: path, create: true)
            defer { close(parent.fd) }
            if mkdirat(parent.fd, parent.name, mode_t(entry.mode & 0o7777)) != 0 && errno != EEXIST {
                throw PosixError("mkdir", path: path, errno: errno)
            }
        case .clean:
            // A synced, unchanged file became a directory in the cloud.
            let parent = try SafePath.openParent(rootFD: rootFD, path: path, create: false)
            defer { close(parent.fd) }
            try Posix.call("unlink", path: path) { unlinkat(parent.fd, parent.name, 0) }
            try Posix.call("mkdir", path: path) { mkdirat(parent.fd, parent.name, mode_t(entry.mode & 0o7777)) }
        case .modified, .other:
            report.conflicts += 1
            _ = try moveAside(path, overlay: overlay, label: serverName)
            overlay.remove(path)
            let parent = try SafePath.openParent(rootFD: rootFD, path: path, create: true)
            defer { close(parent.fd) }
            try Posix.call("mkdir", path: path) { mkdirat(parent.fd, parent.name, mode_t(entry.mode & 0o7777)) }
        }
        let parent = try SafePath.openParent(rootFD: rootFD, path: path, create: false)
        defer { close(parent.fd) }
        var info = stat()
        try Posix.call("fstatat", path: path) { fstatat(parent.fd, parent.name, &info, AT_SYMLINK_NOFOLLOW) }
        // A mode changed here since the last sync is newer than what the share had: it stays, and the scan
        // commits it (the record takes the share's mode, so the scan sees the difference).
        let changedHere = known?.kind == .directory && UInt32(info.st_mode) & 0o7777 != known!.mode & 0o7777
        if !changedHere { _ = fchmodat(parent.fd, parent.name, mode_t(entry.mode & 0o7777), 0) }
        // The owner likewise (only root can give a folder away; elsewhere the local owner is what is synced).
        let ownerChangedHere = known?.kind == .directory && (info.st_uid != known!.uid || info.st_gid != known!.gid)
        if !ownerChangedHere, Self.runsAsRoot, info.st_uid != entry.uid || info.st_gid != entry.gid {
            _ = fchownat(parent.fd, parent.name, entry.uid, entry.gid, AT_SYMLINK_NOFOLLOW)
        }
        // The share's ACLs too (a default ACL decides what new items here inherit), unless they changed
        // here since the last sync: then the record keeps a stale ctime, so the scan reads and commits them.
        var aclChangedHere = false
        let folder = openat(parent.fd, parent.name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        if folder >= 0 {
            defer { close(folder) }
            aclChangedHere = known?.kind == .directory && EntryRecord.aclDigest(LocalFiles.acl(fd: folder)) != known!.aclDigest
            if !aclChangedHere { LocalFiles.applyACL(entry.acl, fd: folder, replacing: true) }
        }
        var times = [timespec(tv_sec: 0, tv_nsec: (1 << 30) - 2), Posix.timespec(nanoseconds: entry.mtime)]   // atime: UTIME_OMIT
        _ = utimensat(parent.fd, parent.name, &times, AT_SYMLINK_NOFOLLOW)
        try Posix.call("fstatat", path: path) { fstatat(parent.fd, parent.name, &info, AT_SYMLINK_NOFOLLOW) }
        var synced = record(entry, LocalItem(path: path, info), fingerprint: Fingerprint128(high: 0, low: 0), version: entry.contentVersion(committedAt: commit.sequence))
        synced.mode = synced.mode & ~0o7777 | entry.mode & 0o7777
        if aclChangedHere { synced.ctime = 0 }
        if ownerChangedHere { (synced.uid, synced.gid) = (entry.uid, entry.gid) }
        overlay.set(path, synced)
    }

    /// A cloud delete: removes what is unchanged locally; anything modified or new locally is kept
    /// (and uploads again), so a delete racing a modify keeps the modified file.
    func applyDelete(_ path: String, overlay: inout EntryOverlay, report: inout SyncReport) throws {
        let known = try overlay.subtree(path)
        defer { for key in known.keys { overlay.remove(key) } }
        guard LocalFiles.exists(rootFD: rootFD, path: path) else { return }
        // Deepest first, so directories are emptied before they are removed.
        for (item, record) in known.sorted(by: { $0.key.count > $1.key.count }) {
            guard let parent = try? SafePath.openParent(rootFD: rootFD, path: item, create: false) else { continue }
            defer { close(parent.fd) }
            switch try localCondition(item, record) {
            case .clean:
                if unlinkat(parent.fd, parent.name, 0) == 0 { report.appliedRemovals += 1 }
            case .directory:
                if unlinkat(parent.fd, parent.name, AT_REMOVEDIR) == 0 { report.appliedRemovals += 1 }
            case .absent, .modified, .other:
                break
            }
        }
    }

    /// A cloud rename: moves the local item (whatever its state) and its entries. An item of another kind
    /// than the synced one there (a folder made where the file was deleted, or the reverse) is new here:
    /// it stays, and the synced one counts as deleted here.
    func applyRename(from: String, to: String, overlay: inout EntryOverlay, report: inout SyncReport) throws {
        guard from != to, !to.hasPrefix(from + "/") else { return }
        let record = try overlay.get(from)
        let moves = record.map { record in
            LocalFiles.item(rootFD: rootFD, path: from).map { $0.isDirectory == (record.kind == .directory) } ?? false
        } ?? LocalFiles.exists(rootFD: rootFD, path: from)
        if moves {
            if LocalFiles.exists(rootFD: rootFD, path: to) {
                report.conflicts += 1
                let aside = try moveAside(to, overlay: overlay, label: serverName)
                _ = aside
                try overlay.removeSubtree(to)
            }
            let source = try SafePath.openParent(rootFD: rootFD, path: from, create: false)
            defer { close(source.fd) }
            let target = try SafePath.openParent(rootFD: rootFD, path: to, create: true)
            defer { close(target.fd) }
            try Posix.call("rename", path: from) { CLinux_renameat2(source.fd, source.name, target.fd, target.name, UInt32(CLINUX_RENAME_NOREPLACE)) }
            report.appliedRemovals += 1
        } else if record != nil {
            // Deleted here, not yet committed: the moved entries tell the upload where the items went (it
            // follows a local rename of them from there, and fetches again what it finds nowhere).
            renamedWhileDeletedHere.insert(to)
        }
        for path in renamedWhileDeletedHere where DeferredOperations.isWithin(path, from) {
            renamedWhileDeletedHere.remove(path)
            renamedWhileDeletedHere.insert(to + path.dropFirst(from.count))
        }
        try overlay.move(from: from, to: to)
    }

    /// Fetches the items at `paths` again: this endpoint's records of items it deleted while the share
    /// renamed them, found nowhere by the upload's walk. The share's rename decides, as a modify does
    /// against a delete, whichever pass reached the share first (had the delete, the renaming server would
    /// have uploaded its items again). Each entry comes from the commit that last wrote it (its record's
    /// version); false, with nothing changed, when one cannot be read there (the delete then goes on).
    func fetchAgain(_ paths: Set<String>, known: [String: EntryRecord], report: inout SyncReport) async throws -> Bool {
        var commits: [UInt64: Commit] = [:]
        var operations: [NamespaceOperation] = []
        var overlay = EntryOverlay(state: state, endpoint: endpoint.id)
        for path in paths.sorted() {
            guard var record = known[path] else { return false }
            if commits[record.version] == nil {
                guard record.version > 0, let commit = try? await share.log.read(record.version) else { return false }
                commits[record.version] = commit
            }
            guard var entry = commits[record.version]?.operations.first(where: { $0.op == .upsert && $0.entry?.fileID == record.fileID })?.entry else {
                return false
            }
            entry.version = entry.contentVersion(committedAt: record.version)
            operations.append(.upsert(path, entry))
            // Not the version it names: the item is fetched, not taken for the local one. (A pass stopped
            // here finds the record and no item, and deletes it as before.)
            record.version = 0
            overlay.set(path, record)
        }
        var batch = state.batch(endpoint.id)
        overlay.flush(into: &batch)
        try state.commit(batch, sync: false)
        var commit = Commit(author: author, authorName: serverName, operations: operations)
        commit.sequence = try state.cursor(endpoint.id)
        var deferred = try state.value(DeferredOperations.self, endpoint.id, DeferredOperations.stateKey) ?? DeferredOperations()
        try await apply(commit, &report, deferred: &deferred, movesCursor: false)
        return true
    }
}

/// More than ``ConflictNames/limit`` conflict copies of one file exist.
struct ConflictLimitReached: Error, CustomStringConvertible {
    var path: String
    var description: String { "'\(path)' already has \(ConflictNames.limit) conflict copies; resolve them to let it sync" }
}
