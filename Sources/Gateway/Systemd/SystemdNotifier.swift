import Backends
import Foundation
import Glibc

/// The service manager's notification protocol (`sd_notify(3)`), spoken without libsystemd: one datagram of
/// `KEY=VALUE` lines to the unix socket named by `$NOTIFY_SOCKET` (a path, or an abstract name written
/// `@name`), with descriptors attached as `SCM_RIGHTS` for the descriptor store (`FDSTORE=1`).
///
/// A process started without `$NOTIFY_SOCKET` makes no notifier (``init(environment:)`` returns nil), so
/// nothing is ever sent outside systemd.
public struct SystemdNotifier: Sendable {
    /// The socket address, as `$NOTIFY_SOCKET` names it.
    public let socketName: String

    /// A notifier for `$NOTIFY_SOCKET` in `environment`; nil when it is unset, empty, or not a unix
    /// socket address (systemd also offers `vsock:` addresses for virtual machines, which Tiergate does
    /// not run in as a service).
    public init?(environment: [String: String] = ProcessInfo.processInfo.environment) {
        guard let name = environment["NOTIFY_SOCKET"], name.hasPrefix("/") || name.hasPrefix("@") else { return nil }
        socketName = name
    }

    /// Sends `message` (`READY=1\nSTATUS=…`), with `descriptors` attached when there are any.
    public func send(_ message: String, descriptors: [Int32] = []) throws {
        // A new socket per message, as sd_notify does: messages are rare, and nothing stays open that a
        // child could inherit.
        let fd = try Posix.call("socket") { socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        defer { close(fd) }
        try Self.sendDatagram(fd, to: socketName, Array(message.utf8), descriptors: descriptors)
    }

    /// Sends `message`, logging nothing and throwing nothing: a service manager that stopped listening
    /// must not stop the daemon.
    public func post(_ message: String) {
        try? send(message)
    }

    /// `READY=1` with a status line.
    public func ready(status: String) { post("READY=1\nSTATUS=\(status)") }

    /// Hands `descriptor` to the service manager's descriptor store under `name`; it comes back in
    /// `$LISTEN_FDS` when the service starts again. `FDPOLL=0`: systemd must not drop it when it polls
    /// readable or hung up (a fanotify group polls readable whenever events wait).
    public func store(_ descriptor: Int32, name: String) throws {
        try send("FDSTORE=1\nFDNAME=\(name)\nFDPOLL=0", descriptors: [descriptor])
    }

    /// The interval at which this process must send `WATCHDOG=1`: half of `$WATCHDOG_USEC`, when it is set
    /// and `$WATCHDOG_PID` is absent or names `pid`. Nil otherwise.
    public static func watchdogInterval(environment: [String: String] = ProcessInfo.processInfo.environment,
                                        pid: pid_t = getpid()) -> Duration? {
        guard let usec = environment["WATCHDOG_USEC"].flatMap({ UInt64($0) }), usec > 0 else { return nil }
        if let owner = environment["WATCHDOG_PID"], pid_t(owner) != pid { return nil }
        return .microseconds(usec / 2)
    }

    /// The seconds of `CLOCK_MONOTONIC` in microseconds, for `RELOADING=1`'s `MONOTONIC_USEC=`.
    public static var monotonicMicroseconds: UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1_000
    }

    // MARK: The socket call

    /// `sendmsg` of `bytes` to the unix datagram address `name` (`@` for the abstract namespace), with
    /// `descriptors` as one `SCM_RIGHTS` control message. All the pointer work of the notifier is here.
    static func sendDatagram(_ fd: Int32, to name: String, _ bytes: [UInt8], descriptors: [Int32]) throws {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var path = Array(name.utf8)
        if path.first == UInt8(ascii: "@") { path[0] = 0 }   // abstract: a leading NUL, no terminator
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard path.count < capacity else { throw PosixError("sendmsg", path: name, errno: ENAMETOOLONG) }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: path) }
        let addressLength = socklen_t(MemoryLayout<sockaddr_un>.offset(of: \.sun_path)! + path.count + (path.first == 0 ? 0 : 1))

        // The control message: a cmsghdr, then the descriptors, padded to the alignment of size_t
        // (CMSG_SPACE, a macro Swift cannot import).
        let alignment = MemoryLayout<Int>.size
        func aligned(_ n: Int) -> Int { (n + alignment - 1) & ~(alignment - 1) }
        let payload = descriptors.count * MemoryLayout<Int32>.size
        let headerSize = aligned(MemoryLayout<cmsghdr>.size)
        let controlSize = descriptors.isEmpty ? 0 : headerSize + aligned(payload)
        let control = UnsafeMutableRawPointer.allocate(byteCount: max(controlSize, 1), alignment: alignment)
        defer { control.deallocate() }
        control.initializeMemory(as: UInt8.self, repeating: 0, count: max(controlSize, 1))
        if !descriptors.isEmpty {
            let header = control.bindMemory(to: cmsghdr.self, capacity: 1)
            header.pointee.cmsg_len = headerSize + payload   // CMSG_LEN
            header.pointee.cmsg_level = SOL_SOCKET
            header.pointee.cmsg_type = Int32(SCM_RIGHTS)
            descriptors.withUnsafeBytes { (control + headerSize).copyMemory(from: $0.baseAddress!, byteCount: payload) }
        }

        var bytes = bytes
        let sent = try bytes.withUnsafeMutableBytes { buffer in
            try withUnsafeMutablePointer(to: &address) { addressPointer in
                var vector = iovec(iov_base: buffer.baseAddress, iov_len: buffer.count)
                return try withUnsafeMutablePointer(to: &vector) { vectorPointer in
                    var message = msghdr()
                    message.msg_name = UnsafeMutableRawPointer(addressPointer)
                    message.msg_namelen = addressLength
                    message.msg_iov = vectorPointer
                    message.msg_iovlen = 1
                    message.msg_control = controlSize == 0 ? nil : control
                    message.msg_controllen = controlSize
                    return try Posix.call("sendmsg", path: name) { sendmsg(fd, &message, Int32(MSG_NOSIGNAL)) }
                }
            }
        }
        guard sent == bytes.count else { throw PosixError("sendmsg", path: name, errno: EMSGSIZE) }
    }
}
