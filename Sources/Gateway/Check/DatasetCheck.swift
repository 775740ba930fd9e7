import Backends
import Glibc

/// The namespace half of `tiergate check`: walks a tree the way the scan (``TreeWalker``) does — one
/// directory descriptor per level, `O_NOFOLLOW`, names sorted by their bytes, the same rules from
/// ``DirectoryNames`` and ``SyncExclusion`` — so that what it reports as not synced is exactly what sync
/// leaves out, with the same reason. It adds what sync takes but the user should know (sparse, huge,
/// unreadable files, huge directories, deep trees) and the totals. It reads metadata only.
public struct DatasetCheck {
    /// The largest file Tiergate supports: Azure Files' limit, which also bounds what a FileREST share holds.
    public static let maxFileSize: Int64 = 4 << 40
    /// Directories with more entries are reported: each scan lists and sorts a directory in memory at once.
    public static let maxDirectoryEntries = 5_000_000
    /// Items deeper than this are reported: the scan holds one descriptor per level, and the default
    /// limit of open descriptors is 1,024.
    public static let maxDepth = 250
    /// A file whose allocated bytes fall short of its size by at least this much is reported as sparse.
    public static let sparseThreshold: Int64 = 1 << 20

    /// What the walk found, in figures.
    public struct Totals: Sendable, Codable, Equatable {
        /// Directory entries examined (every name listed, the root's own excluded).
        public var entries = 0
        /// Regular files (synced or not).
        public var files = 0
        /// Directories (synced or not).
        public var directories = 0
        /// Symbolic links, sockets, FIFOs and devices.
        public var others = 0
        /// The size of every regular file, in bytes.
        public var bytes: Int64 = 0
        /// Stubs (tiered files) among the files.
        public var stubs = 0
        /// The deepest item's path, relative to the root.
        public var deepestPath = ""
        /// Its depth (1 for an item in the root).
        public var deepestDepth = 0
        /// The directory with the most entries (`.` for the root).
        public var largestDirectory = "."
        /// How many entries it has.
        public var largestDirectoryEntries = 0
        /// How long the walk took.
        public var seconds = 0.0

        /// Entries examined per second.
        public var entriesPerSecond: Double { seconds > 0 ? Double(entries) / seconds : 0 }
    }

    /// The tree's root directory.
    public let root: String

    /// A check of the tree at `root`.
    public init(root: String) {
        var root = root
        while root.count > 1 && root.hasSuffix("/") { root.removeLast() }
        self.root = root
    }

    /// Walks the tree; throws only when the root itself cannot be opened or listed.
    public func run() throws -> (findings: [CheckFinding], totals: Totals) {
        let started = Self.now()
        let fd = try Posix.open(root, O_RDONLY | O_DIRECTORY)
        var walk = Walk(readsEverything: SystemCheck.effectiveCapabilities().map { $0 & Self.readCapabilities != 0 } ?? false)
        try walk.directory(fd, "", depth: 0, root: root)
        walk.totals.seconds = Self.now() - started
        return (walk.findings, walk.totals)
    }

    /// CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH: either lets the process read every file.
    private static let readCapabilities: UInt64 = 1 << 1 | 1 << 2

    private static func now() -> Double {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
    }

    /// The walk's state: findings and totals so far.
    private struct Walk {
        var findings: [CheckFinding] = []
        var totals = Totals()
        /// The process may read any file, so no file needs an access check.
        let readsEverything: Bool
        let user = geteuid()

        init(readsEverything: Bool) {
            self.readsEverything = readsEverything
        }

        mutating func skip(_ exclusion: SyncExclusion, _ path: String) {
            findings.append(CheckFinding(CheckCode.of(exclusion, path: path), path: path, exclusion.reason))
        }

        /// Walks the directory open as `fd` (closed here) at `relative` (empty: the root) and `depth`.
        mutating func directory(_ fd: Int32, _ relative: String, depth: Int, root: String) throws {
            guard let dir = fdopendir(fd) else {
                let error = errno
                close(fd)
                if relative.isEmpty { throw PosixError("opendir", path: root, errno: error) }
                return skip(.unreadable(function: "opendir", errno: error), relative)
            }
            defer { closedir(dir) }
            let names: DirectoryNames
            do {
                names = try DirectoryNames(dir, relative: relative)
            } catch {
                if relative.isEmpty { throw PosixError("readdir", path: root, errno: error.errno) }
                return skip(.unreadable(function: "readdir", errno: error.errno), relative)
            }
            let entryCount = names.entries.count
            totals.entries += entryCount
            if entryCount > totals.largestDirectoryEntries {
                totals.largestDirectoryEntries = entryCount
                totals.largestDirectory = relative.isEmpty ? "." : relative
            }
            if entryCount > DatasetCheck.maxDirectoryEntries {
                findings.append(CheckFinding(.directoryTooLarge, path: relative.isEmpty ? "." : relative, "\(entryCount) entries"))
            }
            let directory = dirfd(dir)
            let depth = depth + 1
            for entry in names.entries {
                let path = entry.path
                var info = stat()
                let found = entry.verdict.isByKind
                    ? fstatat(directory, entry.name, &info, AT_SYMLINK_NOFOLLOW) == 0
                    : (entry.raw + [0]).withUnsafeBufferPointer { bytes in
                        bytes.withMemoryRebound(to: CChar.self) { fstatat(directory, $0.baseAddress!, &info, AT_SYMLINK_NOFOLLOW) == 0 }
                    }
                let error = errno
                switch entry.verdict {
                case .ignored:
                    continue
                case .excluded(let exclusion):
                    if found { count(info, path, depth: depth) }
                    skip(exclusion, path)
                    continue
                case .byKind:
                    break
                }
                guard found else {
                    if error != ENOENT { skip(.unreadable(function: "lstat", errno: error), path) }
                    continue
                }
                count(info, path, depth: depth)
                if depth == DatasetCheck.maxDepth + 1 {
                    findings.append(CheckFinding(.deepPath, path: path, "\(depth) levels deep (more than \(DatasetCheck.maxDepth))"))
                }
                if (info.st_mode & S_IFMT) == S_IFDIR {
                    let child = openat(directory, entry.name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                    guard child >= 0 else {
                        if errno != ENOENT { skip(.unreadable(function: "open", errno: errno), path) }
                        continue
                    }
                    var opened = stat()
                    guard fstat(child, &opened) == 0, opened.st_ino == info.st_ino, opened.st_dev == info.st_dev else {
                        close(child)
                        skip(.changedDuringScan, path)
                        continue
                    }
                    try self.directory(child, path, depth: depth, root: root)
                } else if let exclusion = SyncExclusion.byKind(info) {
                    skip(exclusion, path)
                } else {
                    file(info, entry.name, path, in: directory)
                }
            }
        }

        /// Adds an item to the totals.
        mutating func count(_ info: stat, _ path: String, depth: Int) {
            switch info.st_mode & S_IFMT {
            case S_IFDIR: totals.directories += 1
            case S_IFREG:
                totals.files += 1
                totals.bytes += Int64(info.st_size)
            default: totals.others += 1
            }
            if depth > totals.deepestDepth {
                totals.deepestDepth = depth
                totals.deepestPath = path
            }
        }

        /// The checks of a regular file that syncs.
        mutating func file(_ info: stat, _ name: String, _ path: String, in directory: Int32) {
            let size = Int64(info.st_size)
            if size > DatasetCheck.maxFileSize {
                findings.append(CheckFinding(.fileTooLarge, path: path, "\(ByteFormat.string(size)) (at most \(ByteFormat.string(DatasetCheck.maxFileSize)))"))
            }
            // Only a file the owner bits do not already let this user read is asked about: an access
            // check per file would cost a path lookup each.
            if !readsEverything && !(info.st_uid == user && info.st_mode & 0o400 != 0)
                && faccessat(directory, name, R_OK, AT_EACCESS) != 0 && errno != ENOENT {
                findings.append(CheckFinding(.unreadableFile, path: path, String(cString: strerror(errno))))
            }
            let allocated = Int64(info.st_blocks) * 512
            if size - allocated >= DatasetCheck.sparseThreshold {
                // A stub is sparse by design: its content is in the share.
                let fd = openat(directory, name, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC)
                let isStub = fd >= 0 && LocalFiles.stubMarker(fd: fd) != nil
                if fd >= 0 { close(fd) }
                if isStub {
                    totals.stubs += 1
                } else {
                    findings.append(CheckFinding(.sparseFile, path: path, "\(ByteFormat.string(size)) with \(ByteFormat.string(allocated)) allocated"))
                }
            }
        }
    }
}

extension DirectoryNames.Verdict {
    /// True when the name rules let the item through to the rules on kinds.
    var isByKind: Bool {
        if case .byKind = self { true } else { false }
    }
}
