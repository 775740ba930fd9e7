import Backends
import CLinux
import CloudShare
import Foundation
import Glibc
import Hashing
import Synchronization

/// Brings stub content back from the cloud share: the ranges a reader needs (partial recall) or the
/// whole file. Only holes are written, so bytes already local (recalled earlier, or written since) are
/// never overwritten; every chunk is verified by SHA-256 before a byte of it is written.
public final class RecallEngine: Sendable {
    let connection: ShareConnection
    let state: LocalState
    let endpoint: EndpointConfig

    /// Recall figures since start, for `status`.
    public struct Figures: Sendable, Codable, Equatable {
        /// Recalls that succeeded (partial or full) and fetched data from the cloud.
        public var recalls = 0
        /// Recalls that failed (reader got an I/O error).
        public var failures = 0
        /// Bytes written by recalls.
        public var bytes: Int64 = 0
        /// Reads the daemon saw that local data answered: a recalled range read again, a full file
        /// read through the mount.
        public var hits = 0

        /// Share of the reads the daemon saw that local data answered, nil before any.
        public var hitRate: Double? {
            let total = hits + recalls + failures
            return total == 0 ? nil : Double(hits) / Double(total)
        }

        public init() {}

        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            recalls = try container.decode(Int.self, forKey: .recalls)
            failures = try container.decode(Int.self, forKey: .failures)
            bytes = try container.decode(Int64.self, forKey: .bytes)
            hits = try container.decodeIfPresent(Int.self, forKey: .hits) ?? 0
        }
    }

    private let figures = Mutex(Figures())
    /// While the volume is low on space, recalled files are not kept: their paths wait here until the
    /// daemon tiers them again (once closed).
    private let unkept = Mutex<(active: Bool, paths: Set<String>)>((false, []))

    /// A recall engine for `endpoint`.
    public convenience init(share: CloudShare, state: LocalState, endpoint: EndpointConfig) {
        self.init(connection: ShareConnection(share, name: share.name), state: state, endpoint: endpoint)
    }

    /// A recall engine for `endpoint` that fetches through `connection` (recalls fail while it is empty).
    public init(connection: ShareConnection, state: LocalState, endpoint: EndpointConfig) {
        self.connection = connection
        self.state = state
        self.endpoint = endpoint
    }

    /// Figures since start.
    public var currentFigures: Figures { figures.withLock { $0 } }

    // MARK: Layouts

    /// The chunk list of a stub, kept locally when the stub was made (chunks family, by file id).
    public func layout(fileID: String) throws -> [ChunkRef]? {
        guard let bytes = try state.database.get(LocalState.key(endpoint.id, fileID), in: state.family(.chunks)) else { return nil }
        return Self.decodeLayout(bytes)
    }

    static func encodeLayout(_ chunks: [ChunkRef]) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(chunks.count * 36)
        for chunk in chunks {
            chunk.id.withUnsafeBytes { out += $0 }
            withUnsafeBytes(of: chunk.length.littleEndian) { out += $0 }
        }
        return out
    }

    static func decodeLayout(_ bytes: [UInt8]) -> [ChunkRef]? {
        guard bytes.count % 36 == 0 else { return nil }
        return stride(from: 0, to: bytes.count, by: 36).map { start in
            let id = Digest32(bytes: bytes[start..<start + 32])!
            let length = bytes[start + 32..<start + 36].withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(as: UInt32.self)) }
            return ChunkRef(id: id, length: length)
        }
    }

    // MARK: Filling

    /// lseek's SEEK_DATA and SEEK_HOLE (Linux values; glibc hides them without _GNU_SOURCE).
    static let seekData: Int32 = 3, seekHole: Int32 = 4

    /// The holes of `fd` inside `range` (the byte ranges a recall must fill).
    static func holes(fd: Int32, in range: Range<Int64>) -> [Range<Int64>] {
        var result: [Range<Int64>] = []
        var position = range.lowerBound
        while position < range.upperBound {
            let hole = lseek(fd, off_t(position), seekHole)
            if hole < 0 || Int64(hole) >= range.upperBound { break }
            var data = lseek(fd, off_t(hole), seekData)
            if data < 0 { data = off_t(range.upperBound) }   // ENXIO: a hole runs to the end of the file
            let end = min(Int64(data), range.upperBound)
            if end > Int64(hole) { result.append(Int64(hole)..<end) }
            position = end
        }
        return result
    }

    /// Fills the holes of `fd` in the chunks that overlap `range` (the whole file when nil): a partial
    /// recall is rounded out to whole chunks, fetched and verified once each, and each hole's bytes are
    /// handed to `write`. Returns the bytes written.
    public func fill(fd: Int32, size: Int64, layout: [ChunkRef], range: Range<Int64>?,
                     write: (UnsafeRawBufferPointer, Int64) throws -> Void) async throws -> Int64 {
        let wanted = Self.span(of: range, fd: fd, size: size, layout: layout)
        guard !wanted.isEmpty else { return 0 }
        let holes = Self.holes(fd: fd, in: wanted)
        guard !holes.isEmpty else { return 0 }
        var written: Int64 = 0
        var offset: Int64 = 0
        for chunk in layout {
            let span = offset..<offset + Int64(chunk.length)
            offset = span.upperBound
            let overlaps = holes.compactMap { hole -> Range<Int64>? in
                let lower = max(hole.lowerBound, span.lowerBound), upper = min(hole.upperBound, span.upperBound)
                return lower < upper ? lower..<upper : nil
            }
            guard !overlaps.isEmpty else { continue }
            let bytes = try await connection.share(waitingUpTo: .seconds(10)).readChunk(chunk.id)
            try bytes.withUnsafeBytes { raw in
                for part in overlaps {
                    let start = Int(part.lowerBound - span.lowerBound)
                    try write(UnsafeRawBufferPointer(rebasing: raw[start..<start + Int(part.count)]), part.lowerBound)
                    written += Int64(part.count)
                }
            }
        }
        guard offset == size else {
            throw GatewayError("the stub's chunk list covers \(offset) bytes but the file has \(size)")
        }
        return written
    }

    /// The bytes a fill of `range` (nil: the whole file) covers: the chunks it touches, widened to whole
    /// filesystem blocks. Holes are whole blocks, chunks are not block-aligned: a block written in part
    /// would hide its unwritten rest, which SEEK_HOLE then reports as data.
    static func span(of range: Range<Int64>?, fd: Int32, size: Int64, layout: [ChunkRef]) -> Range<Int64> {
        guard let range else { return 0..<size }
        let asked = max(0, range.lowerBound)..<min(size, max(range.upperBound, range.lowerBound + 1))
        var start: Int64 = 0, lower = size, upper: Int64 = 0
        for chunk in layout {
            let end = start + Int64(chunk.length)
            if start < asked.upperBound && end > asked.lowerBound {
                lower = min(lower, start)
                upper = max(upper, end)
            }
            start = end
        }
        guard lower < upper else { return asked.isEmpty ? 0..<0 : asked }
        var info = stat()
        fstat(fd, &info)
        let block = max(Int64(info.st_blksize), 4096)
        return (lower / block * block)..<min(size, (upper + block - 1) / block * block)
    }

    // MARK: One fill at a time

    /// Fills of one file whose spans overlap run one at a time: concurrent readers of a stub share one
    /// recall (the later ones find the bytes present), and a late fill never writes over bytes that an
    /// application wrote after an earlier fill of the same range let it go on.
    final class Flights: @unchecked Sendable {
        /// Guards `inFlight`.
        private let condition = NSCondition()
        private var inFlight: [String: [Range<Int64>]] = [:]

        /// Waits (blocking the thread) until no fill of `fileID` overlapping `span` is in flight, then
        /// records this one.
        func enter(_ fileID: String, _ span: Range<Int64>) {
            condition.lock()
            while inFlight[fileID]?.contains(where: { $0.overlaps(span) || $0 == span }) == true { condition.wait() }
            inFlight[fileID, default: []].append(span)
            condition.unlock()
        }

        func leave(_ fileID: String, _ span: Range<Int64>) {
            condition.lock()
            if var spans = inFlight[fileID], let index = spans.firstIndex(of: span) {
                spans.remove(at: index)
                inFlight[fileID] = spans.isEmpty ? nil : spans
            }
            condition.broadcast()
            condition.unlock()
        }
    }

    /// One set for the process: every engine (the daemon's, a sync engine's, the mount's) fills the
    /// same files, and file ids are unique.
    private static let flights = Flights()

    /// Runs `body` (a fill of `span` of the stub `fileID`) once no overlapping fill of it is in flight.
    /// Blocks the calling thread: for fanotify and FUSE threads, never the cooperative pool.
    func exclusively<T>(_ fileID: String, _ span: Range<Int64>, _ body: () throws -> T) rethrows -> T {
        Self.flights.enter(fileID, span)
        defer { Self.flights.leave(fileID, span) }
        return try body()
    }

    /// Threads of this process writing recalled bytes into a stub through an ordinary descriptor: the
    /// pre-content events their writes raise (the file is marked) are answered at once, since the
    /// thread holds the fill's flight and writes verified bytes itself.
    private static let writers = Mutex<Set<Int32>>([])

    /// Runs `body`, a write of recalled bytes by this thread, with its events answered at once.
    func writingRecalledBytes<T>(_ body: () throws -> T) rethrows -> T {
        let thread = CLinux_gettid()
        Self.writers.withLock { _ = $0.insert(thread) }
        defer { Self.writers.withLock { _ = $0.remove(thread) } }
        return try body()
    }

    /// Whether `thread` (from an event of a monitor reporting thread ids) is writing recalled bytes.
    func isWritingRecalledBytes(_ thread: Int32) -> Bool {
        Self.writers.withLock { $0.contains(thread) }
    }

    /// Async form of ``exclusively(_:_:_:)``: the wait happens on a thread of its own.
    func exclusively<T: Sendable>(_ fileID: String, _ span: Range<Int64>, _ body: () async throws -> T) async throws -> T {
        let flights = Self.flights
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            Thread {
                flights.enter(fileID, span)
                continuation.resume()
            }.start()
        }
        defer { flights.leave(fileID, span) }
        return try await body()
    }

    /// Counts one access in the figures: a failure, a recall that wrote `bytes`, or (nothing to
    /// write) a hit.
    func count(bytes: Int64, failed: Bool) {
        figures.withLock {
            if failed {
                $0.failures += 1
            } else if bytes > 0 {
                $0.recalls += 1
                $0.bytes += bytes
            } else {
                $0.hits += 1
            }
        }
    }

    /// Puts back the stub's recorded mtime on `fd` (recall writes move it; a recall is not an edit).
    static func restoreMtime(_ fd: Int32, _ record: EntryRecord) {
        let mtime = Posix.timespec(nanoseconds: record.mtime)
        var times = [timespec(tv_sec: 0, tv_nsec: (1 << 30) - 2), mtime]   // atime: UTIME_OMIT
        futimens(fd, &times)
    }

    // MARK: Low-disk mode

    /// Enters or leaves low-disk mode; leaving it forgets the recalls that were waiting to be tiered.
    public func setLowOnSpace(_ low: Bool) {
        unkept.withLock {
            $0.active = low
            if !low { $0.paths.removeAll() }
        }
    }

    /// Notes that an access recalled data into `path` (relative); kept only outside low-disk mode.
    func noteRecalled(_ path: String) {
        unkept.withLock { if $0.active { $0.paths.insert(path) } }
    }

    /// The recalls made in low-disk mode, handed over for tiering (the caller puts back what it could
    /// not tier yet).
    public func takeUnkeptRecalls() -> Set<String> {
        unkept.withLock {
            let paths = $0.paths
            $0.paths.removeAll()
            return paths
        }
    }

    /// Puts back paths that could not be tiered yet (still open, say), while low-disk mode lasts.
    public func returnUnkeptRecalls(_ paths: some Sequence<String>) {
        unkept.withLock { if $0.active { $0.paths.formUnion(paths) } }
    }

    // MARK: Whole-file recall

    /// Recalls the stub at `path` (relative to the endpoint) completely: it becomes a normal file again.
    /// On failure the stub is left intact (what was filled stays filled; markers stay).
    @discardableResult
    public func recall(_ path: String) async throws -> Int64 {
        guard let record = try state.entry(endpoint.id, path), record.kind == .file else {
            throw GatewayError("'\(path)' is not a synced file of endpoint \(endpoint.id)")
        }
        let full = endpoint.path + "/" + path
        let fd = try LocalFiles.open(root: endpoint.path, path: path, flags: O_RDWR)
        defer { close(fd) }
        let stub = StubFile(descriptor: fd, path: full)
        guard try stub.state() != nil else { return 0 }
        guard let fileID = try stub.fileID(), let layout = try layout(fileID: fileID) else {
            throw GatewayError("'\(path)' is an orphaned stub: no chunk list is recorded for it")
        }
        var info = stat()
        try Posix.call("fstat", path: full) { fstat(fd, &info) }
        let times = [info.st_atim, info.st_mtim]
        // Intent: our writes move the mtime; a crash before the end must not look like an edit.
        var intent = record
        intent.residency = .recalling
        var batch = state.batch(endpoint.id)
        batch.setEntry(path, intent)
        try state.commit(batch, sync: true)
        do {
            let size = Int64(info.st_size)
            let written = try await exclusively(fileID, 0..<size) {
                try await fill(fd: fd, size: size, layout: layout, range: nil) { bytes, offset in
                    var done = 0
                    while done < bytes.count {
                        let count = try writingRecalledBytes {
                            try Posix.call("pwrite", path: full) { pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset) + off_t(done)) }
                        }
                        done += count
                    }
                }
            }
            try finishRecall(stub: stub, fileID: fileID, path: path, record: record, times: times)
            count(bytes: written, failed: false)
            try? state.heatStore(endpoint.id).recordAccess(fileID)
            return written
        } catch {
            count(bytes: 0, failed: true)
            // The stub stays a stub: its mtime back (writes that landed moved it), its record as before.
            var restore = times
            futimens(fd, &restore)
            var undo = state.batch(endpoint.id)
            undo.setEntry(path, record)
            try? state.commit(undo, sync: true)
            throw error
        }
    }

    /// After every hole is filled: fsync, restore mtime, drop the markers, record a full file.
    func finishRecall(stub: StubFile, fileID: String, path: String, record: EntryRecord, times: [timespec]) throws {
        var times = times
        try Posix.call("futimens", path: stub.path) { futimens(stub.descriptor, &times) }
        try stub.sync()
        try stub.removeMarkers()
        var updated = record
        let now = LocalItem(path: path, try stub.status())
        // A stub an application wrote into keeps its recorded stat, so the scan sees the change and
        // commits it; only a stub holding just the recorded version takes its new stat (ctime, inode).
        if now.size == record.size && now.mtime == record.mtime { updated.updateStat(now) }
        updated.residency = .full
        var batch = state.batch(endpoint.id)
        batch.setEntry(path, updated)
        batch.batch.delete(LocalState.key(endpoint.id, fileID), in: state.family(.chunks))
        try state.commit(batch, sync: true)
    }
}
