/// Progress of a long-running job, reported every few hundred milliseconds.
public struct JobProgress: Sendable {
    /// What the job is doing (`storing`, `restoring`, …).
    public var phase: String
    /// Items done so far.
    public var items: Int
    /// Items in total, when known.
    public var totalItems: Int?
    /// Bytes done so far.
    public var bytes: Int64
    /// Seconds since the step `items` and `bytes` count began (the rate and the ETA are taken over them).
    public var elapsed: Double
    /// Bytes in total, when known (then an ETA can be given).
    public var totalBytes: Int64? = nil
    /// What the items are, in plural (`files`, `objects`).
    public var unit = "files"

    /// Seconds left at the rate so far, when the totals are known and work has started.
    public var secondsLeft: Double? {
        guard elapsed > 1 else { return nil }
        if let totalBytes, totalBytes > 0, bytes > 0 {
            return Double(totalBytes - bytes) / (Double(bytes) / elapsed)
        }
        if let totalItems, items > 0 {
            return Double(totalItems - items) / (Double(items) / elapsed)
        }
        return nil
    }
}

/// A callback receiving progress.
public typealias ProgressHandler = @Sendable (JobProgress) -> Void
