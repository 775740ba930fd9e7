import Foundation

/// Runs blocking work (a walk of a tree, a scan of the database) on a thread of its own, not the
/// cooperative pool, which it would hold for as long as the file system or the database takes; the
/// awaiting task is suspended meanwhile. Two such runs awaited together use two cores.
enum OwnThread {
    /// The result crosses back as one reference (see ``BoundedTasks``).
    private final class Box<Value>: @unchecked Sendable {
        let value: Value
        init(_ value: Value) { self.value = value }
    }

    /// `body`'s result, or its error, computed on a new thread with the stack of a main thread (a walk
    /// recurses once per folder level).
    static func run<Value>(_ body: @escaping @Sendable () throws -> Value) async throws -> Value {
        let box: Box<Value> = try await withCheckedThrowingContinuation { continuation in
            let thread = Thread { continuation.resume(with: Result { Box(try body()) }) }
            thread.stackSize = 8 << 20
            thread.start()
        }
        return box.value
    }
}
