import Backends
import Chunking
import CloudShare
import Foundation
import Glibc
import Hashing

/// Syncs one server endpoint with its cloud share: applies the share's commit log to the local tree
/// (download), then commits the local changes (upload), resolving conflicts the way Azure File Sync
/// does. One engine belongs to one task at a time; the daemon runs one per endpoint.
public final class SyncEngine {
    /// The endpoint.
    public let endpoint: EndpointConfig
    /// The cloud share.
    public let share: CloudShare
    let state: LocalState
    let serverID: String
    let serverName: String
    let root: String
    let rootFD: Int32
    /// The staging folder, held open for the engine's life.
    let stagingFD: Int32
    let chunker: FastCDC
    var progress: ProgressHandler?
    /// Recalls stubs (a user wrote into one without recall; background content download).
    lazy var recaller = RecallEngine(share: share, state: state, endpoint: endpoint)
    /// Called with the full path of every stub the download creates (the daemon marks it for recall).
    public var onStubCreated: (@Sendable (String) -> Void)?
    /// Since when (ns since the epoch, before any stub was marked) this process recalls stubs on access
    /// (fanotify marks or the mount); nil when nothing does. A stub changed since then was written under
    /// recall, so its bytes are the application's, not holes read as zeros.
    public var recallActiveSince: Int64?

    /// Commits name their author as server id + endpoint id, so an endpoint recognizes its own records.
    var author: String { "\(serverID)/\(endpoint.id)" }

    /// Most operations and chunk references in one commit record (a chunk reference is about 100 bytes
    /// of the record): a larger upload is committed in several.
    var commitLimit = (operations: 50_000, chunks: 500_000)

    /// Most operations a new endpoint applies at once when it takes the namespace at the head: its first
    /// files and stubs appear within a batch's time, not after the whole share is planned. (The first
    /// batches are smaller still: see ``download(_:)``.)
    var namespaceBatch = 20_000

    /// Paths named by the commits the current pass applied (its upload looks at them too); nil when
    /// there were too many to keep (the upload then looks at everything).
    var appliedPaths: ChangeSet? = ChangeSet()

    /// New names of items the share renamed while this endpoint had deleted them (not yet committed),
    /// as the current pass's download applied them: the upload fetches what it finds nowhere again
    /// rather than delete it there (see ``fetchAgain(_:known:report:)``).
    var renamedWhileDeletedHere: Set<String> = []

    /// The number of items in the share's namespace when this pass took it whole (a new endpoint): about
    /// what the database holds afterwards, so the scan that follows can size its table of entries by it.
    var namespaceTaken: Int?

    /// Whether this engine checked that its share's log holds the record the cursor was set at.
    var logChecked = false

    /// The cursor at which this engine last looked for the newest snapshot.
    var snapshotChecked: UInt64 = 0

    /// The folder inside the endpoint where downloads are staged (same filesystem, so renames are atomic).
    static let stagingFolder = SkipRules.stateFolder + "/staging"
    /// Whether owners can be given away (set on files and folders as the share has them).
    static let runsAsRoot = geteuid() == 0

    init(endpoint: EndpointConfig, share: CloudShare, state: LocalState, serverID: String, serverName: String) throws {
        if let expected = endpoint.shareID, expected != share.manifest.shareID {
            throw GatewayError("endpoint \(endpoint.id) at '\(endpoint.path)' syncs with share \(expected), but \(share.name) holds share \(share.manifest.shareID); nothing was synced. If the share was moved, point the endpoint at the store that holds it; to sync this folder with the other share, remove the endpoint and add it again")
        }
        self.endpoint = endpoint
        self.share = share
        self.state = state
        self.serverID = serverID
        self.serverName = serverName
        root = endpoint.path
        rootFD = try Posix.open(endpoint.path, O_RDONLY | O_DIRECTORY)
        chunker = FastCDC(share.manifest.chunking)
        do {
            stagingFD = try Self.openStaging(rootFD: rootFD, root: endpoint.path)
        } catch {
            close(rootFD)
            throw error
        }
    }

    deinit {
        close(stagingFD)
        close(rootFD)
    }

    /// Opens Tiergate's own folders inside the endpoint (`.tiergate`, then `staging`), making them when
    /// missing, without following links, and checks each is a directory owned by this process's user
    /// with no access for others: a symlink or a folder planted by another user is refused, never used.
    /// Staging files left by an interrupted pass (never renamed into place) are removed.
    static func openStaging(rootFD: Int32, root: String) throws -> Int32 {
        var fd = try Posix.call("dup", path: root) { dup(rootFD) }
        var relative = ""
        for name in [SkipRules.stateFolder, "staging"] {
            relative += (relative.isEmpty ? "" : "/") + name
            if mkdirat(fd, name, 0o700) != 0 && errno != EEXIST {
                let error = PosixError("mkdir", path: root + "/" + relative, errno: errno)
                close(fd)
                throw error
            }
            let next = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            let failure = errno
            close(fd)
            guard next >= 0 else {
                let reason = failure == ELOOP || failure == ENOTDIR ? "it is not a directory (a symlink or a file is in its place); remove it" : String(cString: strerror(failure))
                throw GatewayError("Tiergate's folder '\(root)/\(relative)' cannot be used: \(reason)")
            }
            fd = next
            var info = stat()
            guard fstat(fd, &info) == 0, info.st_uid == geteuid(), info.st_mode & 0o077 == 0 else {
                close(fd)
                throw GatewayError("Tiergate's folder '\(root)/\(relative)' must be a directory owned by uid \(geteuid()) with mode 0700; it is not, so it is not used (remove it, or fix its owner and mode)")
            }
        }
        if let dir = fdopendir(try Posix.call("dup", path: root) { dup(fd) }) {
            defer { closedir(dir) }
            var names: [String] = []
            while let entry = readdir(dir) {
                let name = String(decoding: Posix.entryName(entry), as: UTF8.self)
                if name != "." && name != ".." && entry.pointee.d_type != UInt8(DT_DIR) { names.append(name) }
            }
            for name in names { unlinkat(fd, name, 0) }
        }
        return fd
    }

    /// One pass: download, then upload the local changes within `scope`; repeats when another endpoint
    /// committed first.
    public func syncOnce(progress: ProgressHandler? = nil, scope: ChangeScope = .everything) async throws -> SyncReport {
        self.progress = progress
        var report = SyncReport()
        let started = Date()
        do {
            try await share.checkIdentity()
            if let marker = try await ServerRegistration.forgotten(serverID: serverID, endpoint: endpoint.id, in: share.store) {
                let when = marker.forgottenAt > 0 ? " on " + ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: marker.forgottenAt)) : ""
                throw GatewayError("endpoint \(endpoint.id) of this server was released from the share with `tiergate share forget-server`\(when): its stubs may name data the share no longer keeps for it, so it does not sync; remove the endpoint (`tiergate endpoint remove`) and add it again")
            }
            appliedPaths = ChangeSet()
            renamedWhileDeletedHere = []
            if !logChecked {
                try await checkLog()
                // Registered before this process first reads the log: a garbage collector that did not see
                // the registration marked a log head no newer than what this endpoint reads (docs/gc.md).
                try await registerServer(cursor: try state.cursor(endpoint.id))
                logChecked = true
            }
            try await prepareFirstSync()
            // Deletes decided by an authoritative first pass are found by looking at everything.
            let scope = try state.value([String].self, endpoint.id, "authoritativeDeletes")?.isEmpty == false ? .everything : scope
            for attempt in 0..<20 {
                try await download(&report)
                if try await upload(&report, scope: scope) { break }
                // Another server took the sequence number first: download its commit and append again.
                report.commitRetries = attempt + 1
            }
            report.cursor = try state.cursor(endpoint.id)
        } catch {
            Self.recordFailedPass(error, endpoint: endpoint, state: state, report: report)
            throw error
        }
        report.itemErrors = try state.errors(endpoint.id).count
        report.seconds = Date().timeIntervalSince(started)
        try state.setValue(report, endpoint.id, SyncReport.stateKey, sync: true)
        try await registerServer(cursor: report.cursor)
        // Log compaction: the server that first passes the next multiple of the interval writes the
        // snapshot; the others find it (a listing once per interval of commits, not per pass).
        let interval = share.manifest.snapshotInterval ?? ShareManifest.defaultSnapshotInterval
        if report.cursor >= snapshotChecked + interval {
            snapshotChecked = report.cursor
            do {
                try await share.compactLog(through: report.cursor, interval: interval)
            } catch {
                // A snapshot is an optimization: the pass has done its work; the next interval tries again.
            }
        }
        return report
    }

    /// Checks that the share's log holds, at this endpoint's cursor, the record the endpoint applied there.
    /// A store holding a copy of the share that missed commits, or that others wrote other commits to (a
    /// named store pointed at a stale copy), would otherwise lose them silently: nothing is synced.
    func checkLog() async throws {
        let cursor = try state.cursor(endpoint.id)
        guard cursor > 0, let applied = try state.cursorRecord(endpoint.id), !applied.isEmpty else { return }
        let found: Commit
        do {
            found = try await share.log.read(cursor)
        } catch let error as StoreError where error.code == .notFound {
            if let first = try await share.log.first(), first > cursor {
                throw GatewayError("the share at \(share.name) no longer holds the log after sequence \(cursor), which endpoint \(endpoint.id) applied last: log compaction deleted the records before \(first) (its server registration did not hold them: see `tiergate share servers`); nothing was synced")
            }
            throw GatewayError("the share at \(share.name) ends before sequence \(cursor), which endpoint \(endpoint.id) has applied: it is not a complete copy of the share (copy it again with `tiergate share copy`); nothing was synced")
        }
        guard found.id == applied else {
            throw GatewayError("the share at \(share.name) holds another record at sequence \(cursor) than the one endpoint \(endpoint.id) applied: commits were made to two copies of the share, and syncing with this one would lose some; nothing was synced")
        }
    }

    /// Records a pass that failed as the endpoint's last sync (what `status` reports as its health).
    static func recordFailedPass(_ error: any Error, endpoint: EndpointConfig, state: LocalState, report: SyncReport = SyncReport()) {
        var report = report
        report.result = "error: \(error)"
        report.seconds = Date().timeIntervalSince1970 - report.started
        report.cursor = (try? state.cursor(endpoint.id)) ?? 0
        try? state.setValue(report, endpoint.id, SyncReport.stateKey, sync: true)
    }

    /// Writes the endpoint's ``ServerRegistration``: the server's name, last seen, last applied sequence,
    /// and the oldest sequence whose versions it may still hold: a file whose newer version is deferred
    /// (not applied yet) is still the version it was one sequence before.
    func registerServer(cursor: UInt64) async throws {
        let deferred = try state.value(DeferredOperations.self, endpoint.id, DeferredOperations.stateKey) ?? DeferredOperations()
        let holdsFrom = min(cursor, deferred.oldestSequence.map { $0 - 1 } ?? cursor)
        try await ServerRegistration(serverID: serverID, name: serverName, endpoint: endpoint.id, lastSeen: Date().timeIntervalSince1970,
                                     lastAppliedSequence: cursor, holdsFrom: holdsFrom).write(to: share.store)
    }

    /// Records per-item errors and clears the ones of items that synced.
    func recordErrors(_ errors: [(path: String, reason: String, kind: String)], cleared: [String]) throws {
        guard !errors.isEmpty || !cleared.isEmpty else { return }
        let existing = Dictionary(try state.errors(endpoint.id).map { ($0.path, $0) }, uniquingKeysWith: { a, _ in a })
        var batch = state.batch(endpoint.id)
        let now = Date().timeIntervalSince1970
        for path in cleared where existing[path] != nil { batch.clearError(path) }
        for error in errors {
            var item = existing[error.path] ?? ItemError(path: error.path, reason: error.reason, kind: error.kind, firstSeen: now, lastSeen: now, attempts: 0)
            item.reason = error.reason
            item.kind = error.kind
            item.lastSeen = now
            item.attempts += 1
            batch.setError(item)
        }
        try state.commit(batch, sync: false)
    }
}
