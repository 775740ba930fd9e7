import Backends
import Glibc

/// One item found under a directory tree.
public struct LocalItem: Sendable {
    /// Path relative to the tree root, `/`-separated.
    public var path: String
    /// File or directory.
    public var isDirectory: Bool
    /// Size in bytes.
    public var size: Int64
    /// Permission bits.
    public var mode: UInt32
    /// Modification time in nanoseconds since the epoch.
    public var mtime: Int64
    /// Status change time in nanoseconds since the epoch.
    public var ctime: Int64
    /// Inode number.
    public var inode: UInt64
    /// Owner.
    public var uid: UInt32
    /// Group.
    public var gid: UInt32

    init(path: String, _ info: stat) {
        self.path = path
        isDirectory = (info.st_mode & S_IFMT) == S_IFDIR
        size = Int64(info.st_size)
        mode = UInt32(info.st_mode & 0o7777)
        mtime = Int64(info.st_mtim.tv_sec) * 1_000_000_000 + Int64(info.st_mtim.tv_nsec)
        ctime = Int64(info.st_ctim.tv_sec) * 1_000_000_000 + Int64(info.st_ctim.tv_nsec)
        inode = UInt64(info.st_ino)
        uid = info.st_uid
        gid = info.st_gid
    }
}

/// An item that is not synced, with the reason (reported, never dropped silently).
public struct SkippedItem: Sendable, Codable, Hashable {
    /// Path relative to the tree root (non-UTF-8 bytes shown as U+FFFD).
    public var path: String
    /// Why it is skipped.
    public var reason: String
    /// True when the name equals a synced one but for Unicode normalization: to the share it is that
    /// item's name, so it must not stand for an unknown item of its own.
    public var isNormalizationTwin = false
    /// The item's inode, when it was stat'ed: a synced item renamed to a name that is not synced (not
    /// UTF-8) or hard-linked is still here, so its old path must not be taken for a delete.
    public var inode: UInt64?

    /// True when the path only shows the name (bytes that are not UTF-8 read as U+FFFD): it may equal a
    /// synced item's real path, so it says nothing of the item there.
    public var pathIsLossy: Bool { reason == SyncExclusion.nameNotUTF8.reason }
}

/// Walks a local directory tree from the root's descriptor, one directory descriptor per level opened
/// with `O_NOFOLLOW`, so no symlink (even one swapped in during the walk) leads it outside the tree and
/// no path is ever longer than one name. Applies ``SkipRules`` and the rules on file kinds (symlinks,
/// hard links, sockets, FIFOs and devices are never synced). What cannot be read or stat'ed is
/// reported as skipped: it is unknown, never absent.
public struct TreeWalker: Sendable {
    /// The tree's root directory.
    public let root: String

    /// A walker over `root`.
    public init(root: String) {
        var root = root
        while root.count > 1 && root.hasSuffix("/") { root.removeLast() }
        self.root = root
    }

    /// Every syncable item (directories before their contents) and every skipped item.
    public func walk() throws -> (items: [LocalItem], skipped: [SkippedItem]) {
        var items: [LocalItem] = []
        var skipped: [SkippedItem] = []
        try walk(inPathOrder: false, skipped: &skipped) { items.append($0) }
        return (items, skipped)
    }

    /// Every syncable item, handed to `take` one by one, in the order of their paths' UTF-8 bytes (the
    /// local database's order: a folder's items come after a sibling named like it plus a character
    /// below `/`, such as `a-b` before `a/x`); every skipped item into `skipped`. Nothing else is held.
    public func walkInPathOrder(skipped: inout [SkippedItem], _ take: (LocalItem) throws -> Void) throws {
        try walk(inPathOrder: true, skipped: &skipped, take)
    }

    private func walk(inPathOrder: Bool, skipped: inout [SkippedItem], _ take: (LocalItem) throws -> Void) throws {
        let fd = try Posix.open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        try walk(fd, "", inPathOrder: inPathOrder, take, skipped: &skipped)
    }

    /// Walks the directory open as `fd` (closed here) at relative path `relative`.
    private func walk(_ fd: Int32, _ relative: String, inPathOrder: Bool, _ take: (LocalItem) throws -> Void,
                      skipped: inout [SkippedItem]) throws {
        guard let dir = fdopendir(fd) else {
            let error = PosixError("opendir", path: relative.isEmpty ? root : relative, errno: errno)
            close(fd)
            if relative.isEmpty { throw error }
            skipped.append(SkippedItem(path: relative, reason: SyncExclusion.unreadable(function: "opendir", errno: error.errno).reason))
            return
        }
        defer { closedir(dir) }
        let names: DirectoryNames
        do {
            names = try DirectoryNames(dir, relative: relative)
        } catch {
            // A directory that cannot be listed whole is unknown: none of its items may look vanished.
            if relative.isEmpty { throw PosixError("readdir", path: root, errno: error.errno) }
            skipped.append(SkippedItem(path: relative, reason: SyncExclusion.unreadable(function: "readdir", errno: error.errno).reason))
            return
        }
        let directory = dirfd(dir)
        // In path order a folder's contents come where its name followed by `/` sorts among its
        // siblings' names (sorted by their bytes): the folders opened and not yet walked, by that key.
        var waiting: [(key: [UInt8], fd: Int32, path: String)] = []
        defer { for folder in waiting { close(folder.fd) } }
        for entry in names.entries {
            while let first = waiting.first, first.key.lexicographicallyPrecedes(entry.raw) {
                waiting.removeFirst()
                try walk(first.fd, first.path, inPathOrder: true, take, skipped: &skipped)
            }
            guard let child = try visit(entry, in: directory, opening: true, take, skipped: &skipped) else { continue }
            if inPathOrder {
                let key = entry.raw + [UInt8(ascii: "/")]
                let index = waiting.firstIndex { key.lexicographicallyPrecedes($0.key) } ?? waiting.count
                waiting.insert((key, child, entry.path), at: index)
            } else {
                try walk(child, entry.path, inPathOrder: false, take, skipped: &skipped)
            }
        }
        while !waiting.isEmpty {
            let first = waiting.removeFirst()
            try walk(first.fd, first.path, inPathOrder: true, take, skipped: &skipped)
        }
    }

    /// The items at `changes`' paths and everything beneath its folders walked whole, under the same
    /// rules as ``walk()``: each path is looked up in a listing of its folder (so the rules on sibling
    /// names apply), never through a symlink. A path whose folder is gone is absent; a path whose
    /// folder cannot be read is reported as skipped (unknown, never absent).
    public func walk(_ changes: ChangeSet) throws -> (items: [LocalItem], skipped: [SkippedItem]) {
        let rootFD = try Posix.open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        defer { close(rootFD) }
        var byFolder: [String: Set<String>] = [:]
        for path in changes.roots {
            let folder = path.lastIndex(of: "/").map { String(path[..<$0]) } ?? ""
            byFolder[folder, default: []].insert(path)
        }
        var items: [LocalItem] = []
        var skipped: [SkippedItem] = []
        // Folders in path order: a folder's own item comes before the items beneath it.
        for (folder, wanted) in byFolder.sorted(by: { $0.key < $1.key }) {
            let fd: Int32
            do {
                fd = folder.isEmpty ? try Posix.call("dup", path: root) { dup(rootFD) }
                    : try SafePath.open(rootFD: rootFD, path: folder, flags: O_RDONLY | O_DIRECTORY)
            } catch let error as PosixError {
                // Gone, or something that is not a folder in its place (reported where it is listed).
                if error.errno == ENOENT || error.errno == ENOTDIR || error.errno == ELOOP { continue }
                let reason = SyncExclusion.unreadable(function: "open", errno: error.errno).reason
                skipped += wanted.map { SkippedItem(path: $0, reason: reason) }
                continue
            }
            guard let dir = fdopendir(fd) else {
                let reason = SyncExclusion.unreadable(function: "opendir", errno: errno).reason
                close(fd)
                skipped += wanted.map { SkippedItem(path: $0, reason: reason) }
                continue
            }
            defer { closedir(dir) }
            let names: DirectoryNames
            do {
                names = try DirectoryNames(dir, relative: folder)
            } catch {
                let reason = SyncExclusion.unreadable(function: "readdir", errno: error.errno).reason
                skipped += wanted.map { SkippedItem(path: $0, reason: reason) }
                continue
            }
            for entry in names.entries where wanted.contains(entry.path) {
                let opening = changes.subtrees.contains(entry.path)
                if let child = try visit(entry, in: dirfd(dir), opening: opening, { items.append($0) }, skipped: &skipped) {
                    try walk(child, entry.path, inPathOrder: false, { items.append($0) }, skipped: &skipped)
                }
            }
        }
        return (items, skipped)
    }

    /// Takes one entry of the folder open as `directory`: an item (handed to `take`), a skipped item, or
    /// nothing. A folder is returned open when `opening`, for its contents to be walked (the caller
    /// closes it), else closed.
    private func visit(_ entry: DirectoryNames.Entry, in directory: Int32, opening: Bool, _ take: (LocalItem) throws -> Void,
                       skipped: inout [SkippedItem]) throws -> Int32? {
        let path = entry.path
        switch entry.verdict {
        case .ignored:
            return nil
        case .excluded(.nameNotUTF8):
            var info = stat()
            let found = (entry.raw + [0]).withUnsafeBufferPointer { bytes in
                bytes.withMemoryRebound(to: CChar.self) { fstatat(directory, $0.baseAddress!, &info, AT_SYMLINK_NOFOLLOW) == 0 }
            }
            skipped.append(SkippedItem(path: path, reason: SyncExclusion.nameNotUTF8.reason, inode: found ? UInt64(info.st_ino) : nil))
            return nil
        case .excluded(let exclusion):
            skipped.append(SkippedItem(path: path, reason: exclusion.reason, isNormalizationTwin: exclusion.isNormalizationTwin))
            return nil
        case .byKind:
            break
        }
        let name = entry.name
        var info = stat()
        guard fstatat(directory, name, &info, AT_SYMLINK_NOFOLLOW) == 0 else {
            if errno != ENOENT { skipped.append(SkippedItem(path: path, reason: SyncExclusion.unreadable(function: "lstat", errno: errno).reason)) }
            return nil
        }
        if (info.st_mode & S_IFMT) == S_IFDIR {
            let child = openat(directory, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard child >= 0 else {
                if errno != ENOENT { skipped.append(SkippedItem(path: path, reason: SyncExclusion.unreadable(function: "open", errno: errno).reason)) }
                return nil
            }
            var opened = stat()
            // The name may have been swapped between the stat and the open: record what was opened.
            guard fstat(child, &opened) == 0, opened.st_ino == info.st_ino, opened.st_dev == info.st_dev else {
                close(child)
                skipped.append(SkippedItem(path: path, reason: SyncExclusion.changedDuringScan.reason))
                return nil
            }
            do {
                try take(LocalItem(path: path, opened))
            } catch {
                close(child)
                throw error
            }
            if opening { return child }
            close(child)
        } else if let exclusion = SyncExclusion.byKind(info) {
            // A hard-linked file keeps its inode: its old path must not be taken for a delete.
            let inode: UInt64? = if case .hardLink = exclusion { UInt64(info.st_ino) } else { nil }
            skipped.append(SkippedItem(path: path, reason: exclusion.reason, inode: inode))
        } else {
            try take(LocalItem(path: path, info))
        }
        return nil
    }
}
