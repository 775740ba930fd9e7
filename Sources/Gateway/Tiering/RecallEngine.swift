import Backends
import CLinux
import CloudShare
import Foundation
import Glibc
import Hashing
import Metrics
import Synchronization
import Telemetry

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
    /// How long fills that fetched data took (a metric of the daemon).
    private let latency: Metrics.Timer
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
        latency = Metrics.Timer(label: MetricName.recallLatency, dimensions: [("endpoint", String(endpoint.id))])
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
    /// handed to `write`. Only the bytes the chunk list covers are filled: a stub truncated since keeps
    /// its prefix, and bytes past its old end are the application's. Returns the bytes written.
    public func fill(fd: Int32, size: Int64, layout: [ChunkRef], range: Range<Int64>?,
                     write: (UnsafeRawBufferPointer, Int64) throws -> Void) async throws -> Int64 {
        try await Self.fill(from: connection, fd: fd, size: size, layout: layout, range: range, write: write)
    }

    /// ``fill(fd:size:layout:range:write:)`` from the share of `connection`.
    static func fill(from connection: ShareConnection, fd: Int32, size: Int64, layout: [ChunkRef], range: Range<Int64>?,
                     write: (UnsafeRawBufferPointer, Int64) throws -> Void) async throws -> Int64 {
        let wanted = Self.span(of: range, fd: fd, size: Self.covered(size: size, layout: layout), layout: layout)
        guard !wanted.isEmpty else { return 0 }
        let holes = Self.holes(fd: fd, in: wanted)
        guard !holes.isEmpty else { return 0 }
        // Every write starts on a block boundary and, but at the end of a hole, ends on one: a write cut
        // short (a kill) then leaves whole blocks, never a block holding some of its bytes, whose unwritten
        // rest SEEK_HOLE would report as data, read as zeros.
        var info = stat()
        fstat(fd, &info)
        let block = max(Int64(info.st_blksize), 4096)
        var pending: [UInt8] = [], pendingStart: Int64 = 0
        var written: Int64 = 0
        func flush(all: Bool) throws {
            let end = pendingStart + Int64(pending.count)
            let cut = all ? end : end / block * block
            guard cut > pendingStart else { return }
            let count = Int(cut - pendingStart)
            try pending.withUnsafeBytes { try write(UnsafeRawBufferPointer(rebasing: $0[0..<count]), pendingStart) }
            written += Int64(count)
            pending.removeFirst(count)
            pendingStart = cut
        }
        // The chunks that overlap a hole, with the parts of them to write.
        var needed: [(id: Digest32, span: Range<Int64>, overlaps: [Range<Int64>])] = []
        var offset: Int64 = 0
        for chunk in layout {
            let span = offset..<offset + Int64(chunk.length)
            offset = span.upperBound
            let overlaps = holes.compactMap { hole -> Range<Int64>? in
                let lower = max(hole.lowerBound, span.lowerBound), upper = min(hole.upperBound, span.upperBound)
                return lower < upper ? lower..<upper : nil
            }
            if !overlaps.isEmpty { needed.append((chunk.id, span, overlaps)) }
        }
        // Recall is exempt from the network limit: a reader is blocked on these bytes. The mark is a
        // task-local, set here where every recall (fanotify, mount, CLI, background) reads its chunks; the
        // reads of adjacent chunks are coalesced and handed over in file order.
        let share = try await connection.share(waitingUpTo: .seconds(10))
        try await StoreTraffic.recall {
            try await share.readChunks(needed.map(\.id), order: .asRequested) { index, chunk in
                let bytes = try chunk.get()
                let (_, span, overlaps) = needed[index]
                for part in overlaps {
                    if part.lowerBound != pendingStart + Int64(pending.count) {
                        try flush(all: true)    // a new hole: the last one ended on a block boundary
                        pendingStart = part.lowerBound
                    }
                    let start = bytes.startIndex + Int(part.lowerBound - span.lowerBound)
                    pending += bytes[start..<start + Int(part.count)]
                }
                if pending.count >= 1 << 20 { try flush(all: false) }
            }
        }
        try flush(all: true)
        return written
    }

    /// The bytes of a file of `size` that its stub's chunk list covers.
    static func covered(size: Int64, layout: [ChunkRef]) -> Int64 {
        min(size, layout.reduce(0) { $0 + Int64($1.length) })
    }

    /// The bytes a fill of `range` (nil: the whole file) covers: the chunks it touches, widened to whole
    /// filesystem blocks, within `size`. Holes are whole blocks, chunks are not block-aligned: a block
    /// written in part would hide its unwritten rest, which SEEK_HOLE then reports as data.
    static func span(of range: Range<Int64>?, fd: Int32, size: Int64, layout: [ChunkRef]) -> Range<Int64> {
        guard let range else { return 0..<size }
        let first = max(0, range.lowerBound)
        guard first < size else { return 0..<0 }     // at or past the end: nothing of the stub's
        let asked = first..<min(size, max(range.upperBound, first + 1))
        var start: Int64 = 0, lower = size, upper: Int64 = 0
        for chunk in layout {
            let end = start + Int64(chunk.length)
            if start < asked.upperBound && end > asked.lowerBound {
                lower = min(lower, start)
                upper = max(upper, end)
            }
            start = end
        }
        guard lower < upper else { return asked }
        var info = stat()
        fstat(fd, &info)
        let block = max(Int64(info.st_blksize), 4096)
        return (lower / block * block)..<min(size, (upper + block - 1) / block * block)
    }

    /// What one fill of a stub did.
    public struct StubFill: Sendable {
        /// Bytes written.
        public var written: Int64
        /// The file holds all its bytes now (and was made a normal file when the fill wrote or was whole).
        public var whole: Bool
    }

    /// Fills `range` (nil: the whole file) of the stub open as `stub`, known by its own markers, so a
    /// renamed, linked or unlinked stub, or one under a name that is not UTF-8, still fills. The one
    /// fill path of every access (fanotify, the mount, `recall`, the scan): fills of one file run one at
    /// a time, and each puts back the mtime the file had before its own writes, so recalling is never an
    /// edit and never hides one. A stub left without holes becomes a normal file; its record (at `path`,
    /// when it is this file's) says so. `write` puts recalled bytes into the file.
    func fill(stub: StubFile, path: String?, range: Range<Int64>?,
              write: (UnsafeRawBufferPointer, Int64) throws -> Void) async throws -> StubFill {
        guard let fileID = try stub.fileID() else { return StubFill(written: 0, whole: true) }   // a normal file
        guard let layout = try layout(fileID: fileID) else {
            throw GatewayError("\(stub.path) is an orphaned stub: no chunk list is recorded for its file id \(fileID)")
        }
        let started = DispatchTime.now().uptimeNanoseconds
        return try await exclusively(fileID) {
            defer { latency.recordNanoseconds(Int64(DispatchTime.now().uptimeNanoseconds - started)) }
            // A fill that held the flight before may have made it a normal file.
            guard try stub.fileID() == fileID else { return StubFill(written: 0, whole: true) }
            let before = try stub.status()
            let size = Int64(before.st_size)
            let written: Int64
            do {
                written = try await fill(fd: stub.descriptor, size: size, layout: layout, range: range, write: write)
            } catch {
                Self.setMtime(stub.descriptor, before.st_mtim)   // writes that landed (a disk filling up) moved it
                throw error
            }
            if written > 0 { Self.setMtime(stub.descriptor, before.st_mtim) }
            let record = path.flatMap { try? state.entry(endpoint.id, $0) }.flatMap { $0.fileID == fileID ? $0 : nil }
            // Only a fill that wrote, or a whole recall, completes a stub: an access that found nothing to
            // fill proves nothing.
            let whole = Self.holes(fd: stub.descriptor, in: 0..<Self.covered(size: size, layout: layout)).isEmpty
            if whole && (written > 0 || range == nil) {
                try finishRecall(stub: stub, fileID: fileID, path: path, record: record, times: [before.st_atim, before.st_mtim])
            } else if written > 0, try stub.state() == .tiered {
                try stub.setState(.partial)
                if var partial = record, let path {
                    partial.residency = .partial
                    var batch = state.batch(endpoint.id)
                    batch.setEntry(path, partial)
                    try? state.commit(batch, sync: false)
                }
            }
            if written > 0, let path, record != nil { noteRecalled(path) }
            return StubFill(written: written, whole: whole)
        }
    }

    // MARK: One fill of a file at a time

    /// Fills of one file run one at a time: concurrent readers of a stub share one recall (the later
    /// ones find the bytes present), a late fill never writes over bytes that an application wrote after
    /// an earlier fill let it go on, and the mtime a fill puts back is never another fill's.
    final class Flights: @unchecked Sendable {
        /// Guards `inFlight`.
        private let condition = NSCondition()
        private var inFlight: Set<String> = []

        /// Waits (blocking the thread) until no fill of `fileID` is in flight, then records this one.
        func enter(_ fileID: String) {
            condition.lock()
            while inFlight.contains(fileID) { condition.wait() }
            inFlight.insert(fileID)
            condition.unlock()
        }

        /// Records this fill if no fill of `fileID` is in flight; false (nothing recorded) otherwise.
        func tryEnter(_ fileID: String) -> Bool {
            condition.lock()
            defer { condition.unlock() }
            return inFlight.insert(fileID).inserted
        }

        func leave(_ fileID: String) {
            condition.lock()
            inFlight.remove(fileID)
            condition.broadcast()
            condition.unlock()
        }
    }

    /// One set for the process: every engine (the daemon's, a sync engine's, the mount's) fills the
    /// same files, and file ids are unique.
    private static let flights = Flights()

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

    /// Runs `body` (a fill of the stub `fileID`) once no other fill of it is in flight; the wait
    /// happens on a thread of its own, never on the cooperative pool.
    func exclusively<T: Sendable>(_ fileID: String, _ body: () async throws -> T) async throws -> T {
        let flights = Self.flights
        if !flights.tryEnter(fileID) {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                Thread {
                    flights.enter(fileID)
                    continuation.resume()
                }.start()
            }
        }
        defer { flights.leave(fileID) }
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

    /// Sets the mtime of `fd` (recall writes move it; a recall is not an edit), leaving atime.
    static func setMtime(_ fd: Int32, _ mtime: timespec) {
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
    /// The stub is known by its markers, so one the database has under another name (renamed or linked
    /// before a scan saw it) recalls too. On failure the stub is left intact (what was filled stays
    /// filled; markers stay).
    @discardableResult
    public func recall(_ path: String) async throws -> Int64 {
        let full = endpoint.path + "/" + path
        let fd = try LocalFiles.open(root: endpoint.path, path: path, flags: O_RDWR)
        defer { close(fd) }
        let stub = StubFile(descriptor: fd, path: full)
        guard try stub.state() != nil else { return 0 }
        guard let fileID = try stub.fileID() else {
            throw GatewayError("'\(path)' is marked as a stub but names no file id")
        }
        // Intent: our writes move the mtime; a crash before the end must not look like an edit.
        let record = try state.entry(endpoint.id, path).flatMap { $0.fileID == fileID && $0.kind == .file ? $0 : nil }
        if var intent = record {
            intent.residency = .recalling
            var batch = state.batch(endpoint.id)
            batch.setEntry(path, intent)
            try state.commit(batch, sync: true)
        }
        do {
            let outcome = try await fill(stub: stub, path: path, range: nil) { bytes, offset in
                try writingRecalledBytes { try Posix.pwriteAll(fd, bytes, offset: offset, path: full) }
            }
            count(bytes: outcome.written, failed: false)
            try? state.heatStore(endpoint.id).recordAccess(fileID)
            return outcome.written
        } catch {
            count(bytes: 0, failed: true)
            if let record {    // the stub stays a stub, its record as before
                var undo = state.batch(endpoint.id)
                undo.setEntry(path, record)
                try? state.commit(undo, sync: true)
            }
            throw error
        }
    }

    /// After every hole is filled: fsync, restore the times, drop the markers, and when `record` is this
    /// file's record at `path`, record a full file.
    func finishRecall(stub: StubFile, fileID: String, path: String?, record: EntryRecord?, times: [timespec]) throws {
        try stub.becomeWhole(times: times)
        // A stub the database knows under another name (or not at all) is a normal file now; the scan
        // takes it from there.
        guard let path, let record else { return }
        var updated = record
        let now = LocalItem(path: path, try stub.status())
        // A stub an application wrote into, or whose mode or owner changed, keeps its recorded stat, so
        // the scan sees the change and commits it; only a stub holding just the recorded version with its
        // recorded attributes takes its new stat (ctime, inode).
        if now.size == record.size && now.mtime == record.mtime && now.mode == record.mode && now.uid == record.uid && now.gid == record.gid {
            updated.updateStat(now)
        }
        updated.residency = .full
        var batch = state.batch(endpoint.id)
        batch.setEntry(path, updated)
        batch.batch.delete(LocalState.key(endpoint.id, fileID), in: state.family(.chunks))
        try state.commit(batch, sync: true)
    }
}
