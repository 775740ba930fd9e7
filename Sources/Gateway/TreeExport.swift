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
    }

    /// Restores `share`'s namespace at its log head (or at `point`) into `destination`, only `subtree`
    /// (a file or folder, with its path kept) when given; existing files are kept.
    public static func run(share: CloudShare, destination: String, at point: PointInTime? = nil, subtree: String? = nil,
                           parallelFiles: Int = 8, progress: ProgressHandler? = nil) async throws -> Report {
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
            var parent = subtree
            while let slash = parent.lastIndex(of: "/") {
                parent = String(parent[..<slash])
                if let folder = selected.entries[parent] { entries[parent] = folder }
            }
            selected.entries = entries
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
        try await BoundedTasks.run(files, width: parallelFiles, work: { path -> (String, Int64, String?) in
            if let problem = SafePath.problem(with: path) { return (path, 0, problem) }
            let entry = namespace.entries[path]!
            do {
                try await FileWriter.write(share: share, entry: entry, rootFD: rootFD, path: path, replace: false)
                return (path, entry.size, nil)
            } catch let error as PosixError {
                return (path, 0, error.reason)
            }
        }, collect: { path, bytes, problem in
            if let problem {
                report.skipped.append(SkippedItem(path: path, reason: problem))
            } else {
                report.files += 1
                report.bytes += bytes
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

/// Writing one file's content from a share: into a temporary file in the same directory, fsynced, then
/// renamed into place, so that readers never see half a file.
public enum FileWriter {
    /// Writes `entry`'s content to `path` beneath `rootFD`, with its mode and mtime. With `replace`
    /// false an existing file is kept (EEXIST).
    public static func write(share: CloudShare, entry: NamespaceEntry, rootFD: Int32, path: String, replace: Bool) async throws {
        let parent = try SafePath.openParent(rootFD: rootFD, path: path, create: true)
        defer { close(parent.fd) }
        let temporary = ".tg-\(UUID().uuidString.prefix(8))-\(parent.name.prefix(64))"
        let fd = try Posix.call("open", path: path) { openat(parent.fd, temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600) }
        var renamed = false
        defer {
            close(fd)
            if !renamed { unlinkat(parent.fd, temporary, 0) }
        }
        for chunk in entry.chunks {
            let bytes = try await share.readChunk(chunk.id)
            try bytes.withUnsafeBytes { try Posix.writeAll(fd, $0, path: path) }
        }
        try Posix.call("fchmod", path: path) { fchmod(fd, mode_t(entry.mode)) }
        if geteuid() == 0 { _ = fchown(fd, entry.uid, entry.gid) }
        var times = [Posix.timespec(nanoseconds: entry.mtime),
                     Posix.timespec(nanoseconds: entry.mtime)]
        try Posix.call("futimens", path: path) { futimens(fd, &times) }
        try Posix.fsync(fd, path: path)
        if replace {
            try Posix.call("rename", path: path) { renameat(parent.fd, temporary, parent.fd, parent.name) }
            renamed = true
        } else {
            // link(2) never replaces: the existing file wins and the temporary is removed.
            try Posix.call("link", path: path) { linkat(parent.fd, temporary, parent.fd, parent.name, 0) }
        }
    }
}
