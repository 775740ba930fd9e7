import Backends
import CLinux
import CloudShare
import Fanotify
import Foundation
import Glibc

/// The system half of `tiergate check`: what the kernel, the privileges, the volume holding the folder
/// and the share offer the sync and tiering of that folder. Leaves nothing behind: its one probe file
/// is removed before it returns.
public struct SystemCheck {
    /// A clock skew larger than this is reported (five minutes).
    public static let clockSkewWarning: Double = 300
    /// S3 SigV4 and Azure SharedKey refuse requests dated this far off (15 minutes).
    public static let clockSkewLimit: Double = 900
    /// The daemon's resident memory per namespace item, measured at 1,000,000 files; RAM is compared
    /// with this estimate.
    public static let memoryPerItem: Int64 = 1_700
    /// The probe file's name prefix: a Tiergate temporary name (``SkipRules``), so that a daemon
    /// syncing the folder meanwhile never picks it up.
    public static let probePrefix = ".tg-check-"

    /// The folder checked.
    public let path: String
    /// The share to open, if any.
    public let shareURL: String?

    /// A check of the system for the folder at `path` and, when given, the share at `shareURL`.
    public init(path: String, shareURL: String? = nil) {
        self.path = path
        self.shareURL = shareURL
    }

    /// The findings; `items` (files and directories of the folder) sizes the memory estimate.
    public func run(items: Int) async -> [CheckFinding] {
        var findings: [CheckFinding] = []
        let kernel = Self.kernel()
        findings.append(.system(.kernel, "Linux \(kernel.release)"))
        findings += fanotify(kernel)
        findings += fuse(kernel)
        findings += probe()
        findings += journal()
        findings += freeSpace()
        findings += memory(items: items)
        if let shareURL { findings += await share(shareURL) }
        return findings
    }

    // MARK: Kernel and privileges

    /// The running kernel's release (`6.18.2-…`) and its major and minor numbers.
    static func kernel() -> (release: String, version: (Int, Int)) {
        var names = utsname()
        uname(&names)
        let release = withUnsafeBytes(of: &names.release) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
        let numbers = release.split(whereSeparator: { !$0.isNumber }).prefix(2).compactMap { Int($0) }
        return (release, (numbers.first ?? 0, numbers.count > 1 ? numbers[1] : 0))
    }

    /// The effective capability set (`CapEff` of /proc/self/status), nil when it cannot be read.
    static func effectiveCapabilities() -> UInt64? {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
        for line in status.split(separator: "\n") where line.hasPrefix("CapEff:") {
            return UInt64(line.dropFirst("CapEff:".count).trimmingCharacters(in: .whitespaces), radix: 16)
        }
        return nil
    }

    /// CAP_SYS_ADMIN's bit.
    static let capSysAdmin: UInt64 = 1 << 21

    private func fanotify(_ kernel: (release: String, version: (Int, Int))) -> [CheckFinding] {
        var findings: [CheckFinding] = []
        let capabilities = Self.effectiveCapabilities()
        if let capabilities, capabilities & Self.capSysAdmin != 0 {
            findings.append(.system(.capSysAdmin, "CAP_SYS_ADMIN is in the effective set (CapEff \(String(capabilities, radix: 16)))"))
        } else {
            findings.append(.system(.noCapSysAdmin, capabilities.map { "CAP_SYS_ADMIN is not in the effective set (CapEff \(String($0, radix: 16)))" }
                                    ?? "the capabilities cannot be read from /proc/self/status"))
        }
        // The probe the daemon relies on: a pre-content group and a mark on the folder, for a moment.
        do {
            try PreContentMonitor.checkSupport(at: path)
            findings.append(.system(.fanotify, "pre-content events (FAN_PRE_ACCESS) can be delivered on this volume"))
        } catch {
            let tooOld = kernel.version < (6, 14) ? "Linux \(kernel.release) is older than 6.14; " : ""
            findings.append(.system(.fanotifyUnavailable, tooOld + "\(error)"))
        }
        return findings
    }

    private func fuse(_ kernel: (release: String, version: (Int, Int))) -> [CheckFinding] {
        let device = open("/dev/fuse", O_RDWR | O_CLOEXEC)
        let deviceError = errno
        if device >= 0 { close(device) }
        let root = geteuid() == 0
        // Root mounts the device itself; anyone else goes through the setuid helper.
        let helper = Self.which("fusermount3")
        var findings: [CheckFinding] = []
        if device < 0 {
            findings.append(.system(.fuseUnavailable, "/dev/fuse: \(String(cString: strerror(deviceError)))"))
        } else if !root && helper == nil {
            findings.append(.system(.fuseUnavailable, "fusermount3 is not on PATH, and only root mounts without it"))
        } else {
            findings.append(.system(.fuse, "/dev/fuse opens" + (helper.map { "; \($0)" } ?? "; fusermount3 not on PATH (root does not need it)")))
        }
        if device >= 0 && root && kernel.version >= (6, 9) {
            findings.append(.system(.fusePassthrough, "Linux \(kernel.release) ≥ 6.9 and root"))
        } else {
            let why = device < 0 ? "no FUSE" : kernel.version < (6, 9) ? "Linux \(kernel.release) is older than 6.9" : "only root may register passthrough files"
            findings.append(.system(.fusePassthroughUnavailable, why))
        }
        return findings
    }

    /// The first executable `name` in the directories of `PATH`.
    static func which(_ name: String) -> String? {
        let directories = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":")
        return directories.map { $0 + "/" + name }.first { access($0, X_OK) == 0 }
    }

    // MARK: Volume

    /// Creates a temporary file in the folder, sets a `user.` xattr on it and punches a hole in it —
    /// what tiering does to make a stub — then removes it.
    private func probe() -> [CheckFinding] {
        let folder = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard folder >= 0 else { return [.system(.notWritable, "open '\(path)': \(String(cString: strerror(errno)))")] }
        defer { close(folder) }
        let name = Self.probePrefix + String(UInt64.random(in: 0...UInt64.max), radix: 16)
        let fd = openat(folder, name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return [.system(.notWritable, "cannot create a file in '\(path)': \(String(cString: strerror(errno)))")] }
        defer {
            close(fd)
            unlinkat(folder, name, 0)
        }
        var findings: [CheckFinding] = []
        let value: [UInt8] = Array("check".utf8)
        if fsetxattr(fd, "user.tiergate.check", value, value.count, 0) == 0 {
            findings.append(.system(.userXattr, "fsetxattr user.tiergate.check works"))
        } else {
            findings.append(.system(.userXattrUnsupported, "fsetxattr user.tiergate.check: \(String(cString: strerror(errno)))"))
        }
        // Two 64 KiB blocks of data, then a hole over the first, as a stub is made.
        let block = [UInt8](repeating: 0x5A, count: 128 << 10)
        let written = block.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        if written != block.count {
            findings.append(.system(.notWritable, "cannot write to a file in '\(path)': \(String(cString: strerror(errno)))"))
        } else if CLinux_punch_hole(fd, 0, 64 << 10) == 0 {
            findings.append(.system(.punchHole, "fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE) works"))
        } else {
            findings.append(.system(.punchHoleUnsupported, "fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE): \(String(cString: strerror(errno)))"))
        }
        return findings
    }

    /// The mount of the volume holding `path`, from /proc/self/mountinfo: its device name in the kernel
    /// (as /proc/fs/jbd2 names it), mount point, source and file system type.
    struct Volume: Equatable {
        /// `vda`, `sda1`, `dm-0`, `loop3`: the block device's kernel name, nil without one.
        var deviceName: String?
        /// Where it is mounted.
        var mountPoint: String
        /// The mount source (`/dev/vda`).
        var source: String
        /// The file system type (`ext4`).
        var type: String
    }

    /// The volume holding `path`, nil when mountinfo has no line for its device.
    static func volume(of path: String) -> Volume? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        let device = UInt64(info.st_dev)
        // glibc's major()/minor() encoding, which Swift does not import.
        let major = ((device >> 8) & 0xfff) | ((device >> 32) & ~0xfff)
        let minor = (device & 0xff) | ((device >> 12) & ~0xff)
        guard let mounts = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return nil }
        // Fields: id, parent id, major:minor, root, mount point, options, optional fields…, "-", type, source, …
        // The last line for the device is the newest mount.
        guard let line = mounts.split(separator: "\n").last(where: { $0.split(separator: " ").dropFirst(2).first == "\(major):\(minor)" }) else {
            return nil
        }
        let fields = line.split(separator: " ")
        let rest = fields.drop { $0 != "-" }.dropFirst()
        var name: String?
        if let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/sys/dev/block/\(major):\(minor)") {
            name = target.split(separator: "/").last.map(String.init)
        }
        return Volume(deviceName: name, mountPoint: fields.count > 4 ? unescape(fields[4]) : "?",
                      source: rest.dropFirst().first.map(unescape) ?? "?", type: rest.first.map(String.init) ?? "?")
    }

    /// mountinfo escapes space, tab, newline and backslash as three octal digits.
    static func unescape(_ field: Substring) -> String {
        var bytes: [UInt8] = []
        var characters = Array(field.utf8)[...]
        while let byte = characters.popFirst() {
            if byte == UInt8(ascii: "\\"), characters.count >= 3, let value = UInt8(String(decoding: characters.prefix(3), as: UTF8.self), radix: 8) {
                bytes.append(value)
                characters = characters.dropFirst(3)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The jbd2 journals the kernel runs (/proc/fs/jbd2/<device>-<journal inode>).
    static func journalDevices() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/fs/jbd2")) ?? []).compactMap { entry in
            entry.lastIndex(of: "-").map { String(entry[..<$0]) }
        }
    }

    private func journal() -> [CheckFinding] {
        let type = CLinux_filesystem_type(path)
        guard type >= 0 else { return [.system(.noJournal, "statfs '\(path)': \(String(cString: strerror(errno))); cannot tell")] }
        let volume = Self.volume(of: path)
        let described = volume.map { "\($0.type) on \($0.source) at \($0.mountPoint)" } ?? "file system type 0x\(String(type, radix: 16))"
        switch type {
        case 0xEF53: // ext2, ext3 and ext4 share a magic number; a journal shows as a jbd2 thread.
            guard let name = volume?.deviceName else { return [.system(.noJournal, "\(described): the device's journal cannot be found; cannot tell")] }
            return Self.journalDevices().contains(name)
                ? [.system(.journal, "\(described): jbd2 journal (/proc/fs/jbd2/\(name)-*)")]
                : [.system(.noJournal, "\(described): no jbd2 journal for \(name) in /proc/fs/jbd2")]
        case 0x5846_5342: return [.system(.journal, "\(described): xfs metadata log")]
        case 0x9123_683E: return [.system(.journal, "\(described): btrfs is copy-on-write (no journal needed)")]
        case 0x0102_1994: return [.system(.noJournal, "\(described): tmpfs keeps nothing across a reboot")]
        default: return [.system(.noJournal, "\(described): cannot tell")]
        }
    }

    private func freeSpace() -> [CheckFinding] {
        guard let volume = try? TieringPolicy.volume(of: path) else {
            return [.system(.lowFreeSpace, "statvfs '\(path)': \(String(cString: strerror(errno))); cannot tell")]
        }
        let text = "\(ByteFormat.string(volume.free)) free of \(ByteFormat.string(volume.total)) (\(String(format: "%.1f", volume.freePercent)) %)"
        return [.system(volume.isLowOnSpace ? .lowFreeSpace : .freeSpace, text)]
    }

    /// MemTotal of /proc/meminfo, in bytes.
    static func memoryTotal() -> Int64? {
        guard let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("MemTotal:") {
            let figures = line.split(separator: " ")
            return figures.count >= 2 ? Int64(figures[1]).map { $0 * 1024 } : nil
        }
        return nil
    }

    private func memory(items: Int) -> [CheckFinding] {
        guard let total = Self.memoryTotal() else { return [.system(.memoryLow, "MemTotal cannot be read from /proc/meminfo; cannot tell")] }
        let estimate = Int64(items) * Self.memoryPerItem
        let text = "\(ByteFormat.string(total)) of RAM; the daemon needs about \(ByteFormat.string(estimate)) for \(items) items "
            + "(\(Self.memoryPerItem) bytes each)"
        return [.system(estimate > total / 2 ? .memoryLow : .memory, text)]
    }

    // MARK: Share

    private func share(_ url: String) async -> [CheckFinding] {
        let shown = StoreLocator.redacted(url)
        let share: CloudShare
        do {
            share = try await ShareAdmin.open(url: url)
            try await share.ensureIndexLoaded()
        } catch {
            return [.system(.shareUnavailable, "\(shown): \(error)")]
        }
        var findings: [CheckFinding] = [.system(.share, "\(shown) opens (share \(share.manifest.shareID), format \(share.manifest.format))")]
        let before = Date()
        do {
            guard let server = try await share.store.serverTime() else {
                findings.append(.system(.clock, "\(shown) has no clock of its own (a local store)"))
                return findings
            }
            let after = Date()
            // The Date header has one-second resolution; compare with the middle of the exchange.
            let skew = server.timeIntervalSince(before.addingTimeInterval(after.timeIntervalSince(before) / 2))
            let text = String(format: "the store's clock is %+.0f s from this server's", skew)
            let code: CheckCode = abs(skew) >= Self.clockSkewLimit ? .clockSkewRefused : abs(skew) > Self.clockSkewWarning ? .clockSkew : .clock
            findings.append(.system(code, text))
        } catch {
            findings.append(.system(.shareUnavailable, "\(shown): reading the store's clock: \(error)"))
        }
        return findings
    }
}
