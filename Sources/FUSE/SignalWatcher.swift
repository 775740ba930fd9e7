import Glibc
import Synchronization

/// The write end of the signal pipe, read by the C signal handler: a handler may only make
/// async-signal-safe calls, so it writes the signal number into a pipe and a thread acts on it.
/// Set once, before any handler is installed.
nonisolated(unsafe) private var signalPipeWriteEnd: Int32 = -1

/// Runs actions when signals arrive (the self-pipe pattern): the handler is installed with
/// `sigaction(2)` before ``watch(_:_:)`` returns, so a signal sent right after is never lost, and the
/// default action comes back when the last watcher of a signal is gone.
final class SignalWatcher: Sendable {
    static let shared = SignalWatcher()

    private struct State {
        var actions: [Int32: [UInt64: @Sendable () -> Void]] = [:]
        var nextToken: UInt64 = 1
        var readEnd: Int32 = -1
    }

    private let state = Mutex(State())

    /// Runs `action` on a new thread each time one of `signals` arrives; returns a token for ``unwatch(_:)``.
    func watch(_ signals: [Int32], _ action: @escaping @Sendable () -> Void) -> UInt64 {
        state.withLock { state in
            if state.readEnd < 0 { startReader(&state) }
            let token = state.nextToken
            state.nextToken += 1
            for number in signals {
                if state.actions[number, default: [:]].isEmpty {
                    var handler = sigaction()
                    handler.__sigaction_handler.sa_handler = { number in
                        var byte = UInt8(truncatingIfNeeded: number)
                        _ = write(signalPipeWriteEnd, &byte, 1)
                    }
                    sigemptyset(&handler.sa_mask)
                    handler.sa_flags = SA_RESTART
                    sigaction(number, &handler, nil)
                }
                state.actions[number, default: [:]][token] = action
            }
            return token
        }
    }

    /// Stops running the action registered under `token`.
    func unwatch(_ token: UInt64) {
        state.withLock { state in
            for number in Array(state.actions.keys) where state.actions[number]?[token] != nil {
                state.actions[number]![token] = nil
                if state.actions[number]!.isEmpty {
                    state.actions[number] = nil
                    signal(number, SIG_DFL)
                }
            }
        }
    }

    private func startReader(_ state: inout State) {
        var ends: [Int32] = [-1, -1]
        guard pipe(&ends) == 0 else { return }
        for end in ends { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
        // A full pipe must not block the handler; the reader catches up.
        _ = fcntl(ends[1], F_SETFL, fcntl(ends[1], F_GETFL) | O_NONBLOCK)
        signalPipeWriteEnd = ends[1]
        state.readEnd = ends[0]
        let readEnd = ends[0]
        startDetachedThread { [self] in
            while true {
                var byte: UInt8 = 0
                let count = read(readEnd, &byte, 1)
                if count < 0 && errno == EINTR { continue }
                guard count == 1 else { return }
                let actions = self.state.withLock { Array(($0.actions[Int32(byte)] ?? [:]).values) }
                // Each action may block (a stop waits for its mount to end).
                for action in actions { startDetachedThread(action) }
            }
        }
    }
}

/// Starts a detached POSIX thread running `body`: for work that blocks for long (libfuse's loop, a
/// stop), which must not sit on a thread of Swift's cooperative pool.
@discardableResult
func startDetachedThread(_ body: @escaping @Sendable () -> Void) -> Int32 {
    final class Body: Sendable {
        let run: @Sendable () -> Void
        init(_ run: @escaping @Sendable () -> Void) { self.run = run }
    }
    let context = Unmanaged.passRetained(Body(body)).toOpaque()
    var thread = pthread_t()
    let result = pthread_create(&thread, nil, { context in
        Unmanaged<Body>.fromOpaque(context!).takeRetainedValue().run()
        return nil
    }, context)
    guard result == 0 else {
        Unmanaged<Body>.fromOpaque(context).release()
        return result
    }
    pthread_detach(thread)
    return 0
}
