import Backends
import CloudShare
import Foundation
import Hashing

/// Copies a share between two stores (`tiergate share copy`) and moves a live one (`tiergate share move`).
///
/// A copy lists the log first, then everything else, so every pack a copied record references is copied
/// too (packs are durable before their commit is appended). Objects already at the destination with the
/// same size are kept (a rerun copies only what is missing); packs are checked against their id (the
/// SHA-256 of their bytes) and log records must be byte-equal to what the destination holds. `share.json`
/// goes last: the destination is a share only once everything it needs is there.
public struct ShareTransfer: Sendable {
    /// What a copy or a move did.
    public struct Report: Codable, Sendable {
        public var objects = 0
        public var copied = 0
        public var alreadyThere = 0
        /// Objects the source deleted while the copy ran (the garbage collector's), not needed.
        public var goneMeanwhile = 0
        public var bytes: Int64 = 0
        /// The last log record the destination holds.
        public var through: UInt64 = 0
        /// For a move: the redirect left in the source.
        public var redirect: ShareRedirect?
        public var seconds = 0.0
    }

    public let source: any ObjectStore
    public let destination: any ObjectStore
    /// Objects copied at once.
    public var width = 8

    public init(source: any ObjectStore, destination: any ObjectStore) {
        self.source = source
        self.destination = destination
    }

    /// A transfer between the stores the two URLs name.
    public init(sourceURL: String, destinationURL: String) throws {
        self.init(source: try StoreLocator.open(sourceURL), destination: try StoreLocator.open(destinationURL))
    }

    /// The destination, safe to print.
    public var destinationName: String { destination.displayName }

    /// Copies every object of the share (log records up to `through` only, when given; never a move record
    /// or the move marker).
    public func copy(through: UInt64? = nil, progress: ProgressHandler? = nil) async throws -> Report {
        let started = Date()
        let sourceShare = try await CloudShare.open(source)
        let shareID = sourceShare.manifest.shareID
        do {
            let existing = try await CloudShare.open(destination)
            guard existing.manifest.shareID == shareID else {
                throw GatewayError("\(destination.displayName) holds another share (\(existing.manifest.shareID), not \(shareID)); nothing was copied")
            }
        } catch let error as ShareError where error.code == .noShare {
            // No share there yet: the copy makes it.
        }
        // The log first: every pack its records reference is then already in the listing that follows.
        var log = try await source.listAll(prefix: "log/").filter { info in
            CommitLog.sequence(ofKey: info.key).map { through == nil || $0 <= through! } ?? false
        }
        if let last = log.last, let sequence = CommitLog.sequence(ofKey: last.key), try await sourceShare.log.read(sequence).movedTo != nil {
            log.removeLast()
        }
        let others = try await source.listAll(prefix: "").filter {
            !$0.key.hasPrefix("log/") && $0.key != ShareManifest.key && $0.key != ShareRedirect.markerKey
        }
        let present = Dictionary(try await destination.listAll(prefix: "").map { ($0.key, $0.size) }, uniquingKeysWith: { a, _ in a })
        var report = Report()
        report.objects = others.count + log.count + 1
        let total = others.reduce(0) { $0 + $1.size } + log.reduce(0) { $0 + $1.size }
        var lastProgress = Date()
        func copied(_ outcome: Outcome) {
            switch outcome {
            case .copied(let bytes):
                report.copied += 1
                report.bytes += bytes
            case .alreadyThere: report.alreadyThere += 1
            case .gone: report.goneMeanwhile += 1
            }
            if let progress, Date().timeIntervalSince(lastProgress) > 0.5 {
                lastProgress = Date()
                progress(JobProgress(phase: "copying", items: report.copied + report.alreadyThere + report.goneMeanwhile, totalItems: report.objects,
                                     bytes: report.bytes, elapsed: lastProgress.timeIntervalSince(started), totalBytes: total, unit: "objects"))
            }
        }
        // Packs, index segments, snapshots and the rest, then the log in order, then share.json.
        try await BoundedTasks.run(others, width: width, work: { [self] info in
            try await self.copyObject(info, present: present[info.key])
        }, collect: copied)
        for info in log {
            copied(try await copyObject(info, present: present[info.key]))
        }
        copied(try await copyObject(ObjectInfo(key: ShareManifest.key, size: 0), present: nil))
        report.through = log.last.flatMap { CommitLog.sequence(ofKey: $0.key) } ?? 0
        report.seconds = Date().timeIntervalSince(started)
        return report
    }

    enum Outcome: Sendable {
        case copied(Int64), alreadyThere, gone
    }

    /// Copies one object unless the destination has it (same size; for a log record, the same bytes).
    func copyObject(_ info: ObjectInfo, present: Int64?) async throws -> Outcome {
        let isRecord = info.key.hasPrefix("log/")
        if let present, present == info.size, !isRecord, info.key != ShareManifest.key { return .alreadyThere }
        let bytes: [UInt8]
        do {
            bytes = try await source.get(info.key)
        } catch let error as StoreError where error.code == .notFound {
            return .gone
        }
        // A pack's id is the SHA-256 of its bytes (`packs/<2 hex>/<id>`).
        if info.key.hasPrefix("packs/") {
            guard let id = info.key.split(separator: "/").last.flatMap({ Digest32(hex: String($0)) }) else {
                throw GatewayError("\(source.displayName): \(info.key) is not named like a pack; nothing more was copied")
            }
            guard bytes.withUnsafeBytes({ SHA256.hash($0) }) == id else {
                throw GatewayError("\(source.displayName): pack \(info.key) does not match its id (its bytes are damaged); nothing more was copied. Run `tiergate share verify` on the source")
            }
        }
        guard isRecord else {
            try await destination.put(info.key, bytes: bytes)
            return .copied(Int64(bytes.count))
        }
        // Log records are never overwritten: the destination's record must be this one.
        do {
            try await destination.putIfAbsent(info.key, bytes: bytes)
            return .copied(Int64(bytes.count))
        } catch let error as StoreError where error.code == .alreadyExists {
            guard try await destination.get(info.key) == bytes else {
                throw GatewayError("\(destination.displayName) already holds a different \(info.key): another share's log, or a copy that endpoints wrote to; nothing was overwritten")
            }
            return .alreadyThere
        }
    }

    /// Moves the share while its endpoints keep working: copies it, ends the source's log with a move
    /// record (the freeze), copies the records before it, and leaves `moved.json` beside the log. Endpoints
    /// that meet the record check the destination and carry on there from their cursor. A move that was
    /// interrupted (or already done) is finished by running it again.
    public func move(destinationURL: String, progress: ProgressHandler? = nil) async throws -> Report {
        let started = Date()
        let share = try await CloudShare.open(source)
        var report = try await copy(progress: progress)
        var redirect: ShareRedirect
        while true {
            let head = try await share.log.head()
            if head > 0, let existing = try await share.log.read(head).movedTo {
                guard existing.url == destinationURL, existing.shareID == share.manifest.shareID else {
                    throw GatewayError("the share at \(source.displayName) already moved to \(StoreLocator.redacted(existing.url)); nothing was changed")
                }
                redirect = existing
                break
            }
            redirect = ShareRedirect(url: destinationURL, shareID: share.manifest.shareID, through: head)
            if try await share.log.tryAppendMove(redirect) { break }
            // A writer appended first: copy its record too, and freeze after it.
        }
        // The tail: whatever was written before the freeze and after the first copy.
        let tail = try await copy(through: redirect.through, progress: progress)
        report.copied += tail.copied
        report.bytes += tail.bytes
        report.goneMeanwhile += tail.goneMeanwhile
        report.through = tail.through
        guard tail.through == redirect.through else {
            throw GatewayError("the destination's log ends at \(tail.through), not at \(redirect.through) where the source was frozen; run the move again")
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try await source.put(ShareRedirect.markerKey, bytes: Array(try encoder.encode(redirect)))
        report.redirect = redirect
        report.seconds = Date().timeIntervalSince(started)
        return report
    }
}

extension Gateway {
    /// Follows a share that moved: checks that the destination holds the same share with every record up
    /// to the move, then points the endpoint at it in config.json. The endpoint keeps its database and
    /// cursor, so nothing is uploaded or downloaded again. Returns the endpoint as configured now.
    static func follow(_ moved: ShareMoved, endpoint: EndpointConfig, directory: StateDirectory) async throws -> EndpointConfig {
        let redirect = moved.redirect
        let name = StoreLocator.redacted(redirect.url)
        let share: CloudShare
        do {
            share = try await CloudShare.open(StoreLocator.open(redirect.url))
        } catch {
            throw GatewayError("\(moved); but \(name) cannot be opened (\(error)), so endpoint \(endpoint.id) waits (retried at every pass; run `tiergate share move` again to finish a move that was interrupted)")
        }
        guard share.manifest.shareID == redirect.shareID, endpoint.shareID == nil || endpoint.shareID == redirect.shareID else {
            throw GatewayError("\(moved); but \(name) holds share \(share.manifest.shareID), so endpoint \(endpoint.id) stays where it is and does not sync")
        }
        let head = try await share.log.head()
        guard head >= redirect.through else {
            throw GatewayError("\(moved); its copy at \(name) ends at sequence \(head) so far, so endpoint \(endpoint.id) waits (retried at every pass; `tiergate share move` finishes it)")
        }
        guard var config = try directory.loadConfig(), let index = config.endpoints.firstIndex(where: { $0.id == endpoint.id }) else {
            throw GatewayError("endpoint \(endpoint.id) is no longer configured")
        }
        config.endpoints[index].share = redirect.url
        config.endpoints[index].shareID = redirect.shareID
        config.resolveStores()
        try directory.saveConfig(config)
        return config.endpoints[index]
    }
}
