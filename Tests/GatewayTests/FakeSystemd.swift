import Foundation
import Gateway
import Glibc
import Synchronization

/// The receiving end of `$NOTIFY_SOCKET`, as systemd holds it: a unix datagram socket bound in a scratch
/// directory (or in the abstract namespace), whose messages and `SCM_RIGHTS` descriptors a thread
/// collects for the test.
final class FakeSystemd: Sendable {
    /// One notification: its `KEY=VALUE` lines and the descriptors that came with it (owned by the test).
    struct Message: Sendable {
        let text: String
        let descriptors: [Int32]
        var fields: [String: String] {
            Dictionary(text.split(separator: "\n").map { line in
                let parts = line.split(separator: "=", maxSplits: 1)
                return (String(parts[0]), parts.count > 1 ? String(parts[1]) : "")
            }, uniquingKeysWith: { $1 })
        }
    }

    /// The value for `$NOTIFY_SOCKET`.
    let socketName: String
    private let fd: Int32
    private let received = Mutex<[Message]>([])
    private let stopped = Atomic<Bool>(false)

    /// Binds `path`, or the abstract name `@…` when `path` starts with `@`.
    init(path: String) throws {
        socketName = path
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(path.utf8)
        if bytes.first == UInt8(ascii: "@") { bytes[0] = 0 }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        let length = socklen_t(MemoryLayout<sockaddr_un>.offset(of: \.sun_path)! + bytes.count + (bytes.first == 0 ? 0 : 1))
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        guard bound == 0 else { throw PosixErrorForTests("bind \(path)", errno) }
        var timeout = timeval(tv_sec: 0, tv_usec: 100_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        Thread { [self] in receive() }.start()
    }

    deinit {
        for message in received.withLock({ $0 }) { message.descriptors.forEach { close($0) } }
    }

    /// Stops the receiving thread and closes the socket.
    func stop() {
        stopped.store(true, ordering: .sequentiallyConsistent)
        usleep(200_000)
        close(fd)
    }

    /// Every message so far.
    var messages: [Message] { received.withLock { $0 } }

    /// Waits until `count` messages satisfy `matches`; returns them (fewer when `timeout` passed).
    @discardableResult
    func waitFor(_ count: Int = 1, timeout: Double = 30, _ matches: (Message) -> Bool) -> [Message] {
        let deadline = Date().addingTimeInterval(timeout)
        var found: [Message] = []
        repeat {
            found = messages.filter(matches)
            if found.count >= count { return found }
            usleep(20_000)
        } while Date() < deadline
        return found
    }

    private func receive() {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let controlSize = 256
        let control = UnsafeMutableRawPointer.allocate(byteCount: controlSize, alignment: MemoryLayout<Int>.size)
        defer { control.deallocate() }
        while !stopped.load(ordering: .sequentiallyConsistent) {
            var lastControlLength = 0
            let count = buffer.withUnsafeMutableBytes { bytes -> Int in
                var vector = iovec(iov_base: bytes.baseAddress, iov_len: bytes.count)
                return withUnsafeMutablePointer(to: &vector) { vectorPointer in
                    var message = msghdr()
                    message.msg_iov = vectorPointer
                    message.msg_iovlen = 1
                    message.msg_control = control
                    message.msg_controllen = controlSize
                    let count = recvmsg(fd, &message, Int32(MSG_CMSG_CLOEXEC))
                    if count >= 0 { lastControlLength = message.msg_controllen }
                    return count
                }
            }
            guard count >= 0 else { continue }
            var descriptors: [Int32] = []
            // One SCM_RIGHTS control message at most: a cmsghdr, then the descriptors.
            let headerSize = (MemoryLayout<cmsghdr>.size + 7) & ~7
            if lastControlLength >= headerSize {
                let header = control.load(as: cmsghdr.self)
                if header.cmsg_level == SOL_SOCKET && header.cmsg_type == Int32(SCM_RIGHTS) {
                    let n = (Int(header.cmsg_len) - headerSize) / MemoryLayout<Int32>.size
                    for index in 0..<n { descriptors.append((control + headerSize + index * 4).loadUnaligned(as: Int32.self)) }
                }
            }
            let text = String(decoding: buffer.prefix(count), as: UTF8.self)
            received.withLock { $0.append(Message(text: text, descriptors: descriptors)) }
        }
    }
}

/// A failed call in a test helper, with its errno.
struct PosixErrorForTests: Error, CustomStringConvertible {
    let description: String
    init(_ what: String, _ error: Int32) { description = "\(what): \(String(cString: strerror(error)))" }
}
