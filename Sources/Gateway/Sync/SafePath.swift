import Backends
import CLinux
import Glibc

/// Paths from the cloud are untrusted: this validates them and resolves them strictly beneath an
/// endpoint root, so that no name and no symlink planted in the endpoint can redirect a write outside it.
public enum SafePath {
    /// Longest path accepted, in characters (Azure File Sync's limit).
    public static let maxPathLength = 2048
    /// Longest path component accepted, in bytes (Linux's NAME_MAX).
    public static let maxComponentBytes = 255

    /// Why `path` is not acceptable as a relative item path, or nil when it is.
    public static func problem(with path: String) -> String? {
        let bytes = path.utf8
        if bytes.isEmpty { return "the path is empty" }
        // A path has at most as many characters as bytes: counting characters (slow) only when it may be too long.
        if bytes.count > maxPathLength && path.count > maxPathLength { return "the path is longer than \(maxPathLength) characters" }
        if bytes.contains(0) { return "the path contains a NUL byte" }
        if bytes.first == UInt8(ascii: "/") { return "the path is absolute" }
        // Components by bytes: every scan of every tree checks each of its names here.
        let slash = UInt8(ascii: "/"), dot = UInt8(ascii: ".")
        var start = bytes.startIndex
        while true {
            let end = bytes[start...].firstIndex(of: slash) ?? bytes.endIndex
            let component = bytes[start..<end]
            if component.isEmpty { return "the path has an empty component" }
            if component.allSatisfy({ $0 == dot }) && component.count <= 2 { return "the path has a '\(String(decoding: component, as: UTF8.self))' component" }
            if component.count > maxComponentBytes { return "a path component is longer than \(maxComponentBytes) bytes" }
            guard end != bytes.endIndex else { return nil }
            start = bytes.index(after: end)
        }
    }

    /// Opens the directory that will hold `path` (relative to the directory `rootFD`), creating missing
    /// directories: a symlink anywhere on the way is refused (ELOOP/ENOTDIR) rather than followed.
    /// Returns the parent's descriptor (the caller closes it) and the last component's name.
    ///
    /// An existing parent is opened with one `openat2` (`RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`); missing
    /// folders to create, a kernel without openat2 (ENOSYS, or EPERM from a seccomp filter), a path too
    /// long for it, or a rename racing the lookup (EAGAIN) take the walk of one component at a time with
    /// `O_NOFOLLOW`.
    public static func openParent(rootFD: Int32, path: String, create: Bool, mode: mode_t = 0o755) throws -> (fd: Int32, name: String) {
        var components = path.split(separator: "/").map(String.init)
        guard let name = components.popLast() else { throw PosixError("open", path: path, errno: EINVAL) }
        if !components.isEmpty {
            let fd = CLinux_openat2_beneath(rootFD, components.joined(separator: "/"), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0)
            if fd >= 0 { return (fd, name) }
            let failure = errno
            guard failure == ENOSYS || failure == EPERM || failure == ENAMETOOLONG || failure == EAGAIN || (failure == ENOENT && create) else {
                throw PosixError("open", path: path, errno: failure)
            }
        }
        var fd = try Posix.call("dup", path: path) { dup(rootFD) }
        for component in components {
            var next = openat(fd, component, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            if next < 0 && errno == ENOENT && create {
                if mkdirat(fd, component, mode) != 0 && errno != EEXIST {
                    let error = PosixError("mkdir", path: path, errno: errno)
                    close(fd)
                    throw error
                }
                next = openat(fd, component, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            }
            let savedErrno = errno
            close(fd)
            guard next >= 0 else {
                throw PosixError("open", path: path, errno: savedErrno == ELOOP ? ELOOP : savedErrno)
            }
            fd = next
        }
        return (fd, name)
    }

    /// Opens the item at the relative `path` beneath the directory `rootFD` without following any
    /// symlink on the way or at the end (`openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`; an
    /// `O_NOFOLLOW` walk where the kernel has no openat2, a seccomp filter refuses it, or the path is too
    /// long for it).
    public static func open(rootFD: Int32, path: String, flags: Int32) throws -> Int32 {
        let fd = CLinux_openat2_beneath(rootFD, path, flags | O_NOFOLLOW | O_CLOEXEC, 0)
        if fd >= 0 { return fd }
        guard errno == ENOSYS || errno == EPERM || errno == ENAMETOOLONG else { throw PosixError("open", path: path, errno: errno) }
        let parent = try openParent(rootFD: rootFD, path: path, create: false)
        defer { close(parent.fd) }
        return try Posix.call("open", path: path) { openat(parent.fd, parent.name, flags | O_NOFOLLOW | O_CLOEXEC) }
    }
}
