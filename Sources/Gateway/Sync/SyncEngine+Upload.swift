import Backends
import CloudShare
import Foundation
import Hashing

extension SyncEngine {
    /// What to record for one committed operation once its commit is in the log.
    enum Update {
        case set(String, EntryRecord, contentChanged: Bool)
        case move(from: String, to: String)
        case removeSubtree(String)
    }

    /// Looks at the endpoint's local changes within `scope`, uploads changed content and appends one
    /// commit at cursor + 1. Returns false when another endpoint took that sequence number first (the
    /// caller downloads and retries).
    func upload(_ report: inout SyncReport, scope: ChangeScope) async throws -> Bool {
        var errors0: [(path: String, reason: String, kind: String)] = []
        let pendingMarks = try state.pendingPaths(endpoint.id)
        let previous = try state.errors(endpoint.id)
        let looked = try await lookAt(scope, pending: pendingMarks, errors: previous)
        let walked = looked.walked
        var known = looked.known
        report.examined = looked.count
        report.wholeTree = looked.wholeTree
        report.differing = looked.wholeTree ? looked.examined?.count : nil
        /// True when this pass looked at `path` (a pass over changes speaks only of what it saw).
        func examined(_ path: String) -> Bool { looked.examined?.contains(path) ?? true }
        let interrupted = known.filter { $0.value.residency == .tiering || $0.value.residency == .recalling }
        if !interrupted.isEmpty {
            let tierer = Tierer(share: share, state: state, endpoint: endpoint)
            for (path, record) in interrupted {
                do {
                    try await tierer.recoverInterrupted(path, record, recaller: recaller)
                } catch {
                    errors0.append((path, "an interrupted tiering or recall could not be finished: \(error)", "upload"))
                }
            }
            for path in interrupted.keys { known[path] = try state.entry(endpoint.id, path) }
        }
        var cursor = try state.cursor(endpoint.id)
        // Every recorded path met by the walk by an item of its kind (the usual pass; the walk's paths are
        // distinct, normalization twins excluded): nothing vanished or moved, and no set of the walked
        // paths is built to say so. A path whose item is now of another kind, or another inode, may hold
        // a new item: its record is looked for elsewhere like a vanished one's (see `later`).
        var met = 0
        var replaced: [String] = []
        var kindChanged = false
        for item in walked.items {
            guard let record = known[item.path] else { continue }
            met += 1
            if Self.isAnother(item, than: record) {
                replaced.append(item.path)
                kindChanged = kindChanged || (record.kind == .directory) != item.isDirectory
            }
        }
        let everyRecordMet = met == known.count && !kindChanged
        var walkedPaths: Set<String>?
        func isLocal(_ path: String) -> Bool {
            if walkedPaths == nil { walkedPaths = Set(walked.items.map(\.path)) }
            return walkedPaths!.contains(path)
        }
        // Paths this pass must leave alone: those with a share operation still to apply (their local
        // bytes are stale), and those the walk could not read (unknown, never absent).
        var deferredPaths = try state.value(DeferredOperations.self, endpoint.id, DeferredOperations.stateKey)?.paths ?? []
        // (A name that is not UTF-8 shows as a path a synced item may have: that item is still looked at;
        // the skipped one's inode speaks for it below.)
        var unknownPaths = Set(walked.skipped.filter { !$0.isNormalizationTwin && !$0.pathIsLossy }.map(\.path))
        // A synced item now under a name that is not synced (not UTF-8, another hard link) is still here.
        let skippedInodes = Set(walked.skipped.compactMap(\.inode))
        if !skippedInodes.isEmpty {
            for (path, record) in known where skippedInodes.contains(record.inode) { unknownPaths.insert(path) }
        }
        func leftAlone(_ path: String) -> Bool {
            DeferredOperations.covers(deferredPaths, path) || DeferredOperations.covers(unknownPaths, path)
        }
        // The folders above a path left alone: such an item is not known to be gone, so its folder is
        // never deleted whole or replaced by a file while it is (what else vanished in it is deleted
        // item by item). Gathered when first asked.
        var aboveLeftAlone: Set<String>?
        func holdsLeftAlone(_ path: String) -> Bool {
            if aboveLeftAlone == nil {
                aboveLeftAlone = []
                for item in deferredPaths.union(unknownPaths) {
                    for folder in item.folderAncestors where !aboveLeftAlone!.insert(String(folder)).inserted { break }
                }
            }
            return aboveLeftAlone!.contains(path)
        }
        var missingByInode: [UInt64: String] = [:]
        if !everyRecordMet {
            for (path, record) in known where !isLocal(path) && !leftAlone(path) { missingByInode[record.inode] = path }
        }
        for path in replaced where !leftAlone(path) { missingByInode[known[path]!.inode] = path }

        var operations: [NamespaceOperation] = []
        var updates: [Update] = []
        var statOnly: [(String, EntryRecord)] = []
        var errors: [(path: String, reason: String, kind: String)] = walked.skipped.map { ($0.path, $0.reason, "skipped") } + errors0
        var cleared: [String] = []
        var uploadedBytes: Int64 = 0
        var uploader = share.makeUploader()
        let started = Date()
        var lastProgress = started
        var lookedAt = 0
        var batchChunks = 0

        // Folders with records beneath them, gathered at the first rename: a file's rename moves its one
        // record, where sweeping every record (a whole walk holds them all) made a thousand renames in a
        // million-file tree a billion comparisons. A superset: a folder whose records moved stays in it.
        var holdingRecords: Set<String>?
        func noteAncestors(of path: String) {
            // A folder already noted has its own ancestors noted too.
            for folder in path.folderAncestors where !holdingRecords!.insert(String(folder)).inserted { break }
        }
        /// Removes and returns the records at and beneath `path`.
        func takeKnown(_ path: String) -> [String: EntryRecord] {
            if holdingRecords == nil {
                holdingRecords = []
                for path in known.keys { noteAncestors(of: path) }
            }
            guard holdingRecords!.contains(path) else { return known.removeValue(forKey: path).map { [path: $0] } ?? [:] }
            let taken = known.filter { $0.key == path || $0.key.hasPrefix(path + "/") }
            for path in taken.keys { known[path] = nil }
            return taken
        }
        func moveKnown(from old: String, to new: String) {
            // A share operation still to apply beneath a renamed folder goes with it (the commit carries it).
            for path in deferredPaths where DeferredOperations.isWithin(path, old) {
                deferredPaths.insert(new + path.dropFirst(old.count))
                aboveLeftAlone = nil
            }
            for (path, record) in takeKnown(old) {
                let target = new + path.dropFirst(old.count)
                known[target] = record
                noteAncestors(of: target)
                // A record that vanished from the old folder is looked for, by its inode, where it moved,
                // unless an item is there now: that item takes the record, as at any path still here.
                if missingByInode[record.inode] == path {
                    missingByInode[record.inode] = isLocal(target) || leftAlone(target) ? nil : target
                }
            }
        }

        var chunkLayouts: [String: [ChunkRef]] = [:]
        // An item of another kind or inode than its path's record (a file where a folder was, a folder
        // moved onto a name another one left), and all beneath it, is looked at after every other item:
        // by then the old item has moved away (a rename, found by its inode) if it is still here, or, if
        // of another kind, it is deleted just before. So a commit frees a name before it puts anything
        // there, and another server applies it in that order. (A file put before the deletes of the items
        // of the folder it replaced found that folder still there: a conflict.) A file saved by a rename
        // over itself (a new inode) waits too, and is then the same file's new content.
        var later: [LocalItem] = []
        var laterFolders: Set<String> = []
        var position = 0
        while position < walked.items.count + later.count {
            defer { position += 1 }
            let isLater = position >= walked.items.count
            var item = isLater ? later[position - walked.items.count] : walked.items[position]
            guard !leftAlone(item.path) else { continue }
            let kind: NamespaceEntry.Kind = item.isDirectory ? .directory : .file
            var known0 = known[item.path]
            if !isLater, known0.map({ Self.isAnother(item, than: $0) }) ?? false || laterFolders.containsAncestor(of: item.path) {
                later.append(item)
                if item.isDirectory { laterFolders.insert(item.path) }
                continue
            }
            if isLater, let old = known0, old.kind != kind {
                guard !holdsLeftAlone(item.path) else {
                    // The new item waits; the pending one, once here, moves it aside as a conflict.
                    errors.append((item.path, "waits: an item beneath what it replaced is not known to be gone (a share operation on it is still to apply, or it cannot be read)", "upload"))
                    continue
                }
                let taken = takeKnown(item.path)
                operations.append(.delete(item.path))
                updates.append(.removeSubtree(item.path))
                for (path, record) in taken where missingByInode[record.inode] == path { missingByInode[record.inode] = nil }
                report.deleted += 1
                known0 = nil
            }
            // The item here takes its path's record: no item looked at after it is that record's rename.
            if isLater, let old = known0, missingByInode[old.inode] == item.path { missingByInode[old.inode] = nil }
            // A path new to the database whose inode belongs to a vanished entry is a rename.
            if known0 == nil, let old = missingByInode[item.inode], let previous = known[old], previous.kind == kind,
               item.isDirectory || (previous.size == item.size && previous.mtime == item.mtime) {
                operations.append(.rename(from: old, to: item.path))
                updates.append(.move(from: old, to: item.path))
                moveKnown(from: old, to: item.path)
                missingByInode[item.inode] = nil
                known0 = known[item.path]
                report.renamed += 1
            }
            if item.isDirectory {
                if let existing = known0, existing.kind == .directory, existing.mode == item.mode, existing.mtime == item.mtime,
                   existing.uid == item.uid, existing.gid == item.gid {
                    if existing.ctime == item.ctime { continue }
                    // Only the ctime moved (ACLs set, or attributes reapplied): committed when the ACLs differ.
                    if EntryRecord.aclDigest(LocalFiles.acl(rootFD: rootFD, path: item.path)) == existing.aclDigest {
                        var refreshed = existing
                        refreshed.updateStat(item)
                        statOnly.append((item.path, refreshed))
                        continue
                    }
                }
                let entry = NamespaceEntry(kind: .directory, fileID: known0?.fileID ?? NamespaceEntry.newFileID(), size: 0, mode: item.mode,
                                           mtime: item.mtime, uid: item.uid, gid: item.gid, acl: LocalFiles.acl(rootFD: rootFD, path: item.path))
                operations.append(.upsert(item.path, entry))
                updates.append(.set(item.path, record(entry, item, fingerprint: Fingerprint128(high: 0, low: 0), version: 0), contentChanged: true))
                cleared.append(item.path)
                continue
            }
            if var existing = known0, existing.kind == .file, existing.residency != .full {
                // A stub's content is never read by a scan (that would recall it, or read holes). Unchanged
                // stat (ctime included, which any xattr change moves): still the recorded stub.
                if existing.matches(item) { continue }
                if LocalFiles.stubMarker(rootFD: rootFD, path: item.path) != nil {
                    if existing.size == item.size && existing.mtime == item.mtime {
                        // Only the ctime moved: a new mode, owner or ACL (a recall's writes put the mtime back).
                        let acl = LocalFiles.acl(rootFD: rootFD, path: item.path)
                        let newAttributes = existing.mode != item.mode || existing.uid != item.uid || existing.gid != item.gid
                            || EntryRecord.aclDigest(acl) != existing.aclDigest
                        existing.updateStat(item)
                        guard newAttributes else {
                            statOnly.append((item.path, existing))
                            continue
                        }
                        // A new mode, owner or ACL of a stub is committed with the chunks the stub stands for
                        // (nothing is recalled), so it converges like a full file's. The stub keeps its
                        // version: its markers name the commit that holds its content.
                        guard let layout = try? recaller.layout(fileID: existing.fileID) else {
                            errors.append((item.path, "its new mode, owner or ACL cannot be committed: the stub's chunk list is not recorded", "upload"))
                            continue
                        }
                        let entry = NamespaceEntry(kind: .file, fileID: existing.fileID, size: existing.size, mode: item.mode, mtime: item.mtime,
                                                   uid: item.uid, gid: item.gid, chunks: layout, fingerprint: existing.fingerprint.description,
                                                   acl: acl)
                        existing.aclDigest = EntryRecord.aclDigest(entry.acl)
                        operations.append(.upsert(item.path, entry))
                        updates.append(.set(item.path, existing, contentChanged: false))
                        cleared.append(item.path)
                        continue
                    }
                    // Changed: a write into the stub, or a fill a crash interrupted before it put the mtime
                    // back. Recall the rest first, so the file holds real bytes only; its content decides.
                    let layout = try? recaller.layout(fileID: existing.fileID)
                    do {
                        try await recaller.recall(item.path)
                    } catch {
                        errors.append((item.path, "a changed stub could not be recalled; it is left alone and retried: \(error)", "upload"))
                        continue
                    }
                    guard let recalled = LocalFiles.item(rootFD: rootFD, path: item.path), !recalled.isDirectory,
                          let after = try state.entry(endpoint.id, item.path), after.residency == .full,
                          let fingerprint = try? LocalFiles.fingerprint(rootFD: rootFD, path: item.path) else {
                        errors.append((item.path, "changed while it was recalled; retried at the next pass", "upload"))
                        continue
                    }
                    if fingerprint == after.fingerprint, recalled.mode == after.mode, recalled.uid == after.uid, recalled.gid == after.gid {
                        // Only recall writes: the recorded version, complete again.
                        var clean = after
                        clean.updateStat(recalled)
                        statOnly.append((item.path, clean))
                        continue
                    }
                    // The recorded content under a new mode or owner: committed as a full file's (its chunks
                    // dedup), with its mtime. Otherwise an application's write. Under a running recall (this
                    // daemon's fanotify marks or mount, active since before the write) every byte it wrote over
                    // was recalled first: the file is an edit, committed under its own name. Otherwise the
                    // unrecalled bytes of the pages around the write read as zeros to it and cannot be told
                    // from its own: the file is kept as a conflict copy and the path becomes a stub of the
                    // share's version again.
                    if fingerprint == after.fingerprint || recallActiveSince.map({ item.ctime >= $0 }) == true {
                        known0 = after
                        item = recalled
                    } else {
                        do {
                            let (copy, stub) = try setAsideForStub(item.path, after)
                            var restored = stub
                            restored.fingerprint = after.fingerprint
                            statOnly.append((item.path, restored))
                            if let layout { chunkLayouts[existing.fileID] = layout }
                            report.conflicts += 1
                            errors.append((item.path, "written while tiered and no daemon was recalling; the write is kept in '\(copy)'", "conflict"))
                        } catch {
                            errors.append((item.path, "a stub was written to without recall and could not be set aside: \(error)", "upload"))
                        }
                        continue
                    }
                }
                known0?.residency = .full
            }
            if let existing = known0, existing.kind == .file {
                // Unchanged stat (size, mtime, ctime, inode): unchanged content, nothing read. Any write,
                // and any change of attributes or markers, moves the ctime.
                if existing.residency == .full && existing.matches(item) { continue }
                // Stat changed: hash before uploading, so a file whose content and attributes are unchanged
                // (only its inode or ctime moved) costs no commit. A new mode, owner or mtime is committed
                // (its chunks dedup) so it converges on every server like content does.
                // A change of ACLs alone moves the ctime too: new ACLs are committed with the content.
                if existing.size == item.size, existing.mode == item.mode, existing.mtime == item.mtime,
                   existing.uid == item.uid, existing.gid == item.gid,
                   EntryRecord.aclDigest(LocalFiles.acl(rootFD: rootFD, path: item.path)) == existing.aclDigest,
                   let fingerprint = try? LocalFiles.fingerprint(rootFD: rootFD, path: item.path), fingerprint == existing.fingerprint {
                    var refreshed = existing
                    refreshed.updateStat(item)
                    statOnly.append((item.path, refreshed))
                    continue
                }
            }
            do {
                let content: StoredContent
                do {
                    content = try await FileReader.store(rootFD: rootFD, item: item, chunker: chunker, uploader: uploader)
                } catch is FileReader.UnrecordedStub {
                    // A stub under a name the database does not have (renamed or linked before a scan saw
                    // it): its markers name its chunk list, so it is recalled whole and read as what it is.
                    do {
                        try await recaller.recall(item.path)
                    } catch {
                        errors.append((item.path, "a stub the database does not know under this name could not be recalled; it is left alone and retried: \(error)", "upload"))
                        continue
                    }
                    guard let recalled = LocalFiles.item(rootFD: rootFD, path: item.path), !recalled.isDirectory else { continue }
                    item = recalled
                    content = try await FileReader.store(rootFD: rootFD, item: item, chunker: chunker, uploader: uploader)
                }
                let entry = NamespaceEntry(kind: .file, fileID: known0?.kind == .file ? known0!.fileID : NamespaceEntry.newFileID(),
                                           size: content.size, mode: content.item.mode, mtime: content.item.mtime,
                                           uid: content.item.uid, gid: content.item.gid, chunks: content.chunks,
                                           fingerprint: content.fingerprint.description, acl: content.acl)
                operations.append(.upsert(item.path, entry))
                updates.append(.set(item.path, record(entry, content.item, fingerprint: content.fingerprint, version: 0), contentChanged: true))
                cleared.append(item.path)
                uploadedBytes += content.size
            } catch let error as PosixError {
                errors.append((item.path, error.description, "upload"))
            } catch let error as FileReader.ChangedWhileReading {
                errors.append((item.path, error.description, "upload"))
            } catch let error as FileReader.UnrecordedStub {
                errors.append((item.path, error.description, "upload"))
            }
            lookedAt += 1
            if let progress, Date().timeIntervalSince(lastProgress) > 0.5 {
                lastProgress = Date()
                progress(JobProgress(phase: "looking at local items (\(report.uploaded + operations.count) to commit)", items: lookedAt, totalItems: walked.items.count,
                                     bytes: uploadedBytes, elapsed: lastProgress.timeIntervalSince(started), unit: "items"))
            }
            // A large upload is committed in bounded records, so other servers see it arrive and no
            // record grows without limit; what is committed is in the database before the pass goes on.
            batchChunks += operations.last?.entry?.chunks.count ?? 0
            if operations.count >= commitLimit.operations || batchChunks >= commitLimit.chunks {
                guard let sequence = try await commit(operations, updates, after: cursor, uploader: uploader, report: &report) else {
                    try recordErrors(errors, cleared: [])
                    return false
                }
                cursor = sequence
                operations = []
                updates = []
                batchChunks = 0
                uploader = share.makeUploader()
            }
        }

        // Deletes: entries whose item vanished (only the topmost of a vanished subtree). An item the
        // walk could not read, or with a share operation still pending, is not known to be gone.
        // (A rename needs a record the walk did not meet, so with every record met, `known` is as loaded.)
        var vanished = everyRecordMet ? [] : Set(known.keys.filter { !isLocal($0) && !leftAlone($0) && SkipRules.reason(forPath: $0) == nil })
        if let extra = try state.value([String].self, endpoint.id, "authoritativeDeletes") {
            vanished.formUnion(extra.filter { !isLocal($0) && !leftAlone($0) && SkipRules.reason(forPath: $0) == nil })
        }
        vanished = vanished.filter { !holdsLeftAlone($0) }
        if !renamedWhileDeletedHere.isEmpty {
            let renamed = vanished.filter { DeferredOperations.covers(renamedWhileDeletedHere, $0) }
            if !renamed.isEmpty, try await fetchAgain(renamed, known: known, report: &report) { vanished.subtract(renamed) }
        }
        for path in vanished.sorted() where !vanished.containsAncestor(of: path) {
            operations.append(.delete(path))
            updates.append(.removeSubtree(path))
            report.deleted += 1
        }

        // Skip-list items are reported; those no longer present stop being reported.
        let skippedNow = Set(walked.skipped.map(\.path))
        cleared += previous.filter { $0.kind == "skipped" && !skippedNow.contains($0.path) && examined($0.path) }.map(\.path)
        let failedNow = Set(errors.map(\.path))
        // An upload error this pass looked at again and did not meet is over.
        cleared += previous.filter { $0.kind == "upload" && !failedNow.contains($0.path) && examined($0.path) }.map(\.path)

        if operations.isEmpty {
            var batch = state.batch(endpoint.id)
            for (path, record) in statOnly { batch.setEntry(path, record) }
            for (fileID, chunks) in chunkLayouts { batch.setLayout(fileID, chunks) }
            for path in pendingMarks { batch.clearPending(path) }
            if !batch.isEmpty { try state.commit(batch, sync: true) }
            try recordErrors(errors, cleared: cleared)
            return true
        }

        let committed = try await commit(operations, updates, after: cursor, uploader: uploader, report: &report) { batch in
            for (path, record) in statOnly { batch.setEntry(path, record) }
            for (fileID, chunks) in chunkLayouts { batch.setLayout(fileID, chunks) }
            for path in pendingMarks { batch.clearPending(path) }
        }
        guard committed != nil else {
            try recordErrors(errors, cleared: [])
            return false
        }
        if try state.value([String].self, endpoint.id, "authoritativeDeletes") != nil {
            try state.setValue([String](), endpoint.id, "authoritativeDeletes", sync: true)
        }
        try recordErrors(errors, cleared: cleared)
        report.uploadedBytes += uploadedBytes
        return true
    }

    /// Whether `item` is another item than the one `record` describes at its path: of another kind, or
    /// another inode (a record without one says nothing of it).
    static func isAnother(_ item: LocalItem, than record: EntryRecord) -> Bool {
        (record.kind == .directory) != item.isDirectory || (record.inode != item.inode && record.inode != 0)
    }

    /// Appends `operations` as the commit after `cursor` (packs durable first), then records `updates`,
    /// what `more` adds and the new cursor in the database in one batch. Returns the commit's sequence,
    /// or nil when another server took it first.
    func commit(_ operations: [NamespaceOperation], _ updates: [Update], after cursor: UInt64, uploader: PackUploader,
                report: inout SyncReport, more: (inout StateBatch) -> Void = { _ in }) async throws -> UInt64? {
        let sequence = cursor + 1
        let log = share.log
        // Packs durable first; the append only after checking no chunk is in a pack being collected.
        let appended = try await share.appendCommit(author: author, authorName: serverName, operations: operations, uploader: uploader) { commit in
            try await log.tryAppend(commit, at: sequence) ? commit.id : nil
        }
        guard let appended else { return nil }
        var overlay = EntryOverlay(state: state, endpoint: endpoint.id)
        // A rename here carries the share operations still to apply beneath it (read only when one is made).
        var deferred = updates.contains { if case .move = $0 { true } else { false } }
            ? try state.value(DeferredOperations.self, endpoint.id, DeferredOperations.stateKey) ?? DeferredOperations() : DeferredOperations()
        let carriesDeferred = !deferred.isEmpty
        for update in updates {
            switch update {
            case .set(let path, var record, let contentChanged):
                if contentChanged { record.version = sequence }
                overlay.set(path, record)
            case .move(let from, let to):
                try overlay.move(from: from, to: to)
                if carriesDeferred { deferred.supersede(by: .rename(from: from, to: to)) }
            case .removeSubtree(let path):
                try overlay.removeSubtree(path)
            }
        }
        var batch = state.batch(endpoint.id)
        overlay.flush(into: &batch)
        if carriesDeferred { batch.setValue(deferred, DeferredOperations.stateKey) }
        more(&batch)
        batch.setCursor(sequence, record: appended)
        try state.commit(batch, sync: true)
        report.commits += 1
        report.uploaded += operations.count { $0.op == .upsert }
        return sequence
    }

    /// What an upload looks at: the local items within `scope` and what the scan skipped, the database's
    /// entries for the same paths, and, for a pass over changes, every path it looked at (nil: all);
    /// `count` is how many items the pass examined, `wholeTree` whether it walked the whole tree.
    typealias Looked = (walked: (items: [LocalItem], skipped: [SkippedItem]), known: [String: EntryRecord], examined: Set<String>?,
                        count: Int, wholeTree: Bool)

    /// What an upload looks at within `scope`. A whole walk first holds only what differs from the
    /// database (``differences(limit:)``) and then looks at that as at the change journal's paths; when
    /// too much differs, it holds every item and every entry.
    func lookAt(_ scope: ChangeScope, pending: [String], errors: [ItemError]) async throws -> Looked {
        if case .changes(let changes) = scope, appliedPaths != nil {
            return try lookAt(changes, pending: pending, errors: errors, wholeTree: nil)
        }
        if let differences = try await differences(limit: Self.wholeWalkLimit) {
            // Every item with an error is looked at again, so what is over is cleared as by any whole walk.
            var changes = differences.changes
            for error in errors { changes.changed(error.path) }
            return try lookAt(changes, pending: pending, errors: errors, wholeTree: differences.walked + differences.skipped.count)
        }
        // The database has about as many entries as the tree has items: its dictionary is made that
        // size at once, not doubled and rehashed on the way (at a million entries the growth held
        // both tables: 116 MiB more at the peak). When the count is known (the last whole walk's, or
        // the namespace's this pass took whole), the walk, which waits on the file system, and the
        // database's scan run on two threads side by side; otherwise (a daemon's first scan) the walk
        // gives it first.
        let (state, id, walker) = (state, endpoint.id, TreeWalker(root: root))
        guard let count = try lastWholeWalkCount() ?? namespaceTaken else {
            let walked = try await OwnThread.run { try walker.walk() }
            return (walked, try state.entries(id, expecting: walked.items.count), nil, walked.items.count + walked.skipped.count, true)
        }
        async let known = OwnThread.run { try state.entries(id, expecting: count) }
        let walked = try await OwnThread.run { try walker.walk() }
        return (walked, try await known, nil, walked.items.count + walked.skipped.count, true)
    }

    /// How many items the last whole walk examined, nil when the last pass was not one.
    func lastWholeWalkCount() throws -> Int? {
        try state.value(SyncReport.self, endpoint.id, SyncReport.stateKey).flatMap { $0.wholeTree && $0.examined > 0 ? $0.examined : nil }
    }

    /// The items at `changes`' paths, with paths the download of this pass applied, paths the mount
    /// marked and items that did not upload; `wholeTree` is the count of a whole walk these changes
    /// come from (nil: the change journal's).
    private func lookAt(_ changes: ChangeSet, pending: [String], errors: [ItemError], wholeTree: Int?) throws -> Looked {
        var changes = changes
        if let appliedPaths { changes.formUnion(appliedPaths) }
        for path in pending { changes.changed(path) }
        for error in errors where error.kind == "upload" { changes.changed(error.path) }
        let walked = try TreeWalker(root: root).walk(changes)
        let folders = Set(walked.items.lazy.filter(\.isDirectory).map(\.path))
        var known: [String: EntryRecord] = [:]
        for path in changes.roots {
            let record = try state.entry(endpoint.id, path)
            known[path] = record
            // Beneath a folder walked whole, gone, or no longer a folder: every entry the database has.
            if changes.subtrees.contains(path) || (record?.kind == .directory && !folders.contains(path)) {
                known.merge(try state.entries(endpoint.id, under: path)) { recorded, _ in recorded }
            }
        }
        // An item met for a path it is canonically equal to (its normalization twin was named) is compared
        // with its own record, found by its own bytes.
        for item in walked.items where known[item.path] == nil {
            if let record = try state.entry(endpoint.id, item.path) { known[item.path] = record }
        }
        let examined = Set(known.keys).union(changes.roots).union(walked.items.map(\.path)).union(walked.skipped.map(\.path))
        return (walked, known, examined, wholeTree ?? walked.items.count + walked.skipped.count, wholeTree != nil)
    }
}
