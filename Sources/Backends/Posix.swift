import CLinux
import Glibc

/// A failed system call: the function, the path it worked on, and errno.
public struct PosixError: Error, CustomStringConvertible, Sendable {
    /// The system call that failed (`open`, `fsync`, …).
    public var function: String
    /// The path involved, if any.
    public var path: String
    /// The errno value.
    public var errno: Int32

    /// An error for `function` on `path` with `errno`.
    public init(_ function: String, path: String, errno: Int32) {
        self.function = function
        self.path = path
        self.errno = errno
    }

    /// errno's message (`No space left on device`, …).
    public var reason: String { String(cString: strerror(errno)) }

    public var description: String {
        path.isEmpty ? "\(function): \(reason)" : "\(function) '\(path)': \(reason)"
    }
}

/// The one funnel for system calls: retries EINTR and turns -1 into a ``PosixError``.
public enum Posix {
    /// Calls `body` until it does not fail with EINTR; throws on -1.
    @discardableResult
    public static func call<T: BinaryInteger>(_ function: String, path: String = "", _ body: () -> T) throws -> T {
        while true {
            let result = body()
            if result != -1 { return result }
            let error = Glibc.errno
            if error == EINTR { continue }
            throw PosixError(function, path: path, errno: error)
        }
    }

    /// Opens `path`, retrying EINTR.
    public static func open(_ path: String, _ flags: Int32, _ mode: mode_t = 0o644) throws -> Int32 {
        try call("open", path: path) { Glibc.open(path, flags | O_CLOEXEC, mode) }
    }

    /// Writes all of `bytes` at the descriptor's position.
    public static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, path: String) throws {
        var done = 0
        while done < bytes.count {
            let n = try call("write", path: path) { Glibc.write(fd, bytes.baseAddress! + done, bytes.count - done) }
            done += n
        }
    }

    /// Writes all of `bytes` at `offset`.
    public static func pwriteAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, offset: Int64, path: String) throws {
        var done = 0
        while done < bytes.count {
            done += try call("pwrite", path: path) { Glibc.pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset) + off_t(done)) }
        }
    }

    /// Reads up to `count` bytes at `offset`; fewer only at end of file.
    public static func preadFully(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, offset: Int64, path: String) throws -> Int {
        var done = 0
        while done < buffer.count {
            let n = try call("pread", path: path) { Glibc.pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done)) }
            if n == 0 { break }
            done += n
        }
        return done
    }

    /// Flushes a file's data and metadata to stable storage.
    public static func fsync(_ fd: Int32, path: String) throws {
        try call("fsync", path: path) { Glibc.fsync(fd) }
    }

    /// Flushes a directory so that a rename or create inside it is durable.
    public static func fsyncDirectory(_ path: String) throws {
        let fd = try open(path, O_RDONLY | O_DIRECTORY)
        defer { Glibc.close(fd) }
        try fsync(fd, path: path)
    }

    /// An unnamed file (`O_TMPFILE`) in the directory `folder`, open for reading and writing with `mode`;
    /// nil when the file system has none (NFS, FUSE and others), then the caller names a temporary file
    /// instead. An unnamed file that is never linked in vanishes when it is closed, so a process killed
    /// while it writes leaves nothing behind.
    public static func openUnnamed(in folder: Int32, mode: mode_t, path: String) throws -> Int32? {
        while true {
            let fd = openat(folder, ".", CLINUX_O_TMPFILE | O_RDWR | O_CLOEXEC, mode)
            if fd >= 0 { return fd }
            switch Glibc.errno {
            case EINTR: continue
            case EOPNOTSUPP, EISDIR, EINVAL, ENOSYS: return nil     // no unnamed files here, or no such flag
            case let error: throw PosixError("open(O_TMPFILE)", path: path, errno: error)
            }
        }
    }

    /// Links the unnamed file `file` in as `name` in the directory `folder`; false when `name` exists.
    /// `AT_EMPTY_PATH` where the kernel permits it, else through `/proc/self/fd`, which needs no
    /// capability.
    public static func linkUnnamed(_ file: Int32, into folder: Int32, as name: String, path: String) throws -> Bool {
        if linkat(file, "", folder, name, CLINUX_AT_EMPTY_PATH) == 0 { return true }
        if Glibc.errno == EEXIST { return false }
        if linkat(AT_FDCWD, "/proc/self/fd/\(file)", folder, name, AT_SYMLINK_FOLLOW) == 0 { return true }
        if Glibc.errno == EEXIST { return false }
        throw PosixError("link", path: path, errno: Glibc.errno)
    }

    /// A `timespec` for a time in nanoseconds since the epoch; times before 1970 keep a non-negative
    /// nanosecond field, as `utimensat` requires.
    public static func timespec(nanoseconds: Int64) -> Glibc.timespec {
        let (seconds, remainder) = nanoseconds.quotientAndRemainder(dividingBy: 1_000_000_000)
        return remainder < 0
            ? Glibc.timespec(tv_sec: time_t(seconds - 1), tv_nsec: Int(remainder + 1_000_000_000))
            : Glibc.timespec(tv_sec: time_t(seconds), tv_nsec: Int(remainder))
    }

    /// `stat` of a path, or nil when it does not exist.
    public static func status(_ path: String, followLinks: Bool = true) throws -> Glibc.stat? {
        var info = Glibc.stat()
        let result: Int32 = followLinks ? stat(path, &info) : lstat(path, &info)
        if result == 0 { return info }
        if Glibc.errno == ENOENT || Glibc.errno == ENOTDIR { return nil }
        throw PosixError(followLinks ? "stat" : "lstat", path: path, errno: Glibc.errno)
    }

    /// Creates `path` and any missing parents (like `mkdir -p`).
    public static func makeDirectories(_ path: String, mode: mode_t = 0o755) throws {
        if Glibc.mkdir(path, mode) == 0 || Glibc.errno == EEXIST { return }
        guard Glibc.errno == ENOENT else { throw PosixError("mkdir", path: path, errno: Glibc.errno) }
        if let slash = path.lastIndex(of: "/"), slash != path.startIndex {
            try makeDirectories(String(path[..<slash]), mode: mode)
        }
        if Glibc.mkdir(path, mode) != 0 && Glibc.errno != EEXIST {
            throw PosixError("mkdir", path: path, errno: Glibc.errno)
        }
    }

    /// The name of a directory entry from `readdir`, without copying `d_name` whole: the kernel's
    /// record is only as long as the name, so reading all 256 bytes of the field can run past the end
    /// of the mapped buffer (a crash, seen under load).
    public static func entryName(_ entry: UnsafeMutablePointer<dirent>) -> [UInt8] {
        let name = UnsafeRawPointer(entry).advanced(by: MemoryLayout<dirent>.offset(of: \dirent.d_name)!)
        return Array(UnsafeRawBufferPointer(start: name, count: strlen(name.assumingMemoryBound(to: CChar.self))))
    }

    /// Names in a directory, without `.` and `..`.
    public static func listDirectory(_ path: String) throws -> [(name: String, isDirectory: Bool)] {
        guard let dir = opendir(path) else { throw PosixError("opendir", path: path, errno: Glibc.errno) }
        defer { closedir(dir) }
        var names: [(String, Bool)] = []
        while let entry = readdir(dir) {
            let name = String(decoding: entryName(entry), as: UTF8.self)
            if name == "." || name == ".." { continue }
            var isDirectory = entry.pointee.d_type == UInt8(DT_DIR)
            if entry.pointee.d_type == UInt8(DT_UNKNOWN), let info = try status(path + "/" + name, followLinks: false) {
                isDirectory = (info.st_mode & S_IFMT) == S_IFDIR
            }
            names.append((name, isDirectory))
        }
        return names
    }
}
