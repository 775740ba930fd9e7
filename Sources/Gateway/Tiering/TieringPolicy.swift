import Foundation
import Glibc

/// Which files to tier next, and why: the volume free-space policy (coldest first until the target is
/// met) and the date policy (not accessed for N days), over clean, full files above the minimum size.
public struct TieringPolicy: Sendable {
    /// One file the policy would tier.
    public struct Candidate: Sendable, Codable {
        /// Path relative to the endpoint.
        public var path: String
        /// Bytes it would free.
        public var size: Int64
        /// Last access (ns since the epoch): from the heat store, else the file's mtime.
        public var lastAccess: Int64
        /// Recorded accesses.
        public var accessCount: UInt32
        /// `free space` or `date`.
        public var reason: String
    }

    /// Figures of the volume an endpoint lives on.
    public struct Volume: Sendable, Codable {
        /// Device id (endpoints on one volume share the free-space policy).
        public var device: UInt64
        /// Total bytes.
        public var total: Int64
        /// Free bytes (available to unprivileged users).
        public var free: Int64
        /// Block size.
        public var blockSize: Int64
        /// Free space in percent.
        public var freePercent: Double { total > 0 ? Double(free) * 100 / Double(total) : 100 }
        /// Below 10 % free the volume is in low-disk mode: policies run every minute, recalls are not kept.
        public var isLowOnSpace: Bool { freePercent < 10 }
    }

    /// The volume holding `path`.
    public static func volume(of path: String) throws -> Volume {
        var info = statvfs()
        guard statvfs(path, &info) == 0 else { throw GatewayError("statvfs '\(path)': \(String(cString: strerror(errno)))") }
        var fileInfo = stat()
        stat(path, &fileInfo)
        let fragment = Int64(info.f_frsize)
        return Volume(device: UInt64(fileInfo.st_dev), total: Int64(info.f_blocks) * fragment, free: Int64(info.f_bavail) * fragment, blockSize: Int64(info.f_bsize))
    }

    /// Files smaller than this are never tiered: twice the volume's block size, at least 8 KiB.
    public static func minimumSize(_ volume: Volume) -> Int64 { max(8192, 2 * volume.blockSize) }

    /// The candidates of one endpoint, coldest first, with the reason each is chosen; `freeSpacePercent`
    /// is the effective free-space target (the largest of all endpoints on the volume).
    public static func evaluate(entries: [String: EntryRecord], heat: [String: HeatStore.Heat], volume: Volume,
                                freeSpacePercent: Int, dateDays: Int?, now: Int64 = Int64(Date().timeIntervalSince1970 * 1e9)) -> [Candidate] {
        let minimum = minimumSize(volume)
        var pool: [Candidate] = []
        pool.reserveCapacity(entries.count)
        for (path, record) in entries where record.kind == .file && record.residency == .full && record.size >= minimum {
            let recorded = heat[record.fileID]
            pool.append(Candidate(path: path, size: record.size, lastAccess: max(recorded?.lastAccess ?? 0, record.mtime),
                                  accessCount: recorded?.count ?? 0, reason: ""))
        }
        pool.sort { $0.lastAccess != $1.lastAccess ? $0.lastAccess < $1.lastAccess : $0.path < $1.path }

        var chosen: [Candidate] = []
        let target = Int64(Double(volume.total) * Double(freeSpacePercent) / 100)
        var needed = freeSpacePercent > 0 ? max(0, target - volume.free) : 0
        let cutoff = dateDays.map { now - Int64($0) * 86_400 * 1_000_000_000 }
        for var candidate in pool {
            if needed > 0 {
                candidate.reason = "free space"
                needed -= candidate.size
                chosen.append(candidate)
            } else if let cutoff, candidate.lastAccess < cutoff {
                candidate.reason = "date"
                chosen.append(candidate)
            } else if cutoff == nil {
                break
            }
        }
        return chosen
    }

    /// All cold-enough candidates ordered for display (`tiergate heat`), without the free-space cut-off.
    public static func ranking(entries: [String: EntryRecord], heat: [String: HeatStore.Heat], volume: Volume) -> [Candidate] {
        evaluate(entries: entries, heat: heat, volume: Volume(device: volume.device, total: Int64.max / 4, free: 0, blockSize: volume.blockSize),
                 freeSpacePercent: 100, dateDays: nil)
    }
}
