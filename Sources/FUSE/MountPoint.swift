import Glibc

/// A failure to mount or unmount, with the reason in a sentence.
public struct MountError: Error, CustomStringConvertible, Sendable {
    /// What went wrong.
    public var message: String
    /// The errno behind it, when there is one.
    public var errno: Errno?

    /// An error with a message and optional errno.
    public init(_ message: String, errno: Errno? = nil) {
        self.message = message
        self.errno = errno
    }

    public var description: String { errno.map { "\(message): \($0)" } ?? message }
}

/// Operations on a mountpoint directory that do not need a session: stale-mount recovery, detaching,
/// and finding the FUSE connection behind a mount.
public enum MountPoint {
    /// Whether `path` is a mount whose FUSE daemon is gone: any access fails with `ENOTCONN`. Asked with
    /// statvfs, which the kernel never answers from its caches: a stat within the attribute timeout of the
    /// daemon's death still succeeds.
    public static func isStale(_ path: String) -> Bool {
        var info = statvfs()
        if statvfs(path, &info) != 0 && Glibc.errno == ENOTCONN { return true }
        var status = stat()
        return stat(path, &status) != 0 && Glibc.errno == ENOTCONN
    }

    /// Makes `path` usable for a new mount: a stale FUSE mount (left by a daemon that crashed or was
    /// killed) is detached first. Returns whether one was. Fails when `path` is not a directory.
    @discardableResult
    public static func recoverIfStale(_ path: String) throws(MountError) -> Bool {
        var recovered = false
        if isStale(path) {
            try detach(path)
            recovered = true
        }
        var status = stat()
        guard stat(path, &status) == 0 else {
            throw MountError("mountpoint \(path) is not usable", errno: .current)
        }
        guard status.st_mode & S_IFMT == S_IFDIR else {
            throw MountError("mountpoint \(path) is not a directory")
        }
        return recovered
    }

    /// Unmounts `path` if nothing uses it; throws (EBUSY) when a process still holds a file, a
    /// directory or its working directory there. As root this is `umount2(2)`; otherwise
    /// `fusermount3 -u`, the set-user-ID helper that mounted it.
    public static func unmount(_ path: String) throws(MountError) {
        if geteuid() == 0 {
            guard umount2(path, 0) == 0 else { throw MountError("cannot unmount \(path)", errno: .current) }
            return
        }
        let status = run(["fusermount3", "-u", "-q", path])
        guard status == 0 else { throw MountError("fusermount3 -u \(path) exited with status \(status)") }
    }

    /// Detaches the mount at `path` lazily: it disappears from the namespace at once, and the kernel
    /// ends the FUSE connection when the last process using it lets go (`umount2(MNT_DETACH)` as
    /// root, else `fusermount3 -uz`).
    public static func detach(_ path: String) throws(MountError) {
        if geteuid() == 0 {
            guard umount2(path, Int32(MNT_DETACH)) == 0 else {
                throw MountError("cannot detach the mount at \(path)", errno: .current)
            }
            return
        }
        let status = run(["fusermount3", "-u", "-z", "-q", path])
        guard status == 0 else { throw MountError("fusermount3 -uz \(path) exited with status \(status)") }
    }

    /// Ends a busy mount: the FUSE connection is aborted (every pending and later request of the
    /// processes still using it fails), then the mount is detached. `umount2(MNT_FORCE)` aborts a FUSE
    /// connection; without root, the connection's `abort` file in fusectl is the only way.
    static func forceUnmount(_ path: String, connection: UInt32?) {
        if geteuid() == 0 {
            _ = umount2(path, Int32(MNT_FORCE))
        } else if let connection {
            _ = abort(connection: connection)
        }
        try? detach(path)
    }

    /// Refuses a mountpoint where a new mount would hide something: one where a file system is already
    /// mounted (another endpoint's mount, a disk: it and whatever uses it would vanish under the new
    /// mount), or a directory that is not empty (its files would be hidden while mounted). Call it after
    /// ``recoverIfStale(_:)``, which detaches a dead mount of our own.
    public static func checkVacant(_ path: String) throws(MountError) {
        if let existing = mounts(at: path).last {
            throw MountError("\(path) is already a mount point (\(existing.type) from \(existing.source)); mounting there would "
                             + "hide it: unmount it first or choose an empty directory that is not a mount point")
        }
        guard let directory = opendir(path) else { throw MountError("mountpoint \(path) is not usable", errno: .current) }
        defer { closedir(directory) }
        while let entry = readdir(directory) {
            // Not `entry.pointee.d_name` whole: the record is only as long as the name.
            let field = UnsafeRawPointer(entry).advanced(by: MemoryLayout<dirent>.offset(of: \dirent.d_name)!)
            let name = String(cString: field.assumingMemoryBound(to: CChar.self))
            if name != "." && name != ".." {
                throw MountError("mountpoint \(path) is not empty ('\(name)' is there), and its files would be hidden while "
                                 + "mounted; choose an empty directory")
            }
        }
    }

    /// One mount of /proc/self/mountinfo.
    struct MountRecord {
        /// The device's minor number (for FUSE, the connection number).
        var minor: UInt32?
        /// The file system type (`fuse.tiergate`, `ext4`, …).
        var type: String
        /// The mount source (`tiergate`, `/dev/sda1`, …).
        var source: String
    }

    /// The mounts whose mount point is `path` (resolved), oldest first, read from `/proc/self/mountinfo`
    /// so that the file systems themselves are not asked.
    static func mounts(at path: String) -> [MountRecord] {
        guard let resolved = realpath(path, nil) else { return [] }
        let target = String(cString: resolved)
        free(resolved)
        guard let file = fopen("/proc/self/mountinfo", "r") else { return [] }
        defer { fclose(file) }
        var line: UnsafeMutablePointer<CChar>?
        var capacity = 0
        defer { free(line) }
        var found: [MountRecord] = []
        while getline(&line, &capacity, file) > 0 {
            // Fields: id, parent id, major:minor, root, mount point, options, optional fields…, "-", type, source, …
            let fields = String(cString: line!).split(separator: " ")
            guard fields.count > 4, unescape(fields[4]) == target else { continue }
            let device = fields[2].split(separator: ":")
            let rest = fields.drop { $0 != "-" }.dropFirst()
            found.append(MountRecord(minor: device.count == 2 ? UInt32(device[1]) : nil,
                                     type: rest.first.map(String.init) ?? "?", source: rest.dropFirst().first.map(unescape) ?? "?"))
        }
        return found
    }

    /// The FUSE connection number of the newest mount at `path` (its device minor number, which names
    /// `/sys/fs/fuse/connections/<n>`).
    static func connection(of path: String) -> UInt32? {
        mounts(at: path).last?.minor
    }

    /// Asks the kernel to abort a FUSE connection: every pending and future request fails, and the
    /// daemon's reads end. The last resort of a stop when processes keep the mount busy.
    static func abort(connection: UInt32) -> Bool {
        let path = "/sys/fs/fuse/connections/\(connection)/abort"
        let descriptor = open(path, O_WRONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return false }
        defer { close(descriptor) }
        return write(descriptor, "1", 1) == 1
    }

    /// Sets the readahead of a FUSE connection's backing device info (`/sys/class/bdi/0:<n>`); a
    /// best effort, since only root may write there.
    @discardableResult
    static func setReadAhead(kibibytes: Int, connection: UInt32) -> Bool {
        let descriptor = open("/sys/class/bdi/0:\(connection)/read_ahead_kb", O_WRONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return false }
        defer { close(descriptor) }
        let text = Array("\(kibibytes)".utf8)
        return write(descriptor, text, text.count) == text.count
    }

    /// mountinfo escapes space, tab, newline and backslash as three octal digits.
    private static func unescape(_ field: Substring) -> String {
        var bytes: [UInt8] = []
        var characters = Array(field.utf8)[...]
        while let byte = characters.popFirst() {
            if byte == UInt8(ascii: "\\"), characters.count >= 3,
               let value = UInt8(String(decoding: characters.prefix(3), as: UTF8.self), radix: 8) {
                bytes.append(value)
                characters = characters.dropFirst(3)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Runs a program found on PATH and returns its exit status (-1 when it could not start).
    private static func run(_ arguments: [String]) -> Int32 {
        var pid: pid_t = 0
        var argv = arguments.map { strdup($0) }
        argv.append(nil)
        defer { argv.forEach { free($0) } }
        guard posix_spawnp(&pid, arguments[0], nil, nil, argv, environ) == 0 else { return -1 }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && Glibc.errno == EINTR {}
        // WIFEXITED / WEXITSTATUS, which Swift does not import.
        return status & 0x7f == 0 ? (status >> 8) & 0xff : -1
    }
}
