import Glibc

/// How a ``MountSession`` mounts and serves. The mount itself is always `default_permissions` (the
/// kernel checks permissions against the reported attributes), `nosuid`, `nodev`, `fsname=tiergate`
/// and `subtype=tiergate` (it shows as `fuse.tiergate`).
public struct MountOptions: Sendable, Equatable {
    /// Let users other than the mounting one use the mount (`allow_other`). Defaults to true when the
    /// daemon runs as root, which is how a cache volume for applications is served.
    public var allowOther: Bool
    /// Seconds the kernel may trust a name → inode answer. Names changed through the mount are always
    /// current; changes made behind it (sync, recall, tiering) show after at most this long.
    public var entryTimeout: Double
    /// Seconds the kernel may trust attributes (size, mtime, mode) without asking again.
    public var attributeTimeout: Double
    /// Seconds the kernel may remember that a name does not exist (0: never).
    public var negativeTimeout: Double
    /// Upper bound on libfuse worker threads; hooks that block (recalls) each hold one.
    public var maxThreads: Int
    /// How many asynchronous requests (readahead, writeback) the kernel keeps in flight; 0 keeps the
    /// kernel's default.
    public var maxBackgroundRequests: Int
    /// Kernel readahead for files of the mount, in KiB (the kernel's default is 128). Sequential reads
    /// through the daemon issue requests of this size, up to the 1 MiB request limit, so larger values
    /// mean fewer round trips. Set through `/sys/class/bdi`, which needs root; nil leaves the default.
    public var readAheadKiB: Int?
    /// Receive write requests from the kernel by splice(2), so that their data moves into the backing
    /// file without a copy through user space; every other request then costs an extra copy out of
    /// the pipe, so this favours large sequential writes over metadata-heavy work.
    public var spliceWrites: Bool
    /// How long ``MountSession/stop()`` lets processes that still use the mount finish before it
    /// aborts the connection (their calls then fail with `ENOTCONN`).
    public var stopGracePeriod: Duration
    /// Let the kernel read, write and map full (non-stub) files on the endpoint directly, without the
    /// daemon (FUSE passthrough: Linux 6.9 or later, and the daemon must be root, which mounts the
    /// device itself to negotiate it). Stubs always go through the daemon. Off, or where the kernel or
    /// privileges do not allow it, every read and write goes through the daemon.
    public var passthrough: Bool
    /// libfuse's request trace on standard error.
    public var debug: Bool

    /// Options with the defaults: one-second caches, 16 threads, 4 MiB readahead, a five-second stop
    /// grace period.
    public init(allowOther: Bool = geteuid() == 0, entryTimeout: Double = 1, attributeTimeout: Double = 1,
                negativeTimeout: Double = 1, maxThreads: Int = 16, maxBackgroundRequests: Int = 64,
                readAheadKiB: Int? = 4096, spliceWrites: Bool = false, stopGracePeriod: Duration = .seconds(5),
                passthrough: Bool = true, debug: Bool = false) {
        self.allowOther = allowOther
        self.entryTimeout = entryTimeout
        self.attributeTimeout = attributeTimeout
        self.negativeTimeout = negativeTimeout
        self.maxThreads = maxThreads
        self.maxBackgroundRequests = maxBackgroundRequests
        self.readAheadKiB = readAheadKiB
        self.spliceWrites = spliceWrites
        self.stopGracePeriod = stopGracePeriod
        self.passthrough = passthrough
        self.debug = debug
    }

    /// The `-o` list passed to libfuse.
    var mountOptionList: String {
        var list = ["default_permissions", "nosuid", "nodev", "fsname=tiergate", "subtype=tiergate"]
        if allowOther { list.append("allow_other") }
        return list.joined(separator: ",")
    }

    /// What `mount(2)` takes for ``mountOptionList`` when the daemon mounts the device itself (as
    /// libfuse's own mount does for root): `fsname` is the source, `subtype` the type's suffix,
    /// `nosuid`/`nodev` are mount flags, and the rest (`default_permissions`, `allow_other`) go to the
    /// kernel's FUSE options after the device and ownership.
    func kernelMount(device: Int32, rootMode: mode_t, uid: uid_t, gid: gid_t) -> KernelMount {
        var mount = KernelMount(source: "fuse", type: "fuse", flags: 0,
                                data: "fd=\(device),rootmode=\(String(rootMode & S_IFMT, radix: 8)),user_id=\(uid),group_id=\(gid)")
        for option in mountOptionList.split(separator: ",") {
            if option.hasPrefix("fsname=") {
                mount.source = String(option.dropFirst("fsname=".count))
            } else if option.hasPrefix("subtype=") {
                mount.type = "fuse." + option.dropFirst("subtype=".count)
            } else if option == "nosuid" {
                mount.flags |= UInt(MS_NOSUID)
            } else if option == "nodev" {
                mount.flags |= UInt(MS_NODEV)
            } else {
                mount.data += "," + option
            }
        }
        return mount
    }
}

/// The arguments of `mount(2)` for a FUSE file system.
struct KernelMount: Equatable {
    var source: String
    var type: String
    var flags: UInt
    var data: String
}
