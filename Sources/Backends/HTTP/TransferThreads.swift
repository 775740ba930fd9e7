import CCurl
import Foundation
import Glibc
import Synchronization

/// The dedicated threads that run blocking curl transfers, each owning one easy handle.
///
/// Keeping an easy handle per thread is what gives connection reuse: curl keeps a handle's
/// connections open after a transfer, and `curl_easy_reset` does not close them. A new transfer goes
/// to the thread that became idle most recently, whose connection is the warmest, so a sequence of
/// requests keeps using one connection instead of spreading over every thread. DNS and TLS sessions
/// live in one share handle for all threads. Connections themselves are not shared, because curl does
/// not support sharing a connection cache between concurrently running threads.
final class TransferThreads: Sendable {
    private let state = Mutex<State>(State())
    private let share: CurlShare

    /// One thread's mailbox. `assigned` is only read or written under `state`'s lock.
    private final class Worker: @unchecked Sendable {
        let wake = DispatchSemaphore(value: 0)
        var assigned: CurlTransfer?
    }

    private struct State {
        var pending: [CurlTransfer] = []
        var head = 0
        var idle: [Worker] = []
        var stopping = false

        mutating func popPending() -> CurlTransfer? {
            guard head < pending.count else { return nil }
            let transfer = pending[head]
            head += 1
            if head == pending.count {
                pending.removeAll(keepingCapacity: true)
                head = 0
            }
            return transfer
        }
    }

    /// curl's process-wide setup, which is not thread-safe and must run before the first handle.
    private static let globalInit: Void = {
        let code = curl_global_init(Int(CURL_GLOBAL_SSL | CURL_GLOBAL_WIN32))
        precondition(code == CURLE_OK, "curl_global_init failed: \(code)")
    }()

    init(count: Int) {
        Self.globalInit
        share = CurlShare()
        for index in 0..<count {
            let worker = Worker()
            let thread = Thread { [self] in run(worker) }
            thread.name = "tiergate-http-\(index)"
            thread.stackSize = 1 << 20
            thread.start()
        }
    }

    /// Hands a transfer to the most recently idle thread, or queues it (first in, first out) when all
    /// threads are busy.
    func submit(_ transfer: CurlTransfer) {
        let worker: Worker? = state.withLock { state in
            guard let worker = state.idle.popLast() else {
                state.pending.append(transfer)
                return nil
            }
            worker.assigned = transfer
            return worker
        }
        worker?.wake.signal()
    }

    /// Ends every thread once the transfers already queued have run.
    func stop() {
        let idle = state.withLock { state in
            state.stopping = true
            defer { state.idle.removeAll() }
            return state.idle
        }
        for worker in idle { worker.wake.signal() }
    }

    private func run(_ worker: Worker) {
        guard let handle = curl_easy_init() else { fatalError("curl_easy_init: out of memory") }
        let errorBuffer = UnsafeMutablePointer<CChar>.allocate(capacity: Int(CURL_ERROR_SIZE))
        defer {
            curl_easy_cleanup(handle)
            errorBuffer.deallocate()
        }
        var next: CurlTransfer? = state.withLock { state in
            if let transfer = state.popPending() { return transfer }
            state.idle.append(worker)
            return nil
        }
        while true {
            if next == nil {
                worker.wake.wait()
                next = state.withLock { _ in
                    defer { worker.assigned = nil }
                    return worker.assigned
                }
                guard next != nil else { return } // woken without work: stopping
            }
            let transfer = next!
            let outcome = transfer.perform(on: handle, share: share.handle, errorBuffer: errorBuffer)
            // Become available before the caller learns the outcome, so that its next request finds
            // this thread and its warm connection instead of a cold one.
            var stopping = false
            next = state.withLock { state in
                if let transfer = state.popPending() { return transfer }
                if state.stopping {
                    stopping = true
                } else {
                    state.idle.append(worker)
                }
                return nil
            }
            transfer.finish(with: outcome)
            if stopping { return }
        }
    }

    static func isReadableFile(_ path: String) -> Bool {
        var info = Glibc.stat()
        return access(path, R_OK) == 0 && stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG
    }
}

/// A curl share handle for DNS answers and TLS sessions, with the locks curl needs to use it from
/// several threads.
///
/// `@unchecked Sendable`: curl serializes its own access to the share through the lock callbacks
/// installed here; the Swift side never touches the handle after setup.
final class CurlShare: @unchecked Sendable {
    let handle: UnsafeMutableRawPointer
    private let locks: UnsafeMutablePointer<pthread_mutex_t>
    private static let lockCount = 16

    init() {
        guard let handle = curl_share_init() else { fatalError("curl_share_init: out of memory") }
        self.handle = handle
        locks = .allocate(capacity: Self.lockCount)
        for index in 0..<Self.lockCount { pthread_mutex_init(locks + index, nil) }
        _ = CCurl_share_setopt_ptr(handle, CURLSHOPT_USERDATA, UnsafeMutableRawPointer(locks))
        _ = CCurl_share_setopt_lock(handle) { _, data, _, user in
            let locks = user!.assumingMemoryBound(to: pthread_mutex_t.self)
            pthread_mutex_lock(locks + Int(data.rawValue) % CurlShare.lockCount)
        }
        _ = CCurl_share_setopt_unlock(handle) { _, data, user in
            let locks = user!.assumingMemoryBound(to: pthread_mutex_t.self)
            pthread_mutex_unlock(locks + Int(data.rawValue) % CurlShare.lockCount)
        }
        _ = CCurl_share_setopt_long(handle, CURLSHOPT_SHARE, Int(CURL_LOCK_DATA_DNS.rawValue))
        _ = CCurl_share_setopt_long(handle, CURLSHOPT_SHARE, Int(CURL_LOCK_DATA_SSL_SESSION.rawValue))
    }

    deinit {
        curl_share_cleanup(handle)
        for index in 0..<Self.lockCount { pthread_mutex_destroy(locks + index) }
        locks.deallocate()
    }
}
