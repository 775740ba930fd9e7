import Glibc
import Synchronization

/// Paces bytes to a rate that may change over time: a token bucket with one second of burst, shared by
/// every store wrapped with it (see ``ThrottledStore``), so one limit covers all of a process's traffic.
///
/// The rate comes from `rate`, read at most once per second (nil: unlimited). Waiting callers queue in
/// byte order: each reserves the bytes after those reserved before it and waits until the link has let
/// that many bytes through at the rate of the moment. A waiter sleeps at most a second at a time, so a
/// change of rate (a schedule rule starting or ending) takes effect for it within a second.
public final class TokenBucket: Sendable {
    private struct Line {
        /// Bytes the link has let through since the start (advances with time at `rate`).
        var passed = 0.0
        /// Where the bytes reserved so far end (a position on the same line).
        var reserved = -Double.infinity
        /// When `passed` was last advanced (monotonic seconds).
        var advanced = TokenBucket.now()
        /// The rate in force (bytes per second), nil when unlimited.
        var rate: Int64?
        /// When `rate` was read (monotonic seconds); -infinity before the first read.
        var rateRead = -Double.infinity
    }

    private let rate: @Sendable () -> Int64?
    private let line = Mutex(Line())

    /// A bucket whose rate in bytes per second is `rate()` at the moment (nil: unlimited; at least 1).
    public init(rate: @escaping @Sendable () -> Int64?) {
        self.rate = rate
    }

    /// A bucket with a fixed rate of `bytesPerSecond` (at least 1).
    public convenience init(bytesPerSecond: Int64) {
        let fixed = max(1, bytesPerSecond)
        self.init(rate: { fixed })
    }

    /// Waits until the link has room for `bytes` more.
    public func take(_ bytes: Int) async throws {
        guard bytes > 0 else { return }
        var now = Self.now()
        refreshRate(now)
        // The end of the bytes reserved before this call: the call may go once the link passed it.
        guard let start = line.withLock({ line -> Double? in
            advance(&line, to: now)
            guard let rate = line.rate else { return nil }
            let start = max(line.reserved, line.passed - Double(rate))    // one second of unused rate is kept as burst
            line.reserved = start + Double(bytes)
            return start
        }) else { return }
        while true {
            let wait = line.withLock { line -> Double? in
                advance(&line, to: now)
                guard let rate = line.rate, start > line.passed else { return nil }
                return (start - line.passed) / Double(rate)
            }
            guard let wait else { return }
            try await Task.sleep(for: .seconds(min(wait, 1)))
            now = Self.now()
            refreshRate(now)
        }
    }

    /// Moves the line to `now` at the rate in force since it last moved.
    private func advance(_ line: inout Line, to now: Double) {
        if now > line.advanced, let rate = line.rate { line.passed += Double(rate) * (now - line.advanced) }
        line.advanced = max(line.advanced, now)
    }

    /// Reads the rate again when the last read is a second old. The provider is called outside the lock
    /// (it may read a file); the line is first advanced at the old rate, so the change applies from now.
    private func refreshRate(_ now: Double) {
        guard line.withLock({ now - $0.rateRead >= 1 }) else { return }
        let fresh = rate().map { max(1, $0) }
        line.withLock { line in
            advance(&line, to: now)
            line.rate = fresh
            line.rateRead = now
            // Unlimited: no backlog is carried into a later limit.
            if fresh == nil { line.reserved = min(line.reserved, line.passed) }
        }
    }

    static func now() -> Double {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
    }
}
