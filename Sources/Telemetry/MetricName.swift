/// Every metric Tiergate exports, in one place: its name and its help text. Labels are bounded: an
/// endpoint id, a direction, an operation, a result, an age range — never a path, a URL or a secret.
public enum MetricName {
    // Sync (per endpoint: label `endpoint`).
    public static let syncFiles = "tiergate_sync_files_total"
    public static let syncBytes = "tiergate_sync_bytes_total"
    public static let syncSessions = "tiergate_sync_sessions_total"
    public static let lastSync = "tiergate_sync_last_timestamp_seconds"
    public static let filesNotSyncing = "tiergate_files_not_syncing"
    public static let pendingChanges = "tiergate_pending_changes"
    public static let cursorLag = "tiergate_cursor_lag_commits"
    public static let commits = "tiergate_commits_total"
    public static let commitRetries = "tiergate_commit_append_retries_total"
    public static let health = "tiergate_endpoint_health"

    // Store requests (labels `operation`, `result`).
    public static let storeRequests = "tiergate_store_requests_total"
    public static let storeLatency = "tiergate_store_request_duration_seconds"
    public static let storeRetries = "tiergate_store_retries_total"

    // Tiering and recall (per endpoint).
    public static let recalls = "tiergate_recalls_total"
    public static let recallBytes = "tiergate_recall_bytes_total"
    public static let recallLatency = "tiergate_recall_duration_seconds"
    public static let cacheHits = "tiergate_cache_hits_total"
    public static let cacheHitRate = "tiergate_cache_hit_rate"
    public static let cacheBytes = "tiergate_cache_bytes"
    public static let tieredBytes = "tiergate_tiered_bytes"
    public static let stubs = "tiergate_stubs"
    public static let cacheBytesByAccess = "tiergate_cache_bytes_by_last_access"
    public static let lowDisk = "tiergate_low_disk_mode"
    public static let fanotifyQueue = "tiergate_fanotify_queue_depth"
    public static let mountRequests = "tiergate_mount_requests_total"

    // Garbage collection by the daemon (label `result`).
    public static let gcRuns = "tiergate_gc_runs_total"
    public static let gcDeletedBytes = "tiergate_gc_deleted_bytes_total"

    // The server.
    public static let networkLimit = "tiergate_network_limit_bytes_per_second"
    public static let up = "tiergate_up"

    /// The help text of every metric, by name (the exporter writes it as `# HELP`).
    public static let help: [String: String] = [
        syncFiles: "Files synced, by direction (upload: committed to the share; download: written or made stubs from it).",
        syncBytes: "Bytes of file content synced, by direction.",
        syncSessions: "Sync passes, by result.",
        lastSync: "When the last sync pass ended (seconds since the epoch).",
        filesNotSyncing: "Items that did not sync (errors and skipped names), as `tiergate errors` lists them.",
        pendingChanges: "Local changes not committed yet.",
        cursorLag: "Commits in the share's log that this endpoint has not applied yet (head minus cursor).",
        commits: "Commits this endpoint appended to the share's log.",
        commitRetries: "Commit appends retried because another server took the sequence number first.",
        health: "Endpoint health: 0 Healthy, 1 Pending, 2 No Activity, 3 Error.",
        storeRequests: "Object store requests, by operation and result.",
        storeLatency: "Object store request latency, by operation.",
        storeRetries: "Object store requests retried after a transient failure.",
        recalls: "Stub accesses that fetched data from the share, by result.",
        recallBytes: "Bytes written into stubs by recalls.",
        recallLatency: "Time to fill a stub's range or whole file from the share.",
        cacheHits: "Accesses the daemon saw that local data answered.",
        cacheHitRate: "Share of the accesses the daemon saw that local data answered.",
        cacheBytes: "Bytes of full files on the endpoint (the server's cache).",
        tieredBytes: "Logical bytes of stubs (tiered to the share).",
        stubs: "Files that are stubs.",
        cacheBytesByAccess: "Bytes of full files by how long ago they were last accessed (or modified).",
        lowDisk: "1 while the volume is below its free-space target (recalled files are tiered again).",
        fanotifyQueue: "Pre-content events read from the kernel and waiting for a handler.",
        mountRequests: "Requests the FUSE mount of the endpoint served.",
        gcRuns: "Garbage collector runs the daemon made, by result (success; busy: another collector held the share's lease; error).",
        gcDeletedBytes: "Bytes of packs the daemon's garbage collector deleted.",
        networkLimit: "The network limit in force for sync traffic (bytes per second; 0: none).",
        up: "1 while the daemon runs.",
    ]
}
