import Backends
import CloudShare
import FUSE
import Foundation
import Glibc
import Synchronization

/// The mounted cache volume's link to tiering and sync: reads of stubs recall the chunks they touch,
/// writes into stubs first recall the whole file (so no partially written stub is ever committed),
/// opens feed the heat store, and changes are recorded as pending local changes.
public final class MountRecallHooks: MountHooks {
    let endpoint: EndpointConfig
    let state: LocalState
    let recaller: RecallEngine
    /// Backing files known not to be stubs, so that reads of hot files cost no extra system call.
    private let fullFiles = Mutex<Set<FileIdentity>>([])
    private let changes = Atomic<Int>(0)

    /// Hooks for `endpoint`, recalling with `recaller` (the daemon shares one between the mount and
    /// fanotify, so that `status` counts both).
    public init(endpoint: EndpointConfig, state: LocalState, recaller: RecallEngine) {
        self.endpoint = endpoint
        self.state = state
        self.recaller = recaller
    }

    /// Changes seen through the mount (the daemon compares it between passes).
    public var changeCount: Int { changes.load(ordering: .acquiring) }

    func isStub(_ file: MountedFile) -> Bool {
        if fullFiles.withLock({ $0.contains(file.identity) }) { return false }
        guard let path = file.path, StubFile.marker(atPath: endpoint.path + "/" + path) != nil else {
            fullFiles.withLock { _ = $0.insert(file.identity) }
            return false
        }
        return true
    }

    public func beforeRead(_ file: MountedFile, offset: Int64, length: Int) throws(Errno) {
        guard isStub(file), let path = file.path else {
            recaller.count(bytes: 0, failed: false)   // answered from local data
            return
        }
        let end = offset + Int64(max(length, 1))
        // Sequential: this read starts where the last one of the file ended or a little past it (the
        // kernel's readahead requests may arrive out of order).
        let sequential = readEnds.withLock { ends in
            defer { ends[file.identity] = max(ends[file.identity] ?? 0, end) }
            return ends[file.identity].map { offset >= $0 && offset - $0 <= Self.readAheadSlack } ?? false
        }
        try fill(path, range: offset..<end)
        if sequential { readAhead(file, path, from: end) }
    }

    /// How far ahead of a sequential reader of a stub the chunks are recalled in the background.
    static let readAheadBytes: Int64 = 8 << 20
    /// How far past the previous read's end a read may start and still count as sequential.
    static let readAheadSlack: Int64 = 1 << 20
    /// Where each stub's last read ended.
    private let readEnds = Mutex<[FileIdentity: Int64]>([:])
    /// Stubs with a read-ahead running (one per file at a time).
    private let readingAhead = Mutex<Set<FileIdentity>>([])

    /// Recalls the next ``readAheadBytes`` after `offset` on a thread of its own, so the reader finds
    /// them present; the engine's flights make a reader that gets there first wait for it, not fetch twice.
    func readAhead(_ file: MountedFile, _ path: String, from offset: Int64) {
        guard readingAhead.withLock({ $0.insert(file.identity).inserted }) else { return }
        Thread { [self] in
            defer { readingAhead.withLock { _ = $0.remove(file.identity) } }
            try? fill(path, range: offset..<offset + Self.readAheadBytes)
        }.start()
    }

    public func beforeWrite(_ file: MountedFile, _ intent: WriteIntent) throws(Errno) {
        guard isStub(file), let path = file.path else { return }
        try fill(path, range: nil)
    }

    /// Full files are read and written by the kernel directly; a stub never is, so that its reads and
    /// writes recall first. Changes made that way are still reported (`modified` at open and release).
    public func allowsPassthrough(_ file: MountedFile, flags: Int32) -> Bool {
        !isStub(file)
    }

    public func didOpen(_ file: MountedFile, flags: Int32) {
        guard let path = file.path, let record = try? state.entry(endpoint.id, path) else { return }
        try? state.heatStore(endpoint.id).recordAccess(record.fileID)
    }

    public func didChange(_ change: MountChange) {
        changes.add(1, ordering: .releasing)
        if let identity = change.identity {
            fullFiles.withLock { _ = $0.remove(identity) }
            readEnds.withLock { _ = $0.removeValue(forKey: identity) }
        }
        guard let path = change.path else { return }
        var batch = state.batch(endpoint.id)
        batch.setPending(path)
        if let previous = change.previousPath { batch.setPending(previous) }
        try? state.commit(batch, sync: false)
    }

    /// Fills the holes of `range` (the whole file when nil) of the stub at `path`; a whole stub becomes a
    /// normal file. The stub's mtime is kept: recalling is not an edit. Concurrent fills of overlapping
    /// ranges share one recall (the engine's flights); this runs on a FUSE thread, which may block.
    func fill(_ path: String, range: Range<Int64>?) throws(Errno) {
        let recaller = self.recaller, state = self.state, endpoint = self.endpoint
        let full = endpoint.path + "/" + path
        let outcome: Result<Bool, any Error>
        do {
            let fd = try Posix.open(full, O_RDWR | O_NOFOLLOW)
            defer { close(fd) }
            let stub = StubFile(descriptor: fd, path: full)
            guard let fileID = try stub.fileID() else { return }     // recalled whole meanwhile
            guard let layout = try recaller.layout(fileID: fileID), let record = try state.entry(endpoint.id, path) else {
                throw GatewayError("'\(path)' is an orphaned stub")
            }
            var info = stat()
            try Posix.call("fstat", path: full) { fstat(fd, &info) }
            let size = Int64(info.st_size), accessTime = info.st_atim
            let span = RecallEngine.span(of: range, fd: fd, size: size, layout: layout)
            outcome = recaller.exclusively(fileID, span) {
                Blocking.run { () async throws -> Bool in
                    let written: Int64
                    do {
                        written = try await recaller.fill(fd: fd, size: size, layout: layout, range: range) { bytes, offset in
                            var done = 0
                            while done < bytes.count {
                                // The endpoint may be marked for fanotify too (tiering and a mount together).
                                done += try recaller.writingRecalledBytes {
                                    try Posix.call("pwrite", path: full) { pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset) + off_t(done)) }
                                }
                            }
                        }
                    } catch {
                        // Writes that landed before the failure (a disk filling up) moved mtime: put back the stub's.
                        RecallEngine.restoreMtime(fd, record)
                        throw error
                    }
                    recaller.count(bytes: written, failed: false)
                    if written > 0 { recaller.noteRecalled(path) }
                    let mtime = Posix.timespec(nanoseconds: record.mtime)
                    if RecallEngine.holes(fd: fd, in: 0..<size).isEmpty {
                        try recaller.finishRecall(stub: stub, fileID: fileID, path: path, record: record, times: [accessTime, mtime])
                        return true
                    }
                    if written > 0 {
                        var times = [accessTime, mtime]
                        futimens(fd, &times)
                        try stub.setState(.partial)
                    }
                    return false
                }
            }
        } catch {
            outcome = .failure(error)
        }
        // A stub that became whole is found full by the next marker check and cached then.
        if case .failure(let error) = outcome {
            recaller.count(bytes: 0, failed: true)
            if let posix = error as? PosixError, posix.errno == ENOSPC { throw Errno(ENOSPC) }
            throw Errno(EIO)
        }
    }
}
