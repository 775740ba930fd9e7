import Backends
import CloudShare
import Foundation
import Glibc
import Synchronization

/// Turns clean, synced files into stubs: same inode and size, content punched out, `user.tiergate.*`
/// markers set, chunk list kept locally for recall.
///
/// Order matters for crash safety: the chunk list and markers are written before the punch, so a file
/// is at every moment either its full content or a stub whose markers recall exactly the tiered bytes.
/// The whole sequence runs under a write lease, so no other process opens the file meanwhile.
public final class Tierer: Sendable {
    let connection: ShareConnection
    let state: LocalState
    let endpoint: EndpointConfig
    /// Decoded commits, by sequence, so tiering many files of one large commit decodes it once.
    private let commits = Mutex<[UInt64: [String: [ChunkRef]]]>([:])

    /// A tierer for `endpoint`.
    public convenience init(share: CloudShare, state: LocalState, endpoint: EndpointConfig) {
        self.init(connection: ShareConnection(share, name: share.name), state: state, endpoint: endpoint)
    }

    /// A tierer for `endpoint` that checks the share through `connection` (tiering fails while it is empty).
    public init(connection: ShareConnection, state: LocalState, endpoint: EndpointConfig) {
        self.connection = connection
        self.state = state
        self.endpoint = endpoint
    }

    /// Why a file cannot be tiered (it stays a full file).
    public struct Refusal: Error, CustomStringConvertible {
        /// The file.
        public var path: String
        /// The reason.
        public var reason: String
        public var description: String { "cannot tier '\(path)': \(reason)" }
    }

    /// The chunk list the share recorded for `fileID` at `version`.
    func chunks(fileID: String, version: UInt64) async throws -> [ChunkRef]? {
        if let cached = commits.withLock({ $0[version] }) { return cached[fileID] }
        let share = try connection.share()
        let commit: Commit
        do {
            commit = try await share.log.read(version)
        } catch let error as StoreError where error.code == .notFound {
            // Log compaction deleted the record: the share keeps the version in its history's first snapshot.
            return try await share.committedEntry(fileID: fileID, version: version)?.chunks
        }
        try await share.ensureIndexed(packs: commit.packs)
        var byID: [String: [ChunkRef]] = [:]
        for operation in commit.operations where operation.op == .upsert {
            if let entry = operation.entry, entry.kind == .file { byID[entry.fileID] = entry.chunks }
        }
        commits.withLock {
            if $0.count > 16 { $0.removeAll() }
            $0[version] = byID
        }
        return byID[fileID]
    }

    /// Tiers the file at `path` (relative to the endpoint); returns the bytes freed. A partial stub has
    /// its recalled ranges punched out again. `beforePunch` and `afterPunch` get the open descriptor and
    /// full path while the lease holds, just before and just after the content is punched out.
    @discardableResult
    public func tier(_ path: String, beforePunch: ((Int32, String) throws -> Void)? = nil,
                     afterPunch: ((Int32, String) throws -> Void)? = nil) async throws -> Int64 {
        guard let record = try state.entry(endpoint.id, path), record.kind == .file else {
            throw Refusal(path: path, reason: "it is not a synced file")
        }
        if record.residency == .partial {
            return try punchAgain(path, record, beforePunch: beforePunch, afterPunch: afterPunch)
        }
        guard record.residency == .full else { throw Refusal(path: path, reason: "it is already a stub") }
        guard let item = LocalFiles.item(root: endpoint.path, path: path), !item.isDirectory else {
            throw Refusal(path: path, reason: "it no longer exists")
        }
        // Only clean files: the local content must be the committed version.
        guard record.matches(item) else { throw Refusal(path: path, reason: "it has changes not synced yet") }
        guard let layout = try await chunks(fileID: record.fileID, version: record.version) else {
            throw Refusal(path: path, reason: "its version \(record.version) is not in the share's log")
        }
        guard layout.reduce(Int64(0), { $0 + Int64($1.length) }) == record.size else {
            throw Refusal(path: path, reason: "the share's chunk list does not match its size")
        }
        let share = try connection.share()
        for chunk in layout {
            if try await share.location(of: chunk.id) == nil { throw Refusal(path: path, reason: "chunk \(chunk.id.hex) is missing from the share") }
        }

        return try withLease(path) { stub in
            guard record.matches(LocalItem(path: path, try stub.status())) else { throw Refusal(path: path, reason: "it changed while being tiered") }

            // Intent first: a crash from here on is finished (or undone) by `recoverInterrupted`.
            var batch = state.batch(endpoint.id)
            batch.batch.put(LocalState.key(endpoint.id, record.fileID), RecallEngine.encodeLayout(layout), in: state.family(.chunks))
            var intent = record
            intent.residency = .tiering
            batch.setEntry(path, intent)
            try state.commit(batch, sync: true)
            try stub.setMarkers(StubFile.Origin(shareID: endpoint.shareID ?? "", share: endpoint.shareURL, fileID: record.fileID, version: record.version))
            try stub.sync()
            try punch(stub, path: path, record: record, beforePunch: beforePunch, afterPunch: afterPunch)
            return record.size
        }
    }

    /// Opens `path` (relative) and runs `body` while holding a write lease on it: granted only while no
    /// other process has the file open, and broken (the opener waits) when one tries to.
    func withLease<T>(_ path: String, _ body: (StubFile) throws -> T) throws -> T {
        let full = endpoint.path + "/" + path
        let fd = try LocalFiles.open(root: endpoint.path, path: path, flags: O_RDWR)
        defer { close(fd) }
        let stub = StubFile(descriptor: fd, path: full)
        do {
            try stub.takeWriteLease()
        } catch {
            throw Refusal(path: path, reason: "it is open by another process")
        }
        defer { try? stub.releaseLease() }
        return try body(stub)
    }

    /// Punches out `stub` (its markers written, its lease held) and records it as tiered. The daemon
    /// lifts the file's mark just before (a punch of a marked file is a pre-content access, whose event
    /// opens the file and breaks the lease) and puts it back right after, failure or not, while the
    /// lease still holds every other open back: each later open sees the mark.
    func punch(_ stub: StubFile, path: String, record: EntryRecord, beforePunch: ((Int32, String) throws -> Void)?,
               afterPunch: ((Int32, String) throws -> Void)?) throws {
        try beforePunch?(stub.descriptor, stub.path)
        do {
            try stub.punchOut()
            try stub.sync()
        } catch {
            try? afterPunch?(stub.descriptor, stub.path)    // markers stand: what the punch left must recall on access
            throw error
        }
        try afterPunch?(stub.descriptor, stub.path)
        var updated = record
        updated.updateStat(LocalItem(path: path, try stub.status()))
        updated.residency = .tiered
        var batch = state.batch(endpoint.id)
        batch.setEntry(path, updated)
        try state.commit(batch, sync: true)
    }

    /// Punches out the recalled ranges of a partial stub (its markers and chunk list stand), under a
    /// write lease, if it is still the recorded stub: same size and mtime (a write would have moved it).
    func punchAgain(_ path: String, _ record: EntryRecord, beforePunch: ((Int32, String) throws -> Void)?,
                    afterPunch: ((Int32, String) throws -> Void)?) throws -> Int64 {
        try withLease(path) { stub in
            guard try stub.state() == .partial else { throw Refusal(path: path, reason: "it is not a partial stub") }
            let info = try stub.status()
            let mtime = Int64(info.st_mtim.tv_sec) * 1_000_000_000 + Int64(info.st_mtim.tv_nsec)
            guard Int64(info.st_size) == record.size, mtime == record.mtime else {
                throw Refusal(path: path, reason: "it changed since it was recalled")
            }
            let allocated = Int64(info.st_blocks) * 512
            try stub.setState(.tiered)      // whole again once punched (either value means a stub meanwhile)
            try punch(stub, path: path, record: record, beforePunch: beforePunch, afterPunch: afterPunch)
            return allocated
        }
    }

    /// Finishes what a crash interrupted, from the intent recorded in the database: a tiering whose
    /// markers were written is completed (punch again, put back the mtime), one that had not reached
    /// the markers is undone; a whole-file recall is completed (it only ever fills holes).
    public func recoverInterrupted(_ path: String, _ record: EntryRecord, recaller: RecallEngine) async throws {
        let full = endpoint.path + "/" + path
        let marked = (try? LocalFiles.open(root: endpoint.path, path: path, flags: O_RDONLY | O_NONBLOCK)).map { fd in
            defer { close(fd) }
            return LocalFiles.stubMarker(fd: fd) != nil
        } ?? false
        var updated = record
        switch record.residency {
        case .tiering where marked:
            let fd = try LocalFiles.open(root: endpoint.path, path: path, flags: O_RDWR)
            defer { close(fd) }
            let stub = StubFile(descriptor: fd, path: full)
            try stub.punchOut()
            let mtime = Posix.timespec(nanoseconds: record.mtime)
            var times = [mtime, mtime]
            try Posix.call("futimens", path: full) { futimens(fd, &times) }
            try stub.sync()
            updated.updateStat(LocalItem(path: path, try stub.status()))
            updated.residency = .tiered
        case .recalling where marked:
            updated.residency = .tiered
            var batch = state.batch(endpoint.id)
            batch.setEntry(path, updated)
            try state.commit(batch, sync: true)
            try await recaller.recall(path)
            return
        case .tiering, .recalling:
            updated.residency = .full
        default:
            return
        }
        var batch = state.batch(endpoint.id)
        batch.setEntry(path, updated)
        try state.commit(batch, sync: true)
    }
}
