import Backends
import CloudShare
import Foundation
import Glibc
import Hashing

extension Gateway {
    /// What `tiergate restore` did.
    public struct RestoreReport: Sendable {
        /// Files written with their past content, and folders made.
        public var files = 0
        public var directories = 0
        /// Files that already held that version.
        public var unchanged = 0
        /// Bytes written.
        public var bytes: Int64 = 0
        /// Items left as they are, with the reason.
        public var refused: [(path: String, reason: String)] = []
    }

    /// Puts the file or folder at `path` (absolute, inside an endpoint of this server) back as it was at
    /// `point`, as a local edit that the next pass commits like any other. Files that have changes not
    /// synced yet are refused (the restore would overwrite them); items that exist now but did not then
    /// are left alone: a restore brings back, it never deletes.
    public func restore(path: String, at point: TreeExport.PointInTime) async throws -> RestoreReport {
        guard let (endpoint, relative) = try? locate(path) else {
            throw GatewayError("'\(path)' is in no endpoint of this server (see `tiergate endpoint list`)")
        }
        if !relative.isEmpty, let problem = SafePath.problem(with: relative) { throw GatewayError("'\(path)': \(problem)") }
        let share = try await CloudShare.open(try StoreLocator.open(endpoint.shareURL))
        let past = try await point.namespace(of: share)
        let items = relative.isEmpty ? past.entries.sorted { $0.key < $1.key } : past.tree(relative).sorted { $0.0 < $1.0 }
        guard !items.isEmpty else {
            throw GatewayError("'\(relative)' was not in the share at that point (`tiergate share history` lists its versions)")
        }
        let rootFD = try Posix.open(endpoint.path, O_RDONLY | O_DIRECTORY)
        defer { Glibc.close(rootFD) }
        var report = RestoreReport()
        var toWrite: [(path: String, entry: NamespaceEntry)] = []
        for (item, entry) in items {
            if let problem = SkipRules.reason(forPath: item) ?? SafePath.problem(with: item) {
                report.refused.append((item, problem))
                continue
            }
            do {
                let local = try LocalFiles.status(rootFD: rootFD, path: item)
                if entry.kind == .directory {
                    if local == nil {
                        let parent = try SafePath.openParent(rootFD: rootFD, path: item, create: true)
                        defer { Glibc.close(parent.fd) }
                        if mkdirat(parent.fd, parent.name, mode_t(entry.mode)) != 0 && errno != EEXIST { throw PosixError("mkdir", path: item, errno: errno) }
                        report.directories += 1
                    }
                    continue
                }
                if let local {
                    // Only what the share already holds may be replaced: anything else would be lost.
                    guard local.st_mode & S_IFMT == S_IFREG, let record = try state.entry(endpoint.id, item),
                          record.matches(LocalItem(path: item, local)) else {
                        report.refused.append((item, "it has changes not synced yet (sync first, or restore it elsewhere with `tiergate get --at`)"))
                        continue
                    }
                    // The same content (its fingerprint, or the very version) needs no write.
                    let sameContent = entry.fingerprintValue.map { $0 == record.fingerprint && record.size == entry.size }
                        ?? (record.fileID == entry.fileID && record.version == entry.version)
                    if sameContent && record.residency == .full {
                        report.unchanged += 1
                        continue
                    }
                }
                toWrite.append((item, entry))
            } catch {
                report.refused.append((item, "\(error)"))
            }
        }
        // The files' chunks are read together (coalesced GETs), each file written in place by rename.
        for (item, size, result) in await FileWriter.write(share: share, entries: toWrite, rootFD: rootFD, replace: true) {
            switch result {
            case .success:
                report.files += 1
                report.bytes += size
            case .failure(let error):
                report.refused.append((item, "\(await point.explain(error, path: item, sequence: past.sequence, share: share))"))
            }
        }
        return report
    }
}
