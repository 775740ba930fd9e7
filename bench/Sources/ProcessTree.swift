import Glibc

/// A started process and its descendants, read from `/proc`: `tiergate serve` is a supervisor that runs a
/// worker, so a daemon's CPU and memory are the sum over its tree.
struct ProcessTree {
    /// The process the bench started.
    let root: pid_t

    /// The root and every descendant alive now.
    var pids: [pid_t] {
        var found = [root], next = 0
        let all = Self.parents()
        while next < found.count {
            found += all.filter { $0.value == found[next] }.map(\.key)
            next += 1
        }
        return found
    }

    /// CPU seconds (utime + stime) of the processes alive now, over their lives.
    func cpuSeconds() -> Double {
        let ticks = pids.compactMap { Self.statFields($0) }.reduce(0.0) { total, fields in
            total + (Double(fields[11]) ?? 0) + (Double(fields[12]) ?? 0)
        }
        return ticks / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// Resident memory now (`VmRSS`), summed over the tree, in KiB.
    func residentKiB() -> Int {
        pids.compactMap { Self.status($0, "VmRSS") }.reduce(0, +)
    }

    /// Peak resident memory (`VmHWM`) summed over the tree, in KiB: an upper bound of the tree's peak, as
    /// the processes may have peaked at different times.
    func peakResidentKiB() -> Int {
        pids.compactMap { Self.status($0, "VmHWM") }.reduce(0, +)
    }

    /// The fields of `/proc/PID/stat` after the command name (state first), or nil when it is gone.
    private static func statFields(_ pid: pid_t) -> [Substring]? {
        // The command name may hold spaces and parentheses: fields start after the last ')'.
        guard let stat = read("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { return nil }
        return stat[stat.index(close, offsetBy: 2)...].split(separator: " ")
    }

    /// A `kB` line of `/proc/PID/status` (`VmRSS:   51356 kB`).
    private static func status(_ pid: pid_t, _ key: String) -> Int? {
        guard let text = read("/proc/\(pid)/status"),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix(key + ":") }) else { return nil }
        return line.split(separator: " ").dropFirst().first.flatMap { Int($0) }
    }

    /// Every process's parent.
    private static func parents() -> [pid_t: pid_t] {
        guard let directory = opendir("/proc") else { return [:] }
        defer { closedir(directory) }
        var result: [pid_t: pid_t] = [:]
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if let pid = pid_t(name), let fields = statFields(pid), fields.count > 1, let parent = pid_t(fields[1]) { result[pid] = parent }
        }
        return result
    }

    /// A small /proc file, or nil when the process is gone.
    private static func read(_ path: String) -> String? {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        var bytes = [UInt8](repeating: 0, count: 4096)
        let count = bytes.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, $0.count) }
        return count > 0 ? String(decoding: bytes[..<count], as: UTF8.self) : nil
    }
}
