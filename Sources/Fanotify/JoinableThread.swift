import CLinux
import Glibc

/// A plain POSIX thread that can be joined. Event handling blocks (on the kernel, on recalls), so it runs
/// here and never on Swift's cooperative pool.
final class JoinableThread: @unchecked Sendable {
    // @unchecked: `thread` is written once in init and read only by join, which the owner calls once.
    private var thread = pthread_t()

    private final class Start {
        let name: String
        let body: @Sendable () -> Void
        init(name: String, body: @escaping @Sendable () -> Void) {
            self.name = name
            self.body = body
        }
    }

    /// Starts a thread named `name` (at most 15 bytes are kept) running `body`.
    init(name: String, _ body: @escaping @Sendable () -> Void) {
        let start = Unmanaged.passRetained(Start(name: name, body: body)).toOpaque()
        let result = pthread_create(&thread, nil, { context in
            let start = Unmanaged<Start>.fromOpaque(context!).takeRetainedValue()
            _ = CLinux_set_thread_name(String(start.name.utf8.prefix(15))!)
            start.body()
            return nil
        }, start)
        precondition(result == 0, "pthread_create failed: \(String(cString: strerror(result)))")
    }

    /// Waits for the thread to finish.
    func join() {
        pthread_join(thread, nil)
    }
}
