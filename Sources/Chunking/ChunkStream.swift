import Hashing

/// One content-defined chunk of an input.
public struct Chunk: Sendable, Hashable {
    /// Where the chunk starts in the input.
    public let offset: Int
    /// The chunk's length in bytes.
    public let length: Int
    /// SHA-256 of the chunk's bytes: its id in a cloud share.
    public let id: Digest32

    /// A chunk record.
    public init(offset: Int, length: Int, id: Digest32) {
        self.offset = offset
        self.length = length
        self.id = id
    }
}

/// Cuts a byte stream into FastCDC chunks without holding more than one buffer of it.
///
/// The module does no I/O: the caller supplies `read`, which fills as much of the buffer it is given as
/// it can and returns the byte count, 0 at the end of the input (a file descriptor's `read(2)` loop, a
/// network body, an array). The stream keeps at least `maxSize` bytes ahead of each cut, refilling by
/// moving the unread tail to the front, so cut points do not depend on how `read` splits the input.
///
/// Not thread-safe: one stream belongs to one task at a time.
public final class ChunkStream {
    /// The chunker in use.
    public let chunker: FastCDC
    private let read: (UnsafeMutableRawBufferPointer) throws -> Int
    private let buffer: UnsafeMutableRawBufferPointer
    /// Unread input is `buffer[start..<end]`.
    private var start = 0
    private var end = 0
    /// Input offset of `buffer[start]`.
    private var offset = 0
    private var finished = false

    /// The default buffer: large reads amortize system calls and leave room for two maximal chunks.
    public static let defaultBufferSize = 8 << 20

    /// A stream that cuts what `read` supplies with `parameters`.
    ///
    /// The buffer is `bufferSize` bytes, raised to twice the maximum chunk size when smaller.
    public init(parameters: ChunkingParameters = .standard, bufferSize: Int = ChunkStream.defaultBufferSize,
                read: @escaping (UnsafeMutableRawBufferPointer) throws -> Int) {
        chunker = FastCDC(parameters)
        self.read = read
        buffer = .allocate(byteCount: max(bufferSize, 2 * parameters.maxSize), alignment: 64)
    }

    deinit { buffer.deallocate() }

    /// Cuts the next chunk and calls `body` with it and its bytes; nil at the end of the input.
    ///
    /// The bytes are valid only inside `body` (copy them to keep them). Errors from `read` and `body`
    /// propagate; after a `read` error the stream should be dropped.
    public func next<Result>(_ body: (Chunk, UnsafeRawBufferPointer) throws -> Result) throws -> Result? {
        try fill()
        guard start < end else { return nil }
        let available = UnsafeRawBufferPointer(rebasing: buffer[start..<end])
        let length = chunker.cut(available)
        let bytes = UnsafeRawBufferPointer(rebasing: available[..<length])
        let chunk = Chunk(offset: offset, length: length, id: SHA256.hash(bytes))
        start += length
        offset += length
        return try body(chunk, bytes)
    }

    /// The next chunk's record without its bytes; nil at the end of the input.
    public func next() throws -> Chunk? {
        try next { chunk, _ in chunk }
    }

    /// Calls `body` for every remaining chunk, in order, with bytes valid only during the call.
    public func forEach(_ body: (Chunk, UnsafeRawBufferPointer) throws -> Void) throws {
        while try next(body) != nil {}
    }

    /// Reads until `maxSize` bytes are buffered past `start` or the input ends.
    private func fill() throws {
        let wanted = chunker.parameters.maxSize
        while end - start < wanted && !finished {
            if end == buffer.count {
                // The buffer holds at least two maximal chunks, so after this move there is room to read.
                let unread = end - start
                if unread > 0 {
                    buffer.baseAddress!.copyMemory(from: buffer.baseAddress! + start, byteCount: unread)
                }
                start = 0
                end = unread
            }
            let room = UnsafeMutableRawBufferPointer(rebasing: buffer[end...])
            let count = try read(room)
            precondition(count >= 0 && count <= room.count, "ChunkStream read returned \(count) for \(room.count) bytes of room")
            if count == 0 { finished = true } else { end += count }
        }
    }
}

extension FastCDC {
    /// All chunks of an in-memory input, with their ids.
    public func chunks(of bytes: UnsafeRawBufferPointer) -> [Chunk] {
        var chunks: [Chunk] = []
        var offset = 0
        while offset < bytes.count {
            let rest = UnsafeRawBufferPointer(rebasing: bytes[offset...])
            let length = cut(rest)
            let id = SHA256.hash(UnsafeRawBufferPointer(rebasing: rest[..<length]))
            chunks.append(Chunk(offset: offset, length: length, id: id))
            offset += length
        }
        return chunks
    }

    /// All chunks of an in-memory input, with their ids.
    public func chunks(of bytes: [UInt8]) -> [Chunk] {
        bytes.withUnsafeBytes { chunks(of: $0) }
    }
}
