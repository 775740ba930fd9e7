import Backends
import Chunking
import CloudShare
import Foundation
import Glibc

/// Progress of a long-running job, reported every few hundred milliseconds.
public struct JobProgress: Sendable {
    /// What the job is doing (`storing`, `restoring`, …).
    public var phase: String
    /// Items done so far.
    public var items: Int
    /// Items in total, when known.
    public var totalItems: Int?
    /// Bytes done so far.
    public var bytes: Int64
    /// Seconds since the job started.
    public var elapsed: Double
}

/// A callback receiving progress.
public typealias ProgressHandler = @Sendable (JobProgress) -> Void

/// Storing a local directory tree into a cloud share as a direct cloud edit (`tiergate put`).
public enum TreeImport {
    /// What an import did.
    public struct Report: Sendable {
        /// Files stored.
        public var files = 0
        /// Directories recorded.
        public var directories = 0
        /// Bytes of file content read.
        public var bytes: Int64 = 0
        /// Bytes of new chunks stored (after dedup).
        public var newBytes: Int64 = 0
        /// Packs written.
        public var packs = 0
        /// Items not stored, with reasons.
        public var skipped: [SkippedItem] = []
        /// The log sequence number of the last commit.
        public var sequence: UInt64 = 0
        /// Seconds taken.
        public var seconds = 0.0

        /// One line for people.
        public var summary: String {
            let rate = seconds > 0 ? Double(files) / seconds : 0
            let mbps = seconds > 0 ? Double(bytes) / seconds / 1e6 : 0
            return "stored \(files) files and \(directories) directories (\(ByteFormat.string(bytes)), \(ByteFormat.string(newBytes)) new after dedup, \(packs) packs) at log sequence \(sequence) in \(String(format: "%.2f", seconds)) s — \(Int(rate)) files/s, \(String(format: "%.1f", mbps)) MB/s; \(skipped.count) skipped"
        }
    }

    /// Operations per commit: large trees become several commits, each referencing only durable chunks.
    static let operationsPerCommit = 50_000

    /// Opens the share at `url` and stores `source` under `destination` (a path inside the share).
    public static func run(url: String, source: String, destination: String = "", progress: ProgressHandler? = nil) async throws -> Report {
        let share = try await ShareAdmin.open(url: url)
        return try await run(share: share, source: source, destination: destination, progress: progress)
    }

    /// Stores `source` into `share` under `destination`.
    public static func run(share: CloudShare, source: String, destination: String = "", progress: ProgressHandler? = nil) async throws -> Report {
        let started = Date()
        let walked = try TreeWalker(root: source).walk()
        let sourceFD = try Posix.open(source, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        defer { close(sourceFD) }
        let chunker = FastCDC(share.manifest.chunking)
        let prefix = destination.split(separator: "/").joined(separator: "/")
        var report = Report()
        report.skipped = walked.skipped
        var operations: [NamespaceOperation] = []
        var uploader = share.makeUploader()
        var lastReport = Date()
        let totalFiles = walked.items.count { !$0.isDirectory }

        func commit() async throws {
            guard !operations.isEmpty else { return }
            try await uploader.finish()
            report.packs += uploader.packs.count
            report.newBytes += uploader.storedBytes
            let record = share.commit(author: "cloud", authorName: "Cloud", operations: operations)
            report.sequence = try await share.log.append(record, knownHead: report.sequence)
            operations.removeAll(keepingCapacity: true)
            uploader = share.makeUploader()
        }

        for item in walked.items {
            let path = prefix.isEmpty ? item.path : prefix + "/" + item.path
            if item.isDirectory {
                operations.append(.upsert(path, NamespaceEntry(kind: .directory, fileID: NamespaceEntry.newFileID(), size: 0,
                                                               mode: item.mode, mtime: item.mtime, uid: item.uid, gid: item.gid)))
                report.directories += 1
            } else {
                do {
                    let content = try await FileReader.store(rootFD: sourceFD, item: item, chunker: chunker, uploader: uploader)
                    let entry = NamespaceEntry(kind: .file, fileID: NamespaceEntry.newFileID(), size: content.size, mode: content.item.mode,
                                               mtime: content.item.mtime, uid: content.item.uid, gid: content.item.gid,
                                               chunks: content.chunks, fingerprint: content.fingerprint.description)
                    operations.append(.upsert(path, entry))
                    report.files += 1
                    report.bytes += content.size
                } catch let error as PosixError {
                    report.skipped.append(SkippedItem(path: item.path, reason: error.reason))
                } catch let error as FileReader.ChangedWhileReading {
                    report.skipped.append(SkippedItem(path: item.path, reason: error.description))
                } catch let error as FileReader.UnrecordedStub {
                    report.skipped.append(SkippedItem(path: item.path, reason: error.description))
                }
            }
            if operations.count >= operationsPerCommit { try await commit() }
            if let progress, Date().timeIntervalSince(lastReport) > 0.5 {
                lastReport = Date()
                progress(JobProgress(phase: "storing", items: report.files, totalItems: totalFiles, bytes: report.bytes, elapsed: lastReport.timeIntervalSince(started)))
            }
        }
        try await commit()
        report.seconds = Date().timeIntervalSince(started)
        return report
    }
}
