import Backends
import CloudShare
import Foundation
import Glibc

/// A registered server: its configuration, its local database and its server endpoints.
/// The CLI and the daemon both go through this type.
public final class Gateway {
    /// Where configuration and database live.
    public let directory: StateDirectory
    /// The configuration.
    public internal(set) var config: GatewayConfig
    /// The server's local database.
    public let state: LocalState
    /// The limit this process's transfers run under (the server's schedule, and `--bwlimit` if set).
    public let networkLimit: NetworkLimit
    private var engines: [UInt32: SyncEngine] = [:]

    /// Opens the registered server in `directory`, registering it (with `serverName`, default the host
    /// name) when it is new. `readOnly` (for status and listings) works beside a running daemon.
    public init(directory: StateDirectory = .standard, serverName: String? = nil, readOnly: Bool = false) throws {
        self.directory = directory
        networkLimit = NetworkLimit(directory: directory)
        if let existing = try directory.loadConfig() {
            config = existing
        } else {
            config = GatewayConfig(serverName: serverName ?? Self.hostName())
            try directory.saveConfig(config)
        }
        do {
            let exists = FileManager.default.fileExists(atPath: directory.databasePath + "/CURRENT")
            state = try LocalState(path: directory.databasePath, readOnly: readOnly && exists)
        } catch {
            throw GatewayError("cannot open the local database in \(directory.databasePath): \(error) (is another tiergate process running on this state directory?)")
        }
    }

    static func hostName() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        gethostname(&buffer, buffer.count)
        let name = String(cString: buffer)
        return name.isEmpty ? "Server" : name
    }

    /// Closes the server's database. Shutdown has one order: stop intake, drain the workers (services,
    /// fanotify and FUSE threads), then call this, on the path that goes on to exit the process. Objects
    /// that still hold the state afterwards (a finished task the runtime has not destroyed yet, a signal
    /// thread) then find it closed, instead of closing RocksDB themselves while `exit` runs its static
    /// destructors.
    public func close() {
        state.close()
    }

    /// Sets the server's name (used in conflict file names).
    public func rename(to name: String) throws {
        guard !name.isEmpty, !name.contains("/") else { throw GatewayError("a server name must be non-empty and contain no '/'") }
        config.serverName = name
        try directory.saveConfig(config)
    }

    // MARK: Endpoints

    /// Adds a server endpoint for `path` synced with the share at `shareURL`.
    ///
    /// Refused: a path that is not a directory, one that overlaps another endpoint of this server, a second
    /// endpoint of this server on the same share, or a URL where no share exists.
    @discardableResult
    public func addEndpoint(path: String, shareURL reference: String, mode: InitialUploadMode = .merge) async throws -> EndpointConfig {
        // A share in a named store (`store:NAME/prefix`) is kept as that reference, opened at its URL.
        let shareURL = try config.shareURL(reference)
        guard let resolved = realpath(path, nil) else {
            throw GatewayError("cannot add endpoint '\(path)': \(String(cString: strerror(errno)))")
        }
        let canonical = String(cString: resolved)
        free(resolved)
        guard let info = try Posix.status(canonical), (info.st_mode & S_IFMT) == S_IFDIR else {
            throw GatewayError("cannot add endpoint '\(path)': not a directory")
        }
        try Self.checkPlacement(of: canonical, share: shareURL, stateDirectory: directory.path, refusing: "cannot add endpoint '\(canonical)'")
        for other in config.endpoints {
            if Self.overlaps(canonical, other.path) {
                throw GatewayError("cannot add endpoint '\(canonical)': it overlaps endpoint \(other.id) at '\(other.path)' (endpoints of one server must not nest)")
            }
            if other.shareURL == shareURL {
                throw GatewayError("cannot add endpoint '\(canonical)': this server already syncs \(StoreLocator.redacted(shareURL)) through endpoint \(other.id) at '\(other.path)'")
            }
        }
        let share = try await CloudShare.open(StoreLocator.open(shareURL))
        let endpoint = EndpointConfig(id: config.nextEndpointID, path: canonical, share: reference, shareID: share.manifest.shareID, initialUpload: mode)
        config.nextEndpointID += 1
        config.endpoints.append(endpoint)
        config.resolveStores()
        try directory.saveConfig(config)
        return config.endpoints.last!
    }


    /// Removes a server endpoint (by id or path): forgets its local state; never touches cloud data or local files.
    /// Refused while the endpoint has stubs (their content lives only in the share, and nothing would
    /// recall them afterwards) unless `keepStubs` says the operator wants them left as they are.
    public func removeEndpoint(_ selector: String, keepStubs: Bool = false) throws -> EndpointConfig {
        let endpoint = try endpoint(selector)
        if !keepStubs {
            let stubs = try state.entries(endpoint.id).values.filter { $0.kind == .file && $0.residency != .full }
            if !stubs.isEmpty {
                throw GatewayError("endpoint \(endpoint.id) at '\(endpoint.path)' has \(stubs.count) tiered files (\(ByteFormat.string(stubs.reduce(0) { $0 + $1.size }))) whose content is only in the share; nothing would recall them once the endpoint is removed. Recall them first (`tiergate endpoint remove --recall`), or keep them as stubs on purpose (`--keep-stubs`)")
            }
        }
        engines[endpoint.id] = nil
        try state.removeEndpoint(endpoint.id)
        config.endpoints.removeAll { $0.id == endpoint.id }
        try directory.saveConfig(config)
        return endpoint
    }

    /// The endpoint named by id or path.
    public func endpoint(_ selector: String) throws -> EndpointConfig {
        var resolvedPath = selector
        if let resolved = realpath(selector, nil) {
            resolvedPath = String(cString: resolved)
            free(resolved)
        }
        if let id = UInt32(selector), let endpoint = config.endpoints.first(where: { $0.id == id }) { return endpoint }
        if let endpoint = config.endpoints.first(where: { $0.path == resolvedPath || $0.path == selector }) { return endpoint }
        throw GatewayError("no endpoint '\(selector)' on this server (see `tiergate endpoint list`)")
    }

    static func overlaps(_ a: String, _ b: String) -> Bool {
        a == b || a.hasPrefix(b == "/" ? "/" : b + "/") || b.hasPrefix(a == "/" ? "/" : a + "/")
    }

    /// True when `inner` is `outer` or below it.
    static func contains(_ outer: String, _ inner: String) -> Bool {
        inner == outer || inner.hasPrefix(outer == "/" ? "/" : outer + "/")
    }

    /// Refuses an endpoint at `path` (absolute, canonical) that cannot work or would harm this server:
    /// the root directory; a tree that holds the state directory (config.json and the database would be
    /// synced as files, and change on every pass) or lies inside it; a `file://` share folder inside the
    /// endpoint, or the endpoint inside the share folder (the share's own objects would be synced into
    /// it). The message, after `context`, says what to do instead.
    static func checkPlacement(of path: String, share: String, stateDirectory: String, refusing context: String) throws {
        func refuse(_ why: String) -> GatewayError { GatewayError("\(context): \(why)") }
        guard path != "/" else {
            throw refuse("the root directory cannot be an endpoint (it holds the whole system, the state directory included); "
                         + "choose a directory of its own, such as /srv/projects")
        }
        let state = canonicalPath(stateDirectory)
        if contains(path, state) {
            throw refuse("the state directory '\(state)' is inside it, so its database and config.json would be synced as files; "
                         + "keep the state directory outside every endpoint (--state-dir or TIERGATE_STATE_DIR), or choose a "
                         + "directory that does not contain it")
        }
        if contains(state, path) {
            throw refuse("it is inside the state directory '\(state)'; choose a directory outside it")
        }
        if let folder = StoreLocator.localPath(of: share).map(canonicalPath) {
            if contains(path, folder) {
                throw refuse("the share folder '\(folder)' (\(StoreLocator.redacted(share))) is inside it, so the share's own "
                             + "objects would be synced into the share; keep the share folder outside every endpoint")
            }
            if contains(folder, path) {
                throw refuse("it is inside the share folder '\(folder)' (\(StoreLocator.redacted(share))); choose a directory "
                             + "outside the share folder")
            }
        }
    }

    /// Checks the configuration again as it is now: config.json is edited by hand, so `serve` and `sync`
    /// re-check what `endpoint add` refuses (placement, endpoints that nest, credentials in a share URL)
    /// before they touch a file.
    public func checkConfiguration() throws {
        if let problem = config.gc?.problem { throw GatewayError("\(directory.path)/config.json: \(problem)") }
        for (index, endpoint) in config.endpoints.enumerated() {
            let context = "endpoint \(endpoint.id) at '\(endpoint.path)' in \(directory.path)/config.json"
            guard endpoint.path.hasPrefix("/") else { throw GatewayError("\(context): the path must be absolute") }
            do {
                try StoreLocator.refuseCredentials(in: try config.shareURL(endpoint.share))
            } catch {
                throw GatewayError("\(context): \(error)")
            }
            try Self.checkPlacement(of: Self.canonicalPath(endpoint.path), share: endpoint.shareURL, stateDirectory: directory.path,
                                    refusing: context)
            for other in config.endpoints[(index + 1)...] where Self.overlaps(endpoint.path, other.path) {
                throw GatewayError("\(context): it overlaps endpoint \(other.id) at '\(other.path)' (endpoints of one server "
                                   + "must not nest); remove one with `tiergate endpoint remove`")
            }
        }
    }

    /// `path` with symbolic links and `..` resolved when it exists, else as given (without a trailing '/').
    static func canonicalPath(_ path: String) -> String {
        if let resolved = realpath(path, nil) {
            defer { free(resolved) }
            return String(cString: resolved)
        }
        var trimmed = path
        while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed.removeLast() }
        return trimmed
    }

    // MARK: Sync

    /// A sync engine for one endpoint (opens its share, and records the share's id in the endpoint's
    /// configuration if it was written before ids were recorded).
    public func engine(for endpoint: EndpointConfig) async throws -> SyncEngine {
        let share = try await CloudShare.open(networkLimit.wrap(StoreLocator.open(endpoint.shareURL)))
        var endpoint = endpoint
        if endpoint.shareID == nil, let index = config.endpoints.firstIndex(where: { $0.id == endpoint.id }) {
            endpoint.shareID = share.manifest.shareID
            config.endpoints[index].shareID = share.manifest.shareID
            try directory.saveConfig(config)
        }
        return try SyncEngine(endpoint: endpoint, share: share, state: state, serverID: config.serverID, serverName: config.serverName)
    }

    /// One sync pass of `endpoint` (its engine, with the share's loaded index, is kept for later passes).
    /// A pass that cannot even open the share is recorded as the endpoint's last sync, so `status` shows it.
    public func sync(_ endpoint: EndpointConfig, progress: ProgressHandler? = nil) async throws -> SyncReport {
        let engine: SyncEngine
        if let existing = engines[endpoint.id] {
            engine = existing
        } else {
            do {
                engine = try await self.engine(for: endpoint)
            } catch {
                SyncEngine.recordFailedPass(error, endpoint: endpoint, state: state)
                throw error
            }
            engines[endpoint.id] = engine
        }
        do {
            return try await engine.syncOnce(progress: progress)
        } catch let moved as ShareMoved {
            // The share moved to another store: follow it, and sync there from the same cursor.
            let followed = try await Self.follow(moved, endpoint: endpoint, directory: directory)
            if let reloaded = try directory.loadConfig() { config = reloaded }
            engines[endpoint.id] = nil
            return try await sync(followed, progress: progress)
        }
    }

    // MARK: Status

    /// Health of one endpoint, for `tiergate status`.
    public struct EndpointStatus: Codable, Sendable {
        /// The endpoint.
        public var endpoint: EndpointConfig
        /// `Healthy`, `Pending`, `Error` or `No Activity` (see ``Health``).
        public var health: String
        /// The last pass, if any.
        public var lastSync: SyncReport?
        /// The applied log sequence.
        public var cursor: UInt64
        /// The share's log head (nil when the share could not be reached).
        public var head: UInt64?
        /// Items on the endpoint's database.
        public var entries: Int
        /// Local changes not committed yet.
        public var pendingChanges: Int
        /// Items not syncing (errors and skipped items).
        public var filesNotSyncing: Int
        /// Why the share could not be reached, if it could not.
        public var shareError: String?
        /// Stubs, cache and recalls, on an endpoint with tiering or stubs.
        public var tiering: TieringFigures?
        /// The servers registered in the share (this one included), when it could be reached.
        public var servers: [ServerRegistration]?
        /// Sync activity of the last 24 hours, as the daemon recorded it.
        public var activity: SyncActivity?
        /// The server's network limit in force now (the same for every endpoint).
        public var networkLimit: NetworkLimit.Status?
    }

    /// The health vocabulary of `status`, the metrics and the status page.
    public enum Health {
        /// The share is unreachable, the last pass failed, or items fail to sync.
        public static let error = "Error"
        /// Nothing synced yet, local changes or share commits waiting.
        public static let pending = "Pending"
        /// No pass for ``quietLimit``: the daemon is not running (or stuck).
        public static let noActivity = "No Activity"
        /// In sync.
        public static let healthy = "Healthy"
        /// A running daemon passes at least every 300 s; an hour without a pass means none runs.
        public static let quietLimit: Double = 3600
        /// The value of the `tiergate_endpoint_health` metric: 0 healthy, 1 pending, 2 no activity, 3 error.
        public static func level(_ health: String) -> Int {
            [healthy, pending, noActivity, error].firstIndex(of: health) ?? 3
        }
    }

    /// Status of every endpoint.
    public func status(now: Date = Date()) async -> [EndpointStatus] {
        await Self.status(config: config, state: state, now: now)
    }

    /// Status of every endpoint of `config` (the daemon's listener calls it without a `Gateway`).
    static func status(config: GatewayConfig, state: LocalState, now: Date) async -> [EndpointStatus] {
        var result: [EndpointStatus] = []
        for endpoint in config.endpoints {
            let cursor = (try? state.cursor(endpoint.id)) ?? 0
            let last = (try? state.value(SyncReport.self, endpoint.id, SyncReport.stateKey)) ?? nil
            var head: UInt64?
            var shareError: String?
            var servers: [ServerRegistration]?
            do {
                let store = try StoreLocator.open(endpoint.shareURL)
                head = try await CommitLog(store: store).head(after: cursor)
                servers = try await ServerRegistration.list(in: store)
            } catch {
                shareError = "\(error)"
            }
            let errors = (try? state.errors(endpoint.id)) ?? []
            let pending = (try? state.pendingCount(endpoint.id)) ?? 0
            let health = Self.health(last: last, cursor: cursor, head: head, reachable: shareError == nil, pending: pending, errors: errors, now: now)
            let tiering = try? tieringFigures(endpoint, state: state, now: now)
            result.append(EndpointStatus(endpoint: endpoint, health: health, lastSync: last, cursor: cursor, head: head,
                                         entries: (try? state.entryCount(endpoint.id)) ?? 0, pendingChanges: pending,
                                         filesNotSyncing: errors.count, shareError: shareError,
                                         tiering: endpoint.tiering != nil || (tiering?.stubs ?? 0) > 0 ? tiering : nil,
                                         servers: servers,
                                         activity: try? state.value(SyncActivity.self, endpoint.id, SyncActivity.stateKey)))
        }
        return result
    }

    /// `status()` with every share URL redacted, as `status` prints it and the listener serves it.
    public func printableStatus() async -> [EndpointStatus] {
        await Self.printableStatus(config: config, state: state, networkLimit: networkLimit)
    }

    static func printableStatus(config: GatewayConfig, state: LocalState, networkLimit: NetworkLimit) async -> [EndpointStatus] {
        let limit = networkLimit.status()
        return await status(config: config, state: state, now: Date()).map { item in
            var item = item
            item.endpoint.share = ShareAdmin.printable(item.endpoint.share)
            item.networkLimit = limit
            return item
        }
    }

    /// An endpoint's health from its last pass, its cursor and the share's head (nil when unknown),
    /// whether the share answered, its pending changes and its item errors.
    static func health(last: SyncReport?, cursor: UInt64, head: UInt64?, reachable: Bool, pending: Int, errors: [ItemError], now: Date) -> String {
        // Skipped and refused names, and notes of conflicts already resolved (both versions kept), are
        // listed but do not make the endpoint unhealthy.
        let failing = errors.filter { !["skipped", "refused", "conflict"].contains($0.kind) }.count
        if !reachable || last?.result.hasPrefix("error") == true || failing > 0 { return Health.error }
        if let last, now.timeIntervalSince1970 - (last.started + last.seconds) > Health.quietLimit { return Health.noActivity }
        if head.map({ $0 > cursor }) == true || pending > 0 || last == nil { return Health.pending }
        return Health.healthy
    }

    /// The "files not syncing" of one endpoint, or of all.
    public func itemErrors(_ endpoint: EndpointConfig? = nil) throws -> [(endpoint: EndpointConfig, error: ItemError)] {
        var result: [(EndpointConfig, ItemError)] = []
        for candidate in config.endpoints where endpoint == nil || endpoint!.id == candidate.id {
            // A last pass that failed as a whole (share unreachable, refused) is listed first.
            if let last = try state.value(SyncReport.self, candidate.id, SyncReport.stateKey), last.result.hasPrefix("error") {
                result.append((candidate, ItemError(path: "", reason: "the last sync failed: " + last.result.dropFirst("error: ".count),
                                                    kind: "sync", firstSeen: last.started, lastSeen: last.started, attempts: 1)))
            }
            result += try state.errors(candidate.id).map { (candidate, $0) }
        }
        return result
    }
}
