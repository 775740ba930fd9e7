/// Runs async work over many items with a bounded number in flight, handing each result back to the
/// caller's task as it completes. Results cross the task group as one reference each: tuple results came
/// back corrupted from task groups in the optimized build (Swift 6.3.1), which silently dropped work.
enum BoundedTasks {
    final class Box<Value: Sendable>: Sendable {
        let value: Value
        init(_ value: Value) { self.value = value }
    }

    /// Calls `work` for every item, at most `width` at once, and `collect` with each result in completion
    /// order (on the calling task; work goes on while `collect` waits, say for a commit). An error thrown
    /// by `work` ends the whole run.
    static func run<Item: Sendable, Value: Sendable>(_ items: [Item], width: Int,
                                                     work: @escaping @Sendable (Item) async throws -> Value,
                                                     collect: (Value) async throws -> Void) async throws {
        try await withThrowingTaskGroup(of: Box<Value>.self) { group in
            var pending = items[...]
            func start() {
                guard let item = pending.popFirst() else { return }
                group.addTask { Box(try await work(item)) }
            }
            for _ in 0..<max(1, width) { start() }
            while let box = try await group.next() {
                try await collect(box.value)
                start()
            }
        }
    }
}
