import FUSE
import Foundation
import Glibc
import Synchronization

/// The mounted cache volume against the directory it mounts, in the same run on the same file system:
/// sequential write and read of one large file in 1 MiB blocks, and creating + stat-ing many small
/// files. The peer figure is the native directory; the note gives the mount's share of it.
///
/// Native and mounted runs alternate and each side keeps its best run, so that a burst of other load
/// on the machine does not land on one side only.
enum MountBench {
    static let group = BenchGroup(name: "mount", summary: "FUSE mount vs the native endpoint: sequential I/O, create+stat") { table in
        try run(table)
    }

    /// File size in MiB; `TIERGATE_BENCH_MOUNT_MIB` overrides the 1 GiB default.
    static var sizeMiB: Int {
        ProcessInfo.processInfo.environment["TIERGATE_BENCH_MOUNT_MIB"].flatMap(Int.init) ?? 1024
    }

    /// Files per create+stat run; `TIERGATE_BENCH_MOUNT_FILES` overrides 5,000.
    static var fileCount: Int {
        ProcessInfo.processInfo.environment["TIERGATE_BENCH_MOUNT_FILES"].flatMap(Int.init) ?? 5000
    }

    /// Alternating runs per figure; `TIERGATE_BENCH_MOUNT_RUNS` overrides 5.
    static var runs: Int {
        ProcessInfo.processInfo.environment["TIERGATE_BENCH_MOUNT_RUNS"].flatMap(Int.init) ?? 5
    }

    struct BenchError: Error, CustomStringConvertible {
        var description: String
    }

    static func run(_ table: BenchTable) throws {
        guard access("/dev/fuse", R_OK | W_OK) == 0 else { throw BenchError(description: "/dev/fuse is not usable") }
        var template = Array("\(NSTemporaryDirectory())/tiergate-bench-mount-XXXXXX".utf8CString)
        guard let created = mkdtemp(&template) else { throw BenchError(description: "mkdtemp failed: errno \(errno)") }
        let root = String(cString: created)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let native = root + "/native"
        let endpoint = root + "/endpoint"
        let mountpoint = root + "/mnt"
        for directory in [native, endpoint, mountpoint] {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
        let core = try PassthroughCore(endpoint: endpoint)
        let session = try MountSession.mount(core, at: mountpoint)
        defer { session.stop() }

        let block = 1 << 20
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: block, alignment: 4096)
        defer { buffer.deallocate() }
        for index in 0..<block { buffer[index] = UInt8(truncatingIfNeeded: index &* 131 &+ index >> 11) }
        let megabytes = Double(sizeMiB << 20) / 1e6
        let note = "\(sizeMiB) MiB file, 1 MiB blocks, best of \(runs) alternating runs"

        // Sequential write into the page cache (close included, no fsync: "hot" files).
        var (nativeTime, mountTime) = try alternate {
            try writeFile(native + "/seq.bin", buffer, blocks: sizeMiB)
        } mounted: {
            try writeFile(mountpoint + "/seq.bin", buffer, blocks: sizeMiB)
        }
        addRatio(table, "mount: sequential write", megabytes / mountTime, megabytes / nativeTime, "MB/s", note + "; close, no fsync")

        // The same with fsync: what a durable write costs end to end.
        (nativeTime, mountTime) = try alternate {
            try writeFile(native + "/seq.bin", buffer, blocks: sizeMiB, sync: true)
        } mounted: {
            try writeFile(mountpoint + "/seq.bin", buffer, blocks: sizeMiB, sync: true)
        }
        addRatio(table, "mount: sequential write + fsync", megabytes / mountTime, megabytes / nativeTime, "MB/s", note)

        // Reads of hot files. Through the daemon: the mount's own page cache is dropped before each run
        // (the endpoint's stays hot), so every byte crosses /dev/fuse.
        _ = try readFile(native + "/seq.bin", buffer, dropCache: false)
        _ = try readFile(endpoint + "/seq.bin", buffer, dropCache: false)
        (nativeTime, mountTime) = try alternate {
            try readFile(native + "/seq.bin", buffer, dropCache: false)
        } mounted: {
            try readFile(mountpoint + "/seq.bin", buffer, dropCache: true)
        }
        addRatio(table, "mount: sequential read via daemon", megabytes / mountTime, megabytes / nativeTime, "MB/s",
                 note + "; the mount's page cache dropped per run, the endpoint's hot")
        // And with the mount's page cache warm (keep_cache): the common case for a hot file read again.
        _ = try readFile(mountpoint + "/seq.bin", buffer, dropCache: false)
        (nativeTime, mountTime) = try alternate {
            try readFile(native + "/seq.bin", buffer, dropCache: false)
        } mounted: {
            try readFile(mountpoint + "/seq.bin", buffer, dropCache: false)
        }
        addRatio(table, "mount: sequential read, cached", megabytes / mountTime, megabytes / nativeTime, "MB/s",
                 note + "; pages kept across opens (keep_cache)")
        unlink(native + "/seq.bin")
        unlink(mountpoint + "/seq.bin")

        // Many small files: create (O_EXCL), close, stat; each run in a fresh directory.
        var round = 0
        for threads in [1, 4] {
            (nativeTime, mountTime) = try alternate {
                round += 1
                try createAndStat(in: native + "/c\(round)", threads: threads)
            } mounted: {
                round += 1
                try createAndStat(in: mountpoint + "/c\(round)", threads: threads)
            }
            addRatio(table, "mount: create+stat, \(threads) thread\(threads == 1 ? "" : "s")",
                     Double(fileCount) / mountTime, Double(fileCount) / nativeTime, "files/s",
                     "\(fileCount) empty files per run\(threads == 1 ? "" : ", one directory per thread"): "
                         + "open(O_CREAT|O_EXCL), close, stat; best of \(runs) alternating runs")
        }
    }

    /// Runs `native` and `mounted` in turn `runs` times; the best time of each.
    static func alternate(native: () throws -> Void, mounted: () throws -> Void) throws -> (native: Double, mounted: Double) {
        var best = (native: Double.infinity, mounted: Double.infinity)
        for _ in 0..<runs {
            best.native = min(best.native, try Stopwatch.seconds(native))
            best.mounted = min(best.mounted, try Stopwatch.seconds(mounted))
        }
        return best
    }

    static func addRatio(_ table: BenchTable, _ name: String, _ mounted: Double, _ native: Double, _ unit: String, _ note: String) {
        let percent = Int((mounted / native * 100).rounded())
        table.add(name, mounted, unit, peer: native, note: "\(percent) % of native (peer); " + note)
    }

    static func writeFile(_ path: String, _ block: UnsafeMutableRawBufferPointer, blocks: Int, sync: Bool = false) throws {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw BenchError(description: "open \(path): errno \(errno)") }
        defer { close(descriptor) }
        for _ in 0..<blocks {
            var done = 0
            while done < block.count {
                let count = write(descriptor, block.baseAddress! + done, block.count - done)
                guard count > 0 else { throw BenchError(description: "write \(path): errno \(errno)") }
                done += count
            }
        }
        if sync { guard fsync(descriptor) == 0 else { throw BenchError(description: "fsync \(path): errno \(errno)") } }
    }

    static func readFile(_ path: String, _ block: UnsafeMutableRawBufferPointer, dropCache: Bool) throws {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw BenchError(description: "open \(path): errno \(errno)") }
        defer { close(descriptor) }
        if dropCache { _ = posix_fadvise(descriptor, 0, 0, POSIX_FADV_DONTNEED) }
        while true {
            let count = read(descriptor, block.baseAddress, block.count)
            guard count >= 0 else { throw BenchError(description: "read \(path): errno \(errno)") }
            if count == 0 { return }
        }
    }

    static func createAndStat(in directory: String, threads: Int) throws {
        guard mkdir(directory, 0o755) == 0 else { throw BenchError(description: "mkdir \(directory): errno \(errno)") }
        let perThread = fileCount / threads
        let failures = FailureCount()
        let group = DispatchGroup()
        for thread in 0..<threads {
            let subdirectory = threads == 1 ? directory : directory + "/t\(thread)"
            if threads > 1 { mkdir(subdirectory, 0o755) }
            group.enter()
            Thread {
                var info = stat()
                for index in 0..<perThread {
                    let path = subdirectory + "/f\(index)"
                    let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
                    if descriptor < 0 || close(descriptor) != 0 || stat(path, &info) != 0 {
                        failures.record(errno)
                    }
                }
                group.leave()
            }.start()
        }
        group.wait()
        if let (count, error) = failures.summary {
            throw BenchError(description: "\(count) creates failed in \(directory), last errno \(error)")
        }
    }
}

/// Failures counted by the benchmark's threads.
final class FailureCount: Sendable {
    private let state = Mutex<(count: Int, lastErrno: Int32)>((0, 0))

    func record(_ error: Int32) {
        state.withLock { $0 = ($0.count + 1, error) }
    }

    /// The count and the last errno, nil when nothing failed.
    var summary: (Int, Int32)? {
        state.withLock { $0.count == 0 ? nil : ($0.count, $0.lastErrno) }
    }
}
