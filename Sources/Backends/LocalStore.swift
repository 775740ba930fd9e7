import Foundation
import Glibc
import Synchronization

/// The embedded `file://` backend: one object per file under a root directory.
///
/// Writes are atomic and durable: the bytes go to an unnamed file (or, where the file system has none,
/// a temporary file) in the key's directory, which is fsynced, then linked or renamed into place, and
/// the directory is fsynced. `putIfAbsent` uses `link(2)`, which fails with EEXIST when another writer
/// won, so it is atomic across processes. Keys are validated by ``ObjectKey`` and opened with `O_NOFOLLOW`, so no key
/// reaches outside the root.
public final class LocalStore: ObjectStore {
    /// The directory holding the objects.
    public let root: String
    public var displayName: String { "file://" + root }

    /// Temporary files start with this prefix; listings never show them.
    static let temporaryPrefix = ".tg-tmp-"
    private static let counter = Atomic<UInt64>(0)

    /// Whether writes use unnamed files where the file system has them; off, they always write named
    /// temporary files, as on a file system without unnamed files (for tests of that path).
    let usesUnnamedFiles: Bool

    /// A store rooted at `root`, an absolute directory path; the directory is created by the first write.
    public convenience init(root: String) {
        self.init(root: root, usesUnnamedFiles: true)
    }

    init(root: String, usesUnnamedFiles: Bool) {
        var root = root
        while root.count > 1 && root.hasSuffix("/") { root.removeLast() }
        self.root = root
        self.usesUnnamedFiles = usesUnnamedFiles
    }

    private func path(_ key: String, _ operation: String) throws -> String {
        try ObjectKey.validate(key, store: displayName, operation: operation)
        if key.split(separator: "/").last!.hasPrefix(Self.temporaryPrefix) {
            throw StoreError(.invalidKey, store: displayName, operation: operation, key: key, cause: "names starting with '\(Self.temporaryPrefix)' are reserved")
        }
        return root + "/" + key
    }

    private func failure(_ error: PosixError, _ operation: String, _ key: String) -> StoreError {
        let code: StoreError.Code = switch error.errno {
        case ENOENT, ENOTDIR: .notFound
        case EEXIST: .alreadyExists
        case EACCES, EPERM: .unauthorized
        case EINTR, EAGAIN, EBUSY: .transient
        case ELOOP: .invalidKey
        default: .permanent
        }
        return StoreError(code, store: displayName, operation: operation, key: key, cause: "\(error)")
    }

    public func get(_ key: String, range: Range<Int64>?) async throws -> [UInt8] {
        let path = try path(key, "get")
        do {
            let fd = try Posix.open(path, O_RDONLY | O_NOFOLLOW)
            defer { close(fd) }
            var info = Glibc.stat()
            try Posix.call("fstat", path: path) { fstat(fd, &info) }
            let size = Int64(info.st_size)
            let lower = min(range?.lowerBound ?? 0, size), upper = min(range?.upperBound ?? size, size)
            let count = Int(upper - lower)
            return try [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
                initialized = try Posix.preadFully(fd, into: UnsafeMutableRawBufferPointer(buffer), offset: lower, path: path)
            }
        } catch let error as PosixError {
            throw failure(error, "get", key)
        }
    }

    /// Stores `bytes` under `key`: written and fsynced where no reader sees them, then given the key in
    /// one step, then the directory is fsynced. Where the file system has unnamed files (`O_TMPFILE`),
    /// the bytes have no name until they are complete, so a writer killed at any point leaves nothing
    /// behind; the one exception is replacing an existing object, where the unnamed file takes a
    /// temporary name just before its rename. Elsewhere a temporary file is written next to the key.
    /// Without `replacing`, an existing key fails with EEXIST: `link(2)` is the atomic compare-and-set.
    private func store(_ key: String, bytes: [UInt8], replacing: Bool, operation: String) throws {
        let path = try path(key, operation)
        let slash = path.lastIndex(of: "/")!
        let directory = String(path[..<slash]), name = String(path[path.index(after: slash)...])
        do {
            try Posix.makeDirectories(directory)
            let folder = try Posix.open(directory, O_RDONLY | O_DIRECTORY)
            defer { close(folder) }
            if usesUnnamedFiles, let file = try Posix.openUnnamed(in: folder, mode: 0o644, path: path) {
                defer { close(file) }
                try Self.write(bytes, to: file, path: path)
                if try !Posix.linkUnnamed(file, into: folder, as: name, path: path) {
                    guard replacing else { throw PosixError("link", path: path, errno: EEXIST) }
                    let temporary = Self.temporaryName()
                    guard try Posix.linkUnnamed(file, into: folder, as: temporary, path: path) else {
                        throw PosixError("link", path: directory + "/" + temporary, errno: EEXIST)
                    }
                    try Self.rename(temporary, to: name, in: folder, path: path)
                }
            } else {
                let temporary = Self.temporaryName()
                let file = try Posix.call("open", path: path) { openat(folder, temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644) }
                var renamed = false
                defer { if !renamed { unlinkat(folder, temporary, 0) } }
                do {
                    try Self.write(bytes, to: file, path: path)
                    close(file)
                } catch {
                    close(file)
                    throw error
                }
                if replacing {
                    try Self.rename(temporary, to: name, in: folder, path: path)
                    renamed = true
                } else {
                    try Posix.call("link", path: path) { linkat(folder, temporary, folder, name, 0) }
                }
            }
            try Posix.fsync(folder, path: directory)
        } catch let error as PosixError {
            throw failure(error, operation, key)
        }
    }

    /// A name for a temporary file, unique among this machine's processes.
    private static func temporaryName() -> String {
        temporaryPrefix + "\(getpid())-\(counter.wrappingAdd(1, ordering: .relaxed).newValue)"
    }

    private static func write(_ bytes: [UInt8], to file: Int32, path: String) throws {
        try bytes.withUnsafeBytes { (raw) in try Posix.writeAll(file, raw, path: path) }
        try Posix.fsync(file, path: path)
    }

    /// Renames `temporary` onto `name` in `folder`, removing `temporary` if the rename fails.
    private static func rename(_ temporary: String, to name: String, in folder: Int32, path: String) throws {
        do {
            try Posix.call("rename", path: path) { renameat(folder, temporary, folder, name) }
        } catch {
            unlinkat(folder, temporary, 0)
            throw error
        }
    }

    public func put(_ key: String, bytes: [UInt8]) async throws {
        try store(key, bytes: bytes, replacing: true, operation: "put")
    }

    public func putIfAbsent(_ key: String, bytes: [UInt8]) async throws {
        try store(key, bytes: bytes, replacing: false, operation: "putIfAbsent")
    }

    /// The temporary files of writers stopped mid-write (only a file system without unnamed files has
    /// them, and one killed between naming and renaming), found by a walk of the whole store.
    public func removeAbandonedWrites(olderThan age: Double) async throws -> Int {
        let before = Date().timeIntervalSince1970 - age
        var removed = 0
        func walk(_ directory: String) throws {
            for (name, isDirectory) in try Posix.listDirectory(directory) {
                let path = directory + "/" + name
                if isDirectory {
                    try walk(path)
                } else if name.hasPrefix(Self.temporaryPrefix), let info = try Posix.status(path, followLinks: false),
                          Double(info.st_mtim.tv_sec) < before, unlink(path) == 0 {
                    removed += 1
                }
            }
        }
        do {
            guard try Posix.status(root) != nil else { return 0 }
            try walk(root)
        } catch let error as PosixError {
            throw failure(error, "removeAbandonedWrites", "")
        }
        return removed
    }

    public func head(_ key: String) async throws -> ObjectInfo {
        let path = try path(key, "head")
        do {
            guard let info = try Posix.status(path, followLinks: false), (info.st_mode & S_IFMT) == S_IFREG else {
                throw StoreError(.notFound, store: displayName, operation: "head", key: key, cause: "no such object")
            }
            return ObjectInfo(key: key, size: Int64(info.st_size))
        } catch let error as PosixError {
            throw failure(error, "head", key)
        }
    }

    public func list(prefix: String, startAfter: String?, limit: Int) async throws -> ListPage {
        // Walk only the directory that holds the prefix's last complete component.
        let base = prefix.lastIndex(of: "/").map { String(prefix[..<$0]) } ?? ""
        var keys: [String] = []
        func walk(_ relative: String) throws {
            let directory = relative.isEmpty ? root : root + "/" + relative
            for (name, isDirectory) in try Posix.listDirectory(directory) {
                let key = relative.isEmpty ? name : relative + "/" + name
                if isDirectory {
                    if prefix.hasPrefix(key + "/") || key.hasPrefix(prefix) || (key + "/").hasPrefix(prefix) { try walk(key) }
                } else if !name.hasPrefix(Self.temporaryPrefix), key.hasPrefix(prefix),
                          startAfter.map({ $0.utf8.lexicographicallyPrecedes(key.utf8) }) ?? true {
                    keys.append(key)
                }
            }
        }
        do {
            try walk(base)
        } catch let error as PosixError where error.errno == ENOENT || error.errno == ENOTDIR {
            return ListPage(objects: [], isTruncated: false)
        } catch let error as PosixError {
            throw failure(error, "list", prefix)
        }
        keys.sort { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        var objects: [ObjectInfo] = []
        for key in keys.prefix(limit) {
            if let info = try? Posix.status(root + "/" + key, followLinks: false) {
                let modified = Date(timeIntervalSince1970: Double(info.st_mtim.tv_sec) + Double(info.st_mtim.tv_nsec) / 1e9)
                objects.append(ObjectInfo(key: key, size: Int64(info.st_size), modified: modified))
            }
        }
        return ListPage(objects: objects, isTruncated: keys.count > limit)
    }

    public func delete(_ key: String) async throws {
        let path = try path(key, "delete")
        if unlink(path) != 0 && errno != ENOENT {
            throw failure(PosixError("unlink", path: path, errno: errno), "delete", key)
        }
    }
}
