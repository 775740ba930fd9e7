import Backends
import Chunking
import CloudShare
import Glibc
import Hashing

/// The content of one local file as stored in a share: its chunks and its fingerprint.
public struct StoredContent: Sendable {
    /// The chunks, in order.
    public var chunks: [ChunkRef]
    /// xxh3-128 of the whole content.
    public var fingerprint: Fingerprint128
    /// Bytes read.
    public var size: Int64
    /// Status at the end of the read (size, mtime, ctime, inode), which the content matches.
    public var item: LocalItem
    /// The POSIX ACLs of the file read (from its descriptor), when it has any.
    public var acl: [String: String]?
}

/// Reading a local file into a share: FastCDC over a sliding buffer, SHA-256 per chunk, the new chunks
/// handed to a ``PackUploader``. The file is never loaded whole.
public enum FileReader {
    /// A file changed while it was read; the caller retries later rather than commit torn content.
    public struct ChangedWhileReading: Error, CustomStringConvertible {
        /// The file.
        public var path: String
        public var description: String { "'\(path)' changed while it was read; it will be retried" }
    }

    /// The file carries stub markers the database does not know (a crash between making a stub and
    /// recording it): it holds holes, not content, and is never read as data.
    public struct UnrecordedStub: Error, CustomStringConvertible {
        /// The file.
        public var path: String
        public var description: String { "'\(path)' is a stub the database does not know (left by an interrupted pass); it is left alone until the share's version is applied again" }
    }

    /// Chunks the file at `relative` beneath the directory `rootFD` into `uploader`. The file is opened
    /// without following symlinks anywhere on its path, and must be the regular file `item` the scan
    /// saw (same inode), so a name swapped meanwhile can never make it read something else.
    public static func store(rootFD: Int32, item scanned: LocalItem, chunker: FastCDC, uploader: PackUploader) async throws -> StoredContent {
        let relative = scanned.path, path = relative
        let fd = try SafePath.open(rootFD: rootFD, path: relative, flags: O_RDONLY | O_NONBLOCK)
        defer { close(fd) }
        var before = stat()
        try Posix.call("fstat", path: path) { fstat(fd, &before) }
        guard (before.st_mode & S_IFMT) == S_IFREG, UInt64(before.st_ino) == scanned.inode else { throw ChangedWhileReading(path: relative) }
        if LocalFiles.stubMarker(fd: fd) != nil { throw UnrecordedStub(path: relative) }
        let fingerprint = XXH3()
        var chunks: [ChunkRef] = []
        var offset: Int64 = 0

        if Int64(before.st_size) <= Int64(chunker.parameters.minSize) {
            // Small file: one chunk, one read (the common case for many-small-file trees).
            var bytes = [UInt8](repeating: 0, count: Int(before.st_size) + 1)
            let count = try bytes.withUnsafeMutableBytes { try Posix.preadFully(fd, into: $0, offset: 0, path: path) }
            guard count == Int(before.st_size) else { throw ChangedWhileReading(path: relative) }
            bytes.removeLast()
            fingerprint.update(bytes)
            if !bytes.isEmpty {
                let id = SHA256.hash(bytes)
                try await uploader.add(id: id, bytes: bytes)
                chunks.append(ChunkRef(id: id, length: UInt32(bytes.count)))
            }
            offset = Int64(count)
        } else {
            // The descriptor is fresh, so sequential read(2) starts at offset 0.
            let stream = ChunkStream(parameters: chunker.parameters) { buffer in
                try Posix.call("read", path: path) { read(fd, buffer.baseAddress, buffer.count) }
            }
            while let (chunk, bytes) = try stream.next({ chunk, raw in (chunk, Array(raw)) }) {
                fingerprint.update(bytes)
                try await uploader.add(id: chunk.id, bytes: bytes)
                chunks.append(ChunkRef(id: chunk.id, length: UInt32(chunk.length)))
                offset += Int64(chunk.length)
            }
        }
        var after = stat()
        try Posix.call("fstat", path: path) { fstat(fd, &after) }
        guard offset == Int64(after.st_size), before.st_mtim.tv_sec == after.st_mtim.tv_sec,
              before.st_mtim.tv_nsec == after.st_mtim.tv_nsec, before.st_ctim.tv_nsec == after.st_ctim.tv_nsec else {
            throw ChangedWhileReading(path: relative)
        }
        return StoredContent(chunks: chunks, fingerprint: fingerprint.digest128(), size: offset, item: LocalItem(path: relative, after),
                             acl: LocalFiles.acl(fd: fd))
    }
}
