import Glibc

/// A failed fanotify operation: what was attempted, on which path, and errno.
public struct FanotifyError: Error, CustomStringConvertible, Sendable {
    /// What kind of failure this is; new codes may be added.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        /// The name of the code.
        public var name: String

        /// The kernel, the privileges or the filesystem cannot deliver pre-content events.
        public static let unsupported = Code(name: "unsupported")
        /// Adding or removing a mark failed for another reason (missing path, permissions).
        public static let mark = Code(name: "mark")
        /// Reading events from the group failed.
        public static let read = Code(name: "read")
        /// Writing a response for an event failed.
        public static let response = Code(name: "response")
        /// Writing recalled bytes through an event's descriptor failed.
        public static let fill = Code(name: "fill")
        /// The monitor was stopped; its group no longer exists.
        public static let stopped = Code(name: "stopped")

        public var description: String { name }
    }

    /// The kind of failure.
    public var code: Code
    /// The system call that failed (`fanotify_init`, `fanotify_mark`, …).
    public var function: String
    /// The path involved, if any.
    public var path: String
    /// The errno value, 0 when there is none.
    public var errno: Int32

    /// An error of `code` for `function` on `path` with `errno`.
    public init(_ code: Code, function: String, path: String = "", errno: Int32) {
        self.code = code
        self.function = function
        self.path = path
        self.errno = errno
    }

    /// errno's message.
    public var reason: String { errno == 0 ? "no errno" : String(cString: strerror(errno)) }

    public var description: String {
        let call = path.isEmpty ? "\(function): \(reason)" : "\(function) '\(path)': \(reason)"
        switch code {
        case .unsupported:
            return "fanotify pre-content events need Linux ≥ 6.14, CAP_SYS_ADMIN and a filesystem that supports them "
                + "(ext4, xfs, btrfs): \(call)"
        case .stopped:
            return "the fanotify monitor is stopped: \(call)"
        default:
            return call
        }
    }
}
