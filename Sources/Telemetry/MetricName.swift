/// Every metric Tiergate exports, in one place: its name, help text and labels. Labels are bounded:
/// an endpoint id, a direction, an operation, a result — never a path, a URL or a secret.
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

    // The server.
    public static let networkLimit = "tiergate_network_limit_bytes_per_second"
    public static let up = "tiergate_up"
}
