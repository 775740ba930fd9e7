/// Which kind of traffic the current task sends to a store, so that decorators can treat kinds apart
/// without every caller holding its own store handle.
///
/// On-access recall is exempt from the network limit: an application blocked on a read of a stub must
/// not wait behind a bandwidth schedule meant for background sync. A recall marks its reads with
/// ``recall(_:)``; the mark is a task-local value, so it holds for every store call the closure makes in
/// its own task and in child tasks (not in detached tasks).
public enum StoreTraffic {
    /// True inside ``recall(_:)``.
    @TaskLocal public static var isRecall = false

    /// Runs `body` with its store traffic marked as on-access recall.
    public static func recall<T>(isolation: isolated (any Actor)? = #isolation, _ body: () async throws -> T) async rethrows -> T {
        try await $isRecall.withValue(true, operation: body, isolation: isolation)
    }
}
