import Foundation
import Glibc

/// The descriptors the service manager passed at start (`sd_listen_fds(3)`): `$LISTEN_FDS` of them from
/// descriptor 3 on, named by `$LISTEN_FDNAMES` (colon-separated), meant for the process `$LISTEN_PID`.
/// Under Tiergate's unit they are the fanotify groups the previous daemon put in the descriptor store.
public enum SystemdListenedDescriptors {
    /// The first passed descriptor (`SD_LISTEN_FDS_START`).
    static let start: Int32 = 3

    /// The variables that describe passed descriptors; a child must not see them (they name its parent).
    public static let variables = ["LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"]

    /// The passed descriptors by name, each made close-on-exec; empty when none were passed to `pid`.
    /// Unnamed descriptors are called `unknown`, as systemd calls them; of two with one name the last wins.
    public static func take(environment: [String: String] = ProcessInfo.processInfo.environment,
                            pid: pid_t = getpid()) -> [String: Int32] {
        let named = parse(environment: environment, pid: pid)
        for fd in named.values { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        return named
    }

    /// ``take(environment:pid:)`` without touching the descriptors.
    static func parse(environment: [String: String], pid: pid_t) -> [String: Int32] {
        guard let owner = environment["LISTEN_PID"].flatMap({ pid_t($0) }), owner == pid,
              let count = environment["LISTEN_FDS"].flatMap({ Int32($0) }), count > 0 else { return [:] }
        let names = (environment["LISTEN_FDNAMES"] ?? "").split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        var named: [String: Int32] = [:]
        for index in 0..<Int(count) {
            let name = index < names.count && !names[index].isEmpty ? names[index] : "unknown"
            named[name] = start + Int32(index)
        }
        return named
    }
}
