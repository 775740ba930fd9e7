import CloudShare
import Synchronization

/// An endpoint's cloud share as recall and tiering reach it: empty until the share could be opened, so
/// that the daemon marks stubs (and answers their readers with an error, never zeros) before the store
/// is reachable, and recalls them as soon as it is.
public final class ShareConnection: Sendable {
    private let opened: Mutex<CloudShare?>
    /// The share's URL as printed in messages (redacted).
    let name: String

    /// A connection holding `share`, or (nil) waiting for one.
    public init(_ share: CloudShare?, name: String) {
        opened = Mutex(share)
        self.name = name
    }

    /// Hands over the share once it is open.
    func connect(_ share: CloudShare) {
        opened.withLock { $0 = share }
    }

    /// The share, waiting up to `patience` for it to be opened (a daemon just starting opens it right
    /// after marking stubs); fails after that.
    func share(waitingUpTo patience: Duration) async throws -> CloudShare {
        let deadline = ContinuousClock.now + patience
        while ContinuousClock.now < deadline {
            if let share = opened.withLock({ $0 }) { return share }
            try await Task.sleep(for: .milliseconds(50))
        }
        return try share()
    }

    /// The share; fails while it has not been opened.
    func share() throws -> CloudShare {
        guard let share = opened.withLock({ $0 }) else {
            throw GatewayError("the share \(name) cannot be reached yet; stubs stay stubs until it can")
        }
        return share
    }
}
