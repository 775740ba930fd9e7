import Glibc

/// Secret files (credentials): read only when private to their owner, through the descriptor checked.
enum SecretFile {
    /// The contents of a secret file, which must be a regular file of the current user that nobody else
    /// can read, of at most `limit` bytes.
    static func read(_ path: String, store: String, limit: Int) throws -> String {
        func fail(_ why: String) -> StoreError {
            StoreError(.unauthorized, store: store, operation: "open", key: "", cause: "credentials file '\(path)': \(why)")
        }
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw fail("cannot open: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        // Check the descriptor that is read, not the path, so the file cannot be swapped in between.
        var info = Glibc.stat()
        guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { throw fail("not a regular file") }
        if info.st_mode & 0o077 != 0 {
            throw fail(String(format: "mode %03o lets other users read it; run chmod 600 on it", info.st_mode & 0o777))
        }
        if info.st_uid != geteuid() { throw fail("it belongs to another user (uid \(info.st_uid))") }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw fail("cannot read: \(String(cString: strerror(errno)))")
            }
            if count == 0 { break }
            bytes += buffer[..<count]
            if bytes.count > limit { throw fail("larger than \(limit >> 10) KiB") }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
