import Backends
import Glibc
import CLinux
import Hashing

/// Reading local files for sync decisions: stat, content fingerprints, ACLs and stub markers. Every
/// path is relative to an endpoint root held open as a descriptor and is resolved beneath it through
/// ``SafePath`` without following symlinks, so nothing outside the endpoint is ever read.
enum LocalFiles {
    /// The item at `path` as a ``LocalItem``, or nil when nothing (or something unsyncable) is there.
    static func item(rootFD: Int32, path: String) -> LocalItem? {
        guard let info = try? status(rootFD: rootFD, path: path) else { return nil }
        let type = info.st_mode & S_IFMT
        guard type == S_IFREG || type == S_IFDIR else { return nil }
        return LocalItem(path: path, info)
    }

    /// ``item(rootFD:path:)`` for callers that hold no descriptor of the root.
    static func item(root: String, path: String) -> LocalItem? {
        guard let rootFD = try? Posix.open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC) else { return nil }
        defer { close(rootFD) }
        return item(rootFD: rootFD, path: path)
    }

    /// Opens the item at `path` beneath the endpoint `root` without following any symlink on the way
    /// (see ``SafePath/open(rootFD:path:flags:)``), for callers that hold no descriptor of the root.
    static func open(root: String, path: String, flags: Int32) throws -> Int32 {
        let rootFD = try Posix.open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        defer { close(rootFD) }
        return try SafePath.open(rootFD: rootFD, path: path, flags: flags)
    }

    /// True when something of any kind is at `path`, or something in the way of it (a file or symlink
    /// where a folder should be): only a definite "no such item" is absence.
    static func exists(rootFD: Int32, path: String) -> Bool {
        var lookup = Lookup(rootFD: rootFD)
        defer { lookup.close() }
        return lookup.exists(path)
    }

    /// ``exists(rootFD:path:)`` for many paths, folder by folder: a folder is opened once for the paths
    /// in it that come one after another, and a folder that does not exist holds nothing (a new
    /// endpoint's download asks this of every path).
    struct Lookup {
        let rootFD: Int32
        /// The folder of the last path asked about, and the folder open (-1 when it does not exist);
        /// `blocked`: something else is in its way.
        private var folder: Substring?
        private var folderFD: Int32 = -1
        private var blocked = false

        init(rootFD: Int32) { self.rootFD = rootFD }

        mutating func exists(_ path: String) -> Bool {
            let slash = path.lastIndex(of: "/")
            let folderPath = slash.map { path[..<$0] } ?? ""
            if folderPath != folder {
                close()
                folder = folderPath
                do {
                    folderFD = try SafePath.openParent(rootFD: rootFD, path: path, create: false).fd
                } catch let error as PosixError where error.errno == ENOENT {
                    folderFD = -1
                } catch {
                    blocked = true
                }
            }
            if blocked { return true }
            guard folderFD >= 0 else { return false }
            let name = slash.map { String(path[path.index(after: $0)...]) } ?? path
            var info = stat()
            return fstatat(folderFD, name, &info, AT_SYMLINK_NOFOLLOW) == 0 || errno != ENOENT
        }

        /// Closes the folder open, if any.
        mutating func close() {
            if folderFD >= 0 { Glibc.close(folderFD) }
            (folder, folderFD, blocked) = (nil, -1, false)
        }
    }

    /// `lstat` of `path` beneath the root; nil when it (or one of its folders) does not exist.
    static func status(rootFD: Int32, path: String) throws -> stat? {
        let parent: (fd: Int32, name: String)
        do {
            parent = try SafePath.openParent(rootFD: rootFD, path: path, create: false)
        } catch let error as PosixError where error.errno == ENOENT {
            return nil
        }
        defer { close(parent.fd) }
        var info = stat()
        guard fstatat(parent.fd, parent.name, &info, AT_SYMLINK_NOFOLLOW) == 0 else {
            if errno == ENOENT { return nil }
            throw PosixError("lstat", path: path, errno: errno)
        }
        return info
    }

    /// xxh3-128 of a file's content, streamed in 1 MiB reads. A file with stub markers is refused: its
    /// holes are not content.
    static func fingerprint(rootFD: Int32, path: String) throws -> Fingerprint128 {
        let fd = try SafePath.open(rootFD: rootFD, path: path, flags: O_RDONLY | O_NONBLOCK)
        defer { close(fd) }
        if stubMarker(fd: fd) != nil { throw FileReader.UnrecordedStub(path: path) }
        return try fingerprint(fd: fd, path: path)
    }

    /// The content fingerprint of the open file `fd`, read from its start (`path` names it in errors).
    static func fingerprint(fd: Int32, path: String) throws -> Fingerprint128 {
        let hash = XXH3()
        // A buffer the size of the file (up to 1 MiB), not zeroed: most files are small, and clearing a
        // megabyte for each was most of a pass's time.
        var info = stat()
        let size = fstat(fd, &info) == 0 ? Int(info.st_size) : 1 << 20
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(4096, min(1 << 20, size + 1)), alignment: 16)
        defer { buffer.deallocate() }
        var offset: off_t = 0
        while true {
            let count = try Posix.call("pread", path: path) { pread(fd, buffer.baseAddress, buffer.count, offset) }
            if count == 0 { break }
            offset += off_t(count)
            hash.update(UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
        }
        return hash.digest128()
    }

    /// The POSIX ACL xattrs of the item at `path`, base64, or nil when it has none.
    static func acl(rootFD: Int32, path: String) -> [String: String]? {
        guard let fd = try? SafePath.open(rootFD: rootFD, path: path, flags: O_RDONLY | O_NONBLOCK) else { return nil }
        defer { close(fd) }
        return acl(fd: fd)
    }

    /// The POSIX ACLs of the file open as `fd`, base64-encoded by xattr name; nil when it has none.
    static func acl(fd: Int32) -> [String: String]? {
        var result: [String: String] = [:]
        for name in aclNames {
            let size = fgetxattr(fd, name, nil, 0)
            guard size > 0 else { continue }
            var buffer = [UInt8](repeating: 0, count: size)
            let read = fgetxattr(fd, name, &buffer, size)
            if read > 0 { result[name] = Base64.encode(Array(buffer.prefix(read))) }
        }
        return result.isEmpty ? nil : result
    }

    /// The stub marker of the file at `path`, if it carries one.
    static func stubMarker(rootFD: Int32, path: String) -> StubFile.State? {
        guard let fd = try? SafePath.open(rootFD: rootFD, path: path, flags: O_RDONLY | O_NONBLOCK) else { return nil }
        defer { close(fd) }
        return stubMarker(fd: fd)
    }

    /// The origin the markers of the stub at `path` name (nil for a file that is not a whole stub).
    static func stubOrigin(rootFD: Int32, path: String) -> StubFile.Origin? {
        guard let fd = try? SafePath.open(rootFD: rootFD, path: path, flags: O_RDONLY | O_NONBLOCK) else { return nil }
        defer { close(fd) }
        guard stubMarker(fd: fd) == .tiered else { return nil }
        return try? StubFile(descriptor: fd, path: path).origin()
    }

    /// The stub marker of the open file `fd`, if it carries one.
    static func stubMarker(fd: Int32) -> StubFile.State? {
        var buffer = [UInt8](repeating: 0, count: 16)
        let count = fgetxattr(fd, StubFile.stateAttribute, &buffer, buffer.count)
        guard count > 0 else { return nil }
        return StubFile.State(rawValue: String(decoding: buffer.prefix(count), as: UTF8.self))
    }

    /// Applies POSIX ACL xattrs to an open file or directory; when `replacing`, removes those `acl` does not
    /// name (a file made for the content has none to remove).
    static func applyACL(_ acl: [String: String]?, fd: Int32, replacing: Bool = false) {
        for (name, value) in acl ?? [:] where aclNames.contains(name) {
            guard let bytes = Base64.decode(value) else { continue }
            _ = fsetxattr(fd, name, bytes, bytes.count, 0)
        }
        guard replacing else { return }
        for name in aclNames where acl?[name] == nil { _ = fremovexattr(fd, name) }
    }

    /// Whether new items in the folder open as `fd` inherit ACLs (it has a default ACL): an item made
    /// there with the share's ACLs must then lose what the share does not name.
    static func passesOnACLs(folder fd: Int32) -> Bool {
        fgetxattr(fd, "system.posix_acl_default", nil, 0) > 0
    }

    /// The xattrs that hold POSIX ACLs: the access ACL, and a folder's default ACL.
    static let aclNames = ["system.posix_acl_access", "system.posix_acl_default"]
}

/// Standard base64 without Foundation's Data round trips.
enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    static func encode(_ bytes: [UInt8]) -> String {
        var out = [UInt8]()
        var index = 0
        while index < bytes.count {
            let a = bytes[index], b = index + 1 < bytes.count ? bytes[index + 1] : 0, c = index + 2 < bytes.count ? bytes[index + 2] : 0
            out.append(alphabet[Int(a >> 2)])
            out.append(alphabet[Int((a & 3) << 4 | b >> 4)])
            out.append(index + 1 < bytes.count ? alphabet[Int((b & 15) << 2 | c >> 6)] : UInt8(ascii: "="))
            out.append(index + 2 < bytes.count ? alphabet[Int(c & 63)] : UInt8(ascii: "="))
            index += 3
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func decode(_ text: String) -> [UInt8]? {
        var values: [UInt8] = []
        for c in text.utf8 where c != UInt8(ascii: "=") {
            guard let value = alphabet.firstIndex(of: c) else { return nil }
            values.append(UInt8(value))
        }
        var out: [UInt8] = []
        var index = 0
        while index + 1 < values.count {
            out.append(values[index] << 2 | values[index + 1] >> 4)
            if index + 2 < values.count { out.append((values[index + 1] & 15) << 4 | values[index + 2] >> 2) }
            if index + 3 < values.count { out.append((values[index + 2] & 3) << 6 | values[index + 3]) }
            index += 4
        }
        return out
    }
}
