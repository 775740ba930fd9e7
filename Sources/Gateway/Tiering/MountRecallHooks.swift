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

    /// Called only for stubs (the mount checks the marker on the open file itself): nothing here
    /// remembers a file as "not a stub", so a file tiered while the mount runs is a stub to it at once.
    public func beforeRead(_ file: MountedFile, offset: Int64, length: Int) throws(Errno) {
        let end = offset + Int64(max(length, 1))
        // Sequential: this read starts where the last one of the file ended or a little past it (the
        // kernel's readahead requests may arrive out of order).
        let sequential = readEnds.withLock { ends in
            defer { ends[file.identity] = max(ends[file.identity] ?? 0, end) }
            return ends[file.identity].map { offset >= $0 && offset - $0 <= Self.readAheadSlack } ?? false
        }
        try fill(file, range: offset..<end)
        if sequential { readAhead(file, from: end) }
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
    func readAhead(_ file: MountedFile, from offset: Int64) {
        guard readingAhead.withLock({ $0.insert(file.identity).inserted }) else { return }
        // The hook's descriptor is valid only while the hook runs: the thread reopens the file by it now.
        let ahead = MountedFile(path: file.path, identity: file.identity, descriptor: file.descriptor.map { Self.reopen($0) } ?? nil)
        guard ahead.descriptor != nil || file.descriptor == nil else {
            readingAhead.withLock { _ = $0.remove(file.identity) }
            return
        }
        Thread { [self] in
            defer {
                readingAhead.withLock { _ = $0.remove(file.identity) }
                if let descriptor = ahead.descriptor { close(descriptor) }
            }
            try? fill(ahead, range: offset..<offset + Self.readAheadBytes)
        }.start()
    }

    /// A new read-write descriptor of the file `descriptor` refers to (its inode, whatever its name now).
    static func reopen(_ descriptor: Int32) -> Int32? {
        let fd = open("/proc/self/fd/\(descriptor)", O_RDWR | O_CLOEXEC)
        return fd >= 0 ? fd : nil
    }

    public func beforeWrite(_ file: MountedFile, _ intent: WriteIntent) throws(Errno) {
        try fill(file, range: nil)
    }

    public func didOpen(_ file: MountedFile, flags: Int32) {
        guard let path = file.path, let record = try? state.entry(endpoint.id, path) else { return }
        try? state.heatStore(endpoint.id).recordAccess(record.fileID)
    }

    public func didChange(_ change: MountChange) {
        changes.add(1, ordering: .releasing)
        if let identity = change.identity {
            readEnds.withLock { _ = $0.removeValue(forKey: identity) }
        }
        guard let path = change.path else { return }
        var batch = state.batch(endpoint.id)
        batch.setPending(path)
        if let previous = change.previousPath { batch.setPending(previous) }
        try? state.commit(batch, sync: false)
    }

    /// Fills the holes of `range` (the whole file when nil) of the stub `file` through the engine's one
    /// fill path; a whole stub becomes a normal file. The stub is reached by its descriptor (its inode,
    /// whatever its name now), so an unlinked or renamed stub still recalls. Runs on a FUSE thread,
    /// which may block.
    func fill(_ file: MountedFile, range: Range<Int64>?) throws(Errno) {
        let recaller = self.recaller, endpoint = self.endpoint
        let path = file.path, name = file.path.map { endpoint.path + "/" + $0 } ?? "inode \(file.identity)"
        let outcome: Result<RecallEngine.StubFill, any Error>
        do {
            let fd: Int32
            if let descriptor = file.descriptor {
                guard let reopened = Self.reopen(descriptor) else { throw PosixError("open", path: name, errno: errno) }
                fd = reopened
            } else if let path {
                fd = try LocalFiles.open(root: endpoint.path, path: path, flags: O_RDWR)
            } else {
                throw GatewayError("\(name): no way to reach the stub")
            }
            defer { close(fd) }
            let stub = StubFile(descriptor: fd, path: name)
            outcome = Blocking.run {
                try await recaller.fill(stub: stub, path: path, range: range) { bytes, offset in
                    // The endpoint may be marked for fanotify too (tiering and a mount together).
                    try recaller.writingRecalledBytes { try Posix.pwriteAll(fd, bytes, offset: offset, path: name) }
                }
            }
        } catch {
            outcome = .failure(error)
        }
        switch outcome {
        case .success(let filled):
            recaller.count(bytes: filled.written, failed: false)
        case .failure(let error):
            recaller.count(bytes: 0, failed: true)
            if let posix = error as? PosixError, posix.errno == ENOSPC { throw Errno(ENOSPC) }
            throw Errno(EIO)
        }
    }
}
