import Backends
import CloudShare
import Foundation
import Glibc

/// Restoring a share's namespace into a local directory (`tiergate get`), verifying every chunk.
public enum TreeExport {
    /// What a restore did.
    public struct Report: Sendable {
        /// Files written.
        public var files = 0
        /// Directories created.
        public var directories = 0
        /// Bytes written.
        public var bytes: Int64 = 0
        /// Items not written, with reasons.
        public var skipped: [SkippedItem] = []
        /// Seconds taken.
        public var seconds = 0.0

        /// One line for people.
        public var summary: String {
            let rate = seconds > 0 ? Double(files) / seconds : 0
            let mbps = seconds > 0 ? Double(bytes) / seconds / 1e6 : 0
            var text = "restored \(files) files and \(directories) directories (\(ByteFormat.string(bytes))) in \(String(format: "%.2f", seconds)) s — \(Int(rate)) files/s, \(String(format: "%.1f", mbps)) MB/s"
            for item in skipped.prefix(20) { text += "\n  not restored \(ConsoleText.safe(item.path)): \(item.reason)" }
            if skipped.count > 20 { text += "\n  … and \(skipped.count - 20) more not restored" }
            return text
        }
    }

    /// Opens the share at `url` and restores it into `destination`, reading at most `bandwidthLimit` bytes
    /// per second when given.
    public static func run(url: String, destination: String, at point: PointInTime? = nil, subtree: String? = nil,
                           bandwidthLimit: Int64? = nil, progress: ProgressHandler? = nil) async throws -> Report {
        let store = NetworkLimit(directory: nil, fixedLimit: bandwidthLimit).wrap(try StoreLocator.open(url))
        return try await run(share: try await CloudShare.open(store), destination: destination, at: point, subtree: subtree, progress: progress)
    }

    /// A past state of a share: right after a log sequence, or as of a time.
    public enum PointInTime: Sendable, Equatable {
        case sequence(UInt64)
        case time(Date)

        /// `#123` or `123` (a sequence), or an ISO 8601 date and time (`2026-12-01T09:30:00Z`, or local time
        /// without a zone), or a date alone (its midnight, local time).
        public init?(_ text: String) {
            let digits = text.hasPrefix("#") ? String(text.dropFirst()) : text
            if let sequence = UInt64(digits), sequence > 0 {
                self = .sequence(sequence)
                return
            }
            for format in ["yyyy-MM-dd'T'HH:mm:ssXXXXX", "yyyy-MM-dd'T'HH:mm:ss", "yyyy-MM-dd'T'HH:mmXXXXX", "yyyy-MM-dd'T'HH:mm", "yyyy-MM-dd HH:mm:ss", "yyyy-MM-dd HH:mm", "yyyy-MM-dd"] {
                let formatter = DateFormatter()
                formatter.locale = Locale(identifier: "en_US_POSIX")
                formatter.dateFormat = format
                if let date = formatter.date(from: text) {
                    self = .time(date)
                    return
                }
            }
            return nil
        }

        /// The share's namespace at this point.
        func namespace(of share: CloudShare) async throws -> Namespace {
            switch self {
            case .sequence(let sequence): try await share.namespace(through: sequence)
            case .time(let date): try await share.namespace(asOf: date)
            }
        }

        /// `#42`, or the time in ISO 8601.
        public var description: String {
            switch self {
            case .sequence(let sequence): "#\(sequence)"
            case .time(let date): ISO8601DateFormatter().string(from: date)
            }
        }

        /// The error to report for `path`, whose content at this point (the namespace at `sequence`) could
        /// not be read: when a chunk is missing and the share's retention policy does not keep that version,
        /// it says so (the garbage collector deleted its data); any other error is returned as it is.
        func explain(_ error: any Error, path: String, sequence: UInt64, share: CloudShare) async -> any Error {
            guard let shareError = error as? ShareError, shareError.code == .missingChunk,
                  let policy = try? await RetentionPolicy.load(from: share.store), !policy.keepsEverything,
                  let base = try? await share.historyBase(), let commits = try? await share.log.records(after: base) else { return error }
            let versions = commits.map { RetentionPolicy.Version(sequence: $0.sequence, time: $0.time) }
            guard !policy.retained(versions, now: Date().timeIntervalSince1970, heldFrom: nil).contains(sequence) else { return error }
            return GatewayError("'\(path)' as it was at \(description)\(description == "#\(sequence)" ? "" : " (the share at #\(sequence))") cannot be restored: that version is outside the share's retention (\(ShareAdmin.describe(policy))), and the garbage collector deleted its data; nothing of it was written (`tiergate share history` lists its versions)")
        }
    }

    /// Restores `share`'s namespace at its log head (or at `point`) into `destination`, only `subtree`
    /// (a file or folder, with its path kept) when given; existing files are kept.
    public static func run(share: CloudShare, destination: String, at point: PointInTime? = nil, subtree: String? = nil,
                           parallelBatches: Int = 4, progress: ProgressHandler? = nil) async throws -> Report {
        let started = Date()
        var selected: Namespace
        if let point { selected = try await point.namespace(of: share) } else { selected = try await share.namespace() }
        if let subtree {
            let kept = selected.tree(subtree)
            guard !kept.isEmpty else {
                throw GatewayError("'\(subtree)' is not in the share\(point.map { _ in " at that point" } ?? "") (`tiergate share history` lists its versions)")
            }
            // The folders above it come along, so the restored item keeps its path below the destination.
            var entries = Dictionary(uniqueKeysWithValues: kept)
            for ancestor in subtree.folderAncestors {
                let parent = String(ancestor)
                if let folder = selected.entries[parent] { entries[parent] = folder }
            }
            selected = Namespace(entries: entries, sequence: selected.sequence)
        }
        let namespace = selected
        try Posix.makeDirectories(destination)
        let rootFD = try Posix.open(destination, O_RDONLY | O_DIRECTORY)
        defer { close(rootFD) }
        var report = Report()
        let paths = namespace.entries.keys.sorted()
        for path in paths where namespace.entries[path]!.kind == .directory {
            if let problem = SafePath.problem(with: path) {
                report.skipped.append(SkippedItem(path: path, reason: problem))
                continue
            }
            do {
                let parent = try SafePath.openParent(rootFD: rootFD, path: path, create: true)
                defer { close(parent.fd) }
                if mkdirat(parent.fd, parent.name, mode_t(namespace.entries[path]!.mode)) != 0 && errno != EEXIST {
                    throw PosixError("mkdir", path: path, errno: errno)
                }
                report.directories += 1
            } catch let error as PosixError {
                report.skipped.append(SkippedItem(path: path, reason: error.reason))
            }
        }
        let files = paths.filter { namespace.entries[$0]!.kind == .file }
        var lastReport = Date()
        // Files are written in batches whose chunks are read together (small files share packs).
        var entries: [(path: String, entry: NamespaceEntry)] = []
        for path in files {
            if let problem = SafePath.problem(with: path) {
                report.skipped.append(SkippedItem(path: path, reason: problem))
            } else {
                entries.append((path, namespace.entries[path]!))
            }
        }
        try await BoundedTasks.run(ShareContentWriter.batches(entries) { $0.entry.size }, width: parallelBatches, work: { batch in
            await FileWriter.write(share: share, entries: batch, rootFD: rootFD, replace: false)
        }, collect: { results in
            for (path, size, result) in results {
                switch result {
                case .success:
                    report.files += 1
                    report.bytes += size
                case .failure(let error as PosixError):
                    report.skipped.append(SkippedItem(path: path, reason: error.reason))
                case .failure(let error):
                    guard let point else { throw error }
                    throw await point.explain(error, path: path, sequence: namespace.sequence, share: share)
                }
            }
            if let progress, Date().timeIntervalSince(lastReport) > 0.5 {
                lastReport = Date()
                progress(JobProgress(phase: "restoring", items: report.files, totalItems: files.count, bytes: report.bytes, elapsed: lastReport.timeIntervalSince(started)))
            }
        })
        report.seconds = Date().timeIntervalSince(started)
        return report
    }
}

/// Writing files' content from a share: each into a temporary file in its directory, fsynced, then
/// renamed into place, so that readers never see half a file.
public enum FileWriter {
    /// Writes each entry's content to its path beneath `rootFD`, with its mode and mtime, reading the
    /// chunks of all of them together. With `replace` false an existing file is kept (EEXIST). Returns
    /// each path with its size and whether it was written.
    public static func write(share: CloudShare, entries: [(path: String, entry: NamespaceEntry)], rootFD: Int32,
                             replace: Bool) async -> [(path: String, size: Int64, result: Result<Void, any Error>)] {
        var results: [(path: String, size: Int64, result: Result<Void, any Error>)] = []
        var opened: [(path: String, entry: NamespaceEntry, parent: Int32, name: String, temporary: String, fd: Int32)] = []
        var open: Set<Int> = []     // positions in `opened` not finished yet
        for (path, entry) in entries {
            do {
                let parent = try SafePath.openParent(rootFD: rootFD, path: path, create: true)
                let temporary = ".tg-\(UUID().uuidString.prefix(8))-\(parent.name.prefix(64))"
                let fd: Int32
                do {
                    fd = try Posix.call("open", path: path) { openat(parent.fd, temporary, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600) }
                } catch {
                    close(parent.fd)
                    throw error
                }
                open.insert(opened.count)
                opened.append((path, entry, parent.fd, parent.name, temporary, fd))
            } catch {
                results.append((path, 0, .failure(error)))
            }
        }
        func finish(_ position: Int, _ written: Result<ShareContentWriter.Written, any Error>) {
            let (path, entry, parent, name, temporary, fd) = opened[position]
            open.remove(position)
            var renamed = false
            defer {
                close(fd)
                if !renamed { unlinkat(parent, temporary, 0) }
                close(parent)
            }
            do {
                _ = try written.get()
                try Posix.call("fchmod", path: path) { fchmod(fd, mode_t(entry.mode)) }
                if geteuid() == 0 { _ = fchown(fd, entry.uid, entry.gid) }
                var times = [Posix.timespec(nanoseconds: entry.mtime), Posix.timespec(nanoseconds: entry.mtime)]
                try Posix.call("futimens", path: path) { futimens(fd, &times) }
                try Posix.fsync(fd, path: path)
                if replace {
                    try Posix.call("rename", path: path) { renameat(parent, temporary, parent, name) }
                    renamed = true
                } else {
                    // link(2) never replaces: the existing file wins and the temporary is removed.
                    try Posix.call("link", path: path) { linkat(parent, temporary, parent, name, 0) }
                }
                results.append((path, entry.size, .success(())))
            } catch {
                results.append((path, 0, .failure(error)))
            }
        }
        var stopped: any Error = GatewayError("the share's reads ended early")
        do {
            try await ShareContentWriter.write(opened.map { ShareContentWriter.Target(fd: $0.fd, path: $0.path, chunks: $0.entry.chunks) },
                                               share: share) { position, written in finish(position, written) }
        } catch {
            stopped = error
        }
        // Only a cancelled read leaves files unfinished; they are dropped.
        for position in open.sorted() { finish(position, .failure(stopped)) }
        return results
    }
}
