import Glibc

/// A first-in first-out queue that worker threads block on. The fanotify glue runs on its own threads,
/// outside Swift concurrency, so it waits on a pthread condition rather than suspending.
final class BlockingQueue<Element: Sendable>: @unchecked Sendable {
    // @unchecked: every access to `items` and `closed` holds `mutex`.
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let changed = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var items: [Element] = []
    private var head = 0
    private var closed = false

    init() {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(changed, nil)
    }

    deinit {
        pthread_cond_destroy(changed)
        pthread_mutex_destroy(mutex)
        changed.deallocate()
        mutex.deallocate()
    }

    private func locked<T>(_ body: () -> T) -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return body()
    }

    /// The number of elements waiting.
    var count: Int { locked { items.count - head } }

    /// Appends `elements` and wakes the waiting threads.
    func push(_ elements: [Element]) {
        guard !elements.isEmpty else { return }
        locked {
            items.append(contentsOf: elements)
            pthread_cond_broadcast(changed)
        }
    }

    /// The next element, blocking while the queue is empty; nil once it is closed and drained.
    func pop() -> Element? {
        locked {
            while head == items.count && !closed { pthread_cond_wait(changed, mutex) }
            guard head < items.count else { return nil }
            let element = items[head]
            head += 1
            if head == items.count || head > 1024 && head * 2 > items.count {
                items.removeFirst(head)
                head = 0
            }
            pthread_cond_broadcast(changed)
            return element
        }
    }

    /// Blocks while `limit` or more elements are waiting, so a producer cannot outrun the consumers.
    func waitUntilBelow(_ limit: Int) {
        locked {
            while items.count - head >= limit && !closed { pthread_cond_wait(changed, mutex) }
        }
    }

    /// Lets `pop` return nil once the remaining elements are taken.
    func close() {
        locked {
            closed = true
            pthread_cond_broadcast(changed)
        }
    }
}
