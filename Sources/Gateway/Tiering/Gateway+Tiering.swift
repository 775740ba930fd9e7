import Backends
import CloudShare
import Foundation
import Glibc

extension Gateway {
    /// Turns tiering on (or changes it) for an endpoint; nil turns it off.
    public func setTiering(_ selector: String, _ tiering: TieringConfig?) throws -> EndpointConfig {
        var endpoint = try endpoint(selector)
        endpoint.tiering = tiering
        guard let index = config.endpoints.firstIndex(where: { $0.id == endpoint.id }) else { return endpoint }
        config.endpoints[index] = endpoint
        try directory.saveConfig(config)
        return endpoint
    }

    /// The endpoint holding `path` and the path relative to its root ("" for the root itself).
    public func locate(_ path: String) throws -> (endpoint: EndpointConfig, relative: String) {
        let resolved = Self.canonical(path)
        for endpoint in config.endpoints {
            if resolved == endpoint.path { return (endpoint, "") }
            if resolved.hasPrefix(endpoint.path + "/") { return (endpoint, String(resolved.dropFirst(endpoint.path.count + 1))) }
        }
        throw GatewayError("'\(path)' is not inside any endpoint of this server (see `tiergate endpoint list`)")
    }

    /// `path` made absolute and canonical as far as it exists, so that a deleted file (`restore`) or one
    /// not created yet still resolves through its folders.
    static func canonical(_ path: String) -> String {
        var absolute = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        while absolute.count > 1 && absolute.hasSuffix("/") { absolute.removeLast() }
        var missing: [Substring] = []
        var existing = absolute
        while existing != "/", realpath(existing, nil) == nil, let slash = existing.lastIndex(of: "/") {
            missing.insert(existing[existing.index(after: slash)...], at: 0)
            existing = slash == existing.startIndex ? "/" : String(existing[..<slash])
        }
        guard let resolved = realpath(existing, nil) else { return absolute }
        defer { free(resolved) }
        let base = String(cString: resolved)
        return missing.isEmpty ? base : (base == "/" ? "" : base) + "/" + missing.joined(separator: "/")
    }

    /// Synced files at or below `relative`, with their records.
    func files(of endpoint: EndpointConfig, under relative: String) throws -> [(String, EntryRecord)] {
        try state.entries(endpoint.id).filter { path, record in
            record.kind == .file && (relative.isEmpty || path == relative || path.hasPrefix(relative + "/"))
        }.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    }

    /// The effective free-space target of `endpoint`: the largest of all endpoints on its volume.
    public func effectiveFreeSpacePercent(_ endpoint: EndpointConfig) -> Int {
        guard let device = try? TieringPolicy.volume(of: endpoint.path).device else { return endpoint.tiering?.volumeFreeSpacePercent ?? 0 }
        return config.endpoints.filter { (try? TieringPolicy.volume(of: $0.path).device) == device }
            .compactMap { $0.tiering?.volumeFreeSpacePercent }.max() ?? 0
    }

    /// Result of tiering or recalling a set of files.
    public struct TieringResult: Codable, Sendable {
        /// Files done.
        public var files = 0
        /// Bytes freed (tier) or recalled (recall).
        public var bytes: Int64 = 0
        /// Files not done, with the reason.
        public var failures: [String] = []
        /// Seconds taken.
        public var seconds = 0.0
    }

    /// Tiers the file at `path`, or every synced full file below the directory `path` (`tiergate tier`).
    /// Stubs made without a running daemon are marked for recall when `tiergate serve` starts.
    public func tier(_ path: String, runtime: TieringRuntime? = nil) async throws -> TieringResult {
        let (endpoint, relative) = try locate(path)
        let share = try await CloudShare.open(StoreLocator.open(endpoint.shareURL))
        let tierer = Tierer(share: share, state: state, endpoint: endpoint)
        let started = Date()
        var result = TieringResult()
        for (file, record) in try files(of: endpoint, under: relative) where record.residency == .full {
            do {
                if let runtime {
                    result.bytes += try await runtime.tier(file)
                } else {
                    result.bytes += try await tierer.tier(file)
                }
                result.files += 1
            } catch {
                result.failures.append("\(error)")
            }
        }
        result.seconds = Date().timeIntervalSince(started)
        return result
    }

    /// Recalls every stub at or below `path` completely, `threads` files at a time (`tiergate recall`).
    public func recall(_ path: String, threads: Int = 8, progress: ProgressHandler? = nil) async throws -> TieringResult {
        let (endpoint, relative) = try locate(path)
        let share = try await CloudShare.open(StoreLocator.open(endpoint.shareURL))
        let recaller = RecallEngine(share: share, state: state, endpoint: endpoint)
        let stubs = try files(of: endpoint, under: relative).filter { $0.1.residency != .full }.map(\.0)
        let started = Date()
        var result = TieringResult()
        var last = Date()
        try await BoundedTasks.run(stubs, width: threads, work: { file -> (String, Int64, String?) in
            do { return (file, try await recaller.recall(file), nil) } catch { return (file, 0, "\(error)") }
        }, collect: { file, bytes, failure in
            if let failure {
                result.failures.append("\(file): \(failure)")
            } else {
                result.files += 1
                result.bytes += bytes
            }
            if let progress, Date().timeIntervalSince(last) > 0.5 {
                last = Date()
                progress(JobProgress(phase: "recalling", items: result.files, totalItems: stubs.count, bytes: result.bytes, elapsed: last.timeIntervalSince(started)))
            }
        })
        result.seconds = Date().timeIntervalSince(started)
        return result
    }

    /// What the policies would tier next on `endpoint`, and why (`tiergate heat`).
    public func heat(_ endpoint: EndpointConfig) throws -> (volume: TieringPolicy.Volume, policy: [TieringPolicy.Candidate], ranking: [TieringPolicy.Candidate]) {
        let volume = try TieringPolicy.volume(of: endpoint.path)
        let entries = try state.entries(endpoint.id)
        let heat = try state.heatStore(endpoint.id).all()
        let policy = TieringPolicy.evaluate(entries: entries, heat: heat, volume: volume,
                                            freeSpacePercent: effectiveFreeSpacePercent(endpoint), dateDays: endpoint.tiering?.dateDays)
        return (volume, policy, TieringPolicy.ranking(entries: entries, heat: heat, volume: volume))
    }

    /// Tiering figures of an endpoint for `status`.
    public struct TieringFigures: Codable, Sendable {
        /// Files that are stubs (tiered or partial).
        public var stubs = 0
        /// Their logical size.
        public var sizeTiered: Int64 = 0
        /// Bytes of full files on the endpoint (the server's cache).
        public var cacheSize: Int64 = 0
        /// Recalls since the daemon started (from its last report).
        public var recalls: RecallEngine.Figures?
        /// The cache (full files) by when each file was last accessed, or modified when no access is
        /// known: the data tiering would free first is in the oldest buckets.
        public var cacheByLastAccess: [AccessBucket] = []
    }

    /// Cached files last accessed within one age range.
    public struct AccessBucket: Codable, Sendable, Equatable {
        /// The range, for people (`1–7 days`).
        public var label: String
        /// The range's upper bound in days; nil for the oldest bucket.
        public var days: Int?
        /// Files and bytes in it.
        public var files = 0
        public var bytes: Int64 = 0
    }

    /// The age ranges of ``TieringFigures/cacheByLastAccess``.
    static let accessBuckets: [(label: String, days: Int?)] = [
        ("< 1 day", 1), ("1–7 days", 7), ("7–30 days", 30), ("30–90 days", 90), ("90–365 days", 365), ("> 1 year", nil),
    ]

    /// Counts stubs and cache from the database.
    public func tieringFigures(_ endpoint: EndpointConfig, now: Date = Date()) throws -> TieringFigures {
        try Self.tieringFigures(endpoint, state: state, now: now)
    }

    static func tieringFigures(_ endpoint: EndpointConfig, state: LocalState, now: Date) throws -> TieringFigures {
        var figures = TieringFigures()
        let heat = try state.heatStore(endpoint.id).all()
        var buckets = Self.accessBuckets.map { AccessBucket(label: $0.label, days: $0.days) }
        let nowNanoseconds = Int64(now.timeIntervalSince1970 * 1e9)
        for (_, record) in try state.entries(endpoint.id) where record.kind == .file {
            if record.residency == .full {
                figures.cacheSize += record.size
                let accessed = max(heat[record.fileID]?.lastAccess ?? 0, record.mtime)
                let days = Double(nowNanoseconds - accessed) / 86_400e9
                let index = buckets.firstIndex { $0.days.map { days < Double($0) } ?? true } ?? buckets.count - 1
                buckets[index].files += 1
                buckets[index].bytes += record.size
            } else {
                figures.stubs += 1
                figures.sizeTiered += record.size
            }
        }
        figures.cacheByLastAccess = buckets
        figures.recalls = try state.value(RecallEngine.Figures.self, endpoint.id, "recallFigures")
        return figures
    }
}
