import Backends
import CloudShare
import Dispatch
import Fanotify
import Foundation
import Glibc
import Synchronization

/// Tiering on a running daemon for one endpoint: the fanotify pre-content monitor that recalls stubs
/// when applications read them, the stub marks (re-established from the database at start), and the
/// tiering policies. Refuses to start where pre-content events are unavailable.
public final class TieringRuntime: Sendable {
    let endpoint: EndpointConfig
    let state: LocalState
    /// Whole and partial recalls.
    public let recaller: RecallEngine
    /// Stub making.
    public let tierer: Tierer
    private let box = MonitorBox()

    /// The monitor, reachable from its own handler (which must unmark fully recalled files).
    final class MonitorBox: Sendable {
        let monitor = Mutex<PreContentMonitor?>(nil)
    }

    /// Starts the monitor for `endpoint`, reaching the share through `connection` (which may still be
    /// empty: recalls then fail with EIO until it is connected, never read as zeros).
    /// `group` is a fanotify group a supervisor holds for this endpoint (see ``DaemonSupervisor``), so
    /// its marks and blocked readers outlive this process; nil makes a group of this process's own.
    public init(endpoint: EndpointConfig, connection: ShareConnection, state: LocalState, group: Int32? = nil) throws {
        self.endpoint = endpoint
        self.state = state
        recaller = RecallEngine(connection: connection, state: state, endpoint: endpoint)
        tierer = Tierer(connection: connection, state: state, endpoint: endpoint)
        do {
            try PreContentMonitor.checkSupport(at: endpoint.path)
        } catch {
            throw GatewayError("tiering refuses to start on endpoint \(endpoint.id) (\(endpoint.path)): \(error); use `tiergate mount` for access through FUSE instead")
        }
        let created = try PreContentMonitor(group: group, workers: 16, reportThreadIDs: true) { [recaller, state, endpoint, box] event in
            Self.handle(event, recaller: recaller, state: state, endpoint: endpoint, box: box)
        }
        box.monitor.withLock { $0 = created }
    }

    /// Pre-content events read from the group and waiting for a handler.
    public var queuedEvents: Int { box.monitor.withLock { $0?.statistics.queued ?? 0 } }

    /// Stops the monitor (the kernel drops its marks).
    public func stop() {
        box.monitor.withLock { $0?.stop(); $0 = nil }
    }

    /// Starts the monitor for `endpoint` on an open share.
    public convenience init(endpoint: EndpointConfig, share: CloudShare, state: LocalState) throws {
        try self.init(endpoint: endpoint, connection: ShareConnection(share, name: share.name), state: state)
    }

    /// Marks every stub of the endpoint (tiered or partial in the database); returns how many.
    @discardableResult
    public func markStubs() async throws -> Int {
        var count = 0
        for (path, record) in try state.entries(endpoint.id) where record.residency == .tiering || record.residency == .recalling {
            try? await tierer.recoverInterrupted(path, record, recaller: recaller)
        }
        // Every file carrying stub markers, whatever the database says: a stub made just before a crash
        // may not be recorded yet, and an unmarked stub reads as zeros.
        let rootFD = try Posix.open(endpoint.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        defer { close(rootFD) }
        for item in try TreeWalker(root: endpoint.path).walk().items where !item.isDirectory {
            // One open per file: the marker is read and the mark set through the same descriptor.
            guard let fd = try? SafePath.open(rootFD: rootFD, path: item.path, flags: O_RDONLY | O_NONBLOCK) else { continue }
            defer { close(fd) }
            guard LocalFiles.stubMarker(fd: fd) != nil else { continue }
            try box.monitor.withLock { try $0?.markFile(descriptor: fd, path: endpoint.path + "/" + item.path) }
            count += 1
        }
        return count
    }

    /// Marks one stub for pre-content events.
    public func mark(_ fullPath: String) throws {
        try box.monitor.withLock { try $0?.markFile(atPath: fullPath) }
    }

    /// Tiers `path` (relative), marking it before its content is punched out.
    @discardableResult
    public func tier(_ path: String) async throws -> Int64 {
        // A marked file (a partial stub, or a full file marked from an earlier life as a stub) would make
        // the punch a pre-content access, whose event opens the file and breaks the lease: its mark goes
        // while the lease holds (no one can open it then), and comes back right after the punch.
        return try await tierer.tier(path, beforePunch: { [box] fd, full in
            box.monitor.withLock { _ = try? $0?.unmarkFile(descriptor: fd, path: full) }
        }, afterPunch: { [box] fd, full in
            try box.monitor.withLock { try $0?.markFile(descriptor: fd, path: full) }
        })
    }

    /// Low-disk mode: tiers again the files that accesses recalled while it lasted, once they are
    /// closed (open ones wait for a later call); returns how many were tiered.
    @discardableResult
    public func tierUnkeptRecalls() async -> Int {
        var tiered = 0
        var waiting: [String] = []
        for path in recaller.takeUnkeptRecalls().sorted() {
            do {
                try await tier(path)
                tiered += 1
            } catch let refusal as Tierer.Refusal where refusal.reason.contains("open by another process") {
                waiting.append(path)
            } catch {
                // Changed, deleted or already a stub again: nothing to take back.
            }
        }
        recaller.returnUnkeptRecalls(waiting)
        return tiered
    }

    /// Applies the endpoint's policies once; returns the files tiered and bytes freed.
    public func applyPolicies(freeSpacePercent: Int) async throws -> (files: Int, bytes: Int64, refused: [String]) {
        guard let tiering = endpoint.tiering else { return (0, 0, []) }
        let volume = try TieringPolicy.volume(of: endpoint.path)
        let candidates = TieringPolicy.evaluate(entries: try state.entries(endpoint.id), heat: try state.heatStore(endpoint.id).all(),
                                                volume: volume, freeSpacePercent: freeSpacePercent, dateDays: tiering.dateDays)
        var files = 0, bytes: Int64 = 0
        var refused: [String] = []
        for candidate in candidates {
            do {
                bytes += try await tier(candidate.path)
                files += 1
            } catch {
                refused.append("\(error)")
            }
        }
        return (files, bytes, refused)
    }

    /// Answers one pre-content event: a read fills the holes of the chunks it touches; an access that
    /// may change the content (write, append, truncate, a writable shared mapping) first recalls the
    /// whole file, so no application write ever lands in a stub. Then it allows. Any failure denies with
    /// EIO (ENOSPC for a full disk) and leaves the stub as it was.
    static func handle(_ event: PreContentEvent, recaller: RecallEngine, state: LocalState, endpoint: EndpointConfig, box: MonitorBox) -> PreContentResponse {
        // The daemon's own write of recalled bytes (a whole-file recall, or the mount's): it holds the
        // fill's flight and writes the verified bytes itself.
        if recaller.isWritingRecalledBytes(event.pid) { return .allow }
        let stub = StubFile(descriptor: event.fileDescriptor, path: event.path)
        guard let fileID = try? stub.fileID() else { return .allow }    // not (or no longer) a stub
        // A read that starts or ends inside a page reads that whole page: fill whole pages around it.
        let page: Int64 = 4096
        let range = event.mayWrite ? nil : event.range.map { ($0.offset / page * page)..<(($0.end + page - 1) / page * page) }
        let relative = event.path.hasPrefix(endpoint.path + "/") ? String(event.path.dropFirst(endpoint.path.count + 1)) : nil
        let outcome = Blocking.run {
            try await recaller.fill(stub: stub, path: relative, range: range) { bytes, offset in try event.write(bytes, at: offset) }
        }
        switch outcome {
        case .failure(let error):
            recaller.count(bytes: 0, failed: true)
            if let posix = error as? PosixError, posix.errno == ENOSPC { return .deny(errno: ENOSPC) }
            if let fan = error as? FanotifyError, fan.errno == ENOSPC { return .deny(errno: ENOSPC) }
            return .deny(errno: EIO)
        case .success(let filled):
            recaller.count(bytes: filled.written, failed: false)
            try? state.heatStore(endpoint.id).recordAccess(fileID)
            // A full file: its reads no longer need a round trip through the daemon.
            if filled.whole, (try? stub.fileID()) == nil {
                box.monitor.withLock { try? $0?.unmarkFile(descriptor: event.fileDescriptor, path: event.path) }
            }
            return .allow
        }
    }
}

/// Runs async work to completion from a thread that must block (fanotify and FUSE callbacks run on
/// their own threads, never on the cooperative pool, so blocking them is allowed).
enum Blocking {
    static func run<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) -> Result<T, any Error> {
        let result = Mutex<Result<T, any Error>?>(nil)
        let done = DispatchSemaphore(value: 0)
        Task {
            do {
                let value = try await body()
                result.withLock { $0 = .success(value) }
            } catch {
                result.withLock { $0 = .failure(error) }
            }
            done.signal()
        }
        done.wait()
        return result.withLock { $0! }
    }
}
