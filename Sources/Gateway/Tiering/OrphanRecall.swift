import Backends
import CloudShare
import Foundation
import Glibc
import Hashing

extension Gateway {
    /// Recalls the stubs at or below `path` that lie outside every endpoint (an endpoint removed with
    /// `--keep-stubs`, a stub moved or copied out of an endpoint): each comes back from the share its
    /// markers name (or `share`, a URL given by the operator), as the version it was tiered at, verified
    /// chunk by chunk and then as a whole against the share's fingerprint before its markers go.
    public func recallOrphans(_ path: String, share override: String? = nil, progress: ProgressHandler? = nil) async throws -> TieringResult {
        var info = stat()
        guard lstat(path, &info) == 0 else { throw PosixError("lstat", path: path, errno: errno) }
        let files: [String]
        switch info.st_mode & S_IFMT {
        case S_IFREG: files = [path]
        case S_IFDIR: files = try TreeWalker(root: path).walk().items.filter { !$0.isDirectory }.map { path + "/" + $0.path }
        default: throw GatewayError("'\(path)' is neither a file nor a folder: nothing to recall")
        }
        var shares: [String: CloudShare] = [:]
        var result = TieringResult()
        let started = Date()
        var last = Date()
        for file in files {
            do {
                if let bytes = try await recallOrphan(file, share: override, shares: &shares) {
                    result.files += 1
                    result.bytes += bytes
                }
            } catch {
                result.failures.append("\(file): \(error)")
            }
            if let progress, Date().timeIntervalSince(last) > 0.5 {
                last = Date()
                progress(JobProgress(phase: "recalling", items: result.files, totalItems: files.count, bytes: result.bytes, elapsed: last.timeIntervalSince(started)))
            }
        }
        if result.files == 0 && result.failures.isEmpty {
            result.failures.append("'\(path)' holds no stubs")
        }
        result.seconds = Date().timeIntervalSince(started)
        return result
    }

    /// Recalls one orphaned stub; nil when `file` is not a stub.
    private func recallOrphan(_ file: String, share override: String?, shares: inout [String: CloudShare]) async throws -> Int64? {
        let fd = try Posix.open(file, O_RDWR | O_NOFOLLOW | O_CLOEXEC)
        defer { Glibc.close(fd) }
        let stub = StubFile(descriptor: fd, path: file)
        guard try stub.state() != nil else { return nil }
        guard let origin = try stub.origin() else {
            throw GatewayError("its stub markers name no file id and version, so no share can tell its content")
        }
        let url: String
        if let override {
            url = override
        } else if !origin.share.isEmpty {
            url = origin.share
        } else if let known = config.endpoints.first(where: { $0.shareID == origin.shareID && !origin.shareID.isEmpty }) {
            url = known.share
        } else {
            throw GatewayError("it was tiered before stubs named their share; give the share's URL with --share")
        }
        let share: CloudShare
        if let open = shares[url] {
            share = open
        } else {
            share = try await CloudShare.open(StoreLocator.open(url))
            try await share.loadIndex()
            shares[url] = share
        }
        if !origin.shareID.isEmpty && share.manifest.shareID != origin.shareID {
            throw GatewayError("the share at \(share.name) is share \(share.manifest.shareID), but the stub belongs to share \(origin.shareID)")
        }
        guard let entry = try await share.committedEntry(fileID: origin.fileID, version: origin.version) else {
            throw GatewayError("the share holds no content of its file id \(origin.fileID) at version \(origin.version)"
                               + " (the version of a stub whose server no longer syncs is kept only while the share's retention keeps it)")
        }
        let before = try stub.status()
        guard Int64(before.st_size) == entry.size else {
            throw GatewayError("it is \(before.st_size) bytes, but its content in the share is \(entry.size): it changed since it was tiered and is left as it is")
        }
        let written = try await RecallEngine.fill(from: ShareConnection(share, name: share.name), fd: fd, size: entry.size, layout: entry.chunks, range: nil) { bytes, offset in
            try Posix.pwriteAll(fd, bytes, offset: offset, path: file)
        }
        if let expected = entry.fingerprintValue {
            let got = try LocalFiles.fingerprint(fd: fd, path: file)
            guard got == expected else {
                throw GatewayError("the recalled content does not match the share's fingerprint (\(got) instead of \(expected)); its markers stay")
            }
        }
        try stub.becomeWhole(times: [before.st_atim, before.st_mtim])
        return written
    }
}
