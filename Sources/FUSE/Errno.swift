import Glibc

/// A POSIX error number. Core operations fail with one; the FUSE glue hands it to the kernel unchanged,
/// so every failure becomes an errno exactly once, at that boundary.
public struct Errno: Error, Hashable, Sendable, CustomStringConvertible {
    /// The errno value (`ENOENT`, …).
    public var rawValue: Int32

    /// An error for the errno value `rawValue`.
    public init(_ rawValue: Int32) {
        self.rawValue = rawValue
    }

    /// The calling thread's current `errno`.
    public static var current: Errno { Errno(Glibc.errno) }

    /// The C library's message and the number, e.g. `No such file or directory (errno 2)`.
    public var description: String { "\(String(cString: strerror(rawValue))) (errno \(rawValue))" }

    /// `ENOENT`.
    public static let noSuchFileOrDirectory = Errno(ENOENT)
    /// `EPERM`.
    public static let notPermitted = Errno(EPERM)
    /// `EACCES`.
    public static let permissionDenied = Errno(EACCES)
    /// `EEXIST`.
    public static let fileExists = Errno(EEXIST)
    /// `EINVAL`.
    public static let invalidArgument = Errno(EINVAL)
    /// `EBADF`.
    public static let badFileDescriptor = Errno(EBADF)
    /// `ESTALE`: the inode number is not (or no longer) known to the core.
    public static let stale = Errno(ESTALE)
    /// `EIO`.
    public static let ioError = Errno(EIO)
    /// `ENODATA`: no such extended attribute.
    public static let noData = Errno(ENODATA)
    /// `EOPNOTSUPP`.
    public static let notSupported = Errno(EOPNOTSUPP)
    /// `ERANGE`: a caller's buffer is too small.
    public static let outOfRange = Errno(ERANGE)
    /// `ENAMETOOLONG`.
    public static let nameTooLong = Errno(ENAMETOOLONG)
    /// `EMFILE`: the process has no descriptor left.
    public static let tooManyOpenFiles = Errno(EMFILE)
    /// `ENOTCONN`: what a mountpoint answers when its FUSE daemon is gone.
    public static let notConnected = Errno(ENOTCONN)
}

/// The one funnel for system calls in this module: retries `EINTR` and turns -1 into an ``Errno``.
@inline(__always)
func systemCall<T: BinaryInteger>(_ body: () -> T) throws(Errno) -> T {
    while true {
        let result = body()
        if result != -1 { return result }
        let error = Glibc.errno
        if error != EINTR { throw Errno(error) }
    }
}
