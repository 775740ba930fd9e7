import Backends
import CloudShare
import FUSE
import Foundation
import Gateway
import Glibc
import Synchronization

/// The mounted cache volume against the directory it mounts, in the same run on the same file system:
/// sequential write and read of one large file in 1 MiB blocks, and creating + stat-ing many small
/// files. The peer figure is the native directory; the note gives the mount's share of it. Then the
/// time to first byte of a stub read through a mount the Gateway serves.
///
/// Native and mounted runs alternate and each side keeps its best run, so that a burst of other load
/// on the machine does not land on one side only.
enum MountBench {
    static let group = BenchGroup(name: "mount", summary: "FUSE mount vs the native endpoint: sequential I/O, create+stat; first byte of a stub read") { table in
        try run(table)
        try await stubFirstByte(table)
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

    /// Stubs read for the first-byte figure; `TIERGATE_BENCH_MOUNT_STUBS` overrides 200.
    static var stubCount: Int {
        ProcessInfo.processInfo.environment["TIERGATE_BENCH_MOUNT_STUBS"].flatMap(Int.init) ?? 200
    }

    static func run(_ table: BenchTable) throws {
        guard access("/dev/fuse", R_OK | W_OK) == 0 else { throw BenchError("/dev/fuse is not usable") }
        let root = BenchFiles.fresh("mount")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let native = root + "/native"
        let endpoint = root + "/endpoint"
        let mountpoint = root + "/mnt"
        for directory in [native, endpoint, mountpoint] {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
        let core = try PassthroughCore(endpoint: endpoint)
        // `TIERGATE_BENCH_MOUNT_PASSTHROUGH=0` measures the mount with every read and write through the daemon.
        let passthrough = BenchFiles.setting("TIERGATE_BENCH_MOUNT_PASSTHROUGH", 1) != 0
        let session = try MountSession.mount(core, at: mountpoint, options: MountOptions(passthrough: passthrough))
        defer { session.stop() }

        let block = 1 << 20
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: block, alignment: 4096)
        defer { buffer.deallocate() }
        for index in 0..<block { buffer[index] = UInt8(truncatingIfNeeded: index &* 131 &+ index >> 11) }
        let megabytes = Double(sizeMiB << 20) / 1e6
        // Full files are read and written by the kernel on the endpoint directly when passthrough is on.
        let note = "\(sizeMiB) MiB file, 1 MiB blocks, best of \(runs) alternating runs, passthrough \(session.isPassingThrough ? "on" : "off")"

        // Sequential write into the page cache (close included, no fsync: "hot" files).
        var (nativeTime, mountTime) = try alternate {
            try BenchFiles.writeFile(native + "/seq.bin", buffer, blocks: sizeMiB)
        } mounted: {
            try BenchFiles.writeFile(mountpoint + "/seq.bin", buffer, blocks: sizeMiB)
        }
        addRatio(table, "mount: sequential write", megabytes / mountTime, megabytes / nativeTime, "MB/s", note + "; close, no fsync")

        // The same with fsync: what a durable write costs end to end.
        (nativeTime, mountTime) = try alternate {
            try BenchFiles.writeFile(native + "/seq.bin", buffer, blocks: sizeMiB, sync: true)
        } mounted: {
            try BenchFiles.writeFile(mountpoint + "/seq.bin", buffer, blocks: sizeMiB, sync: true)
        }
        addRatio(table, "mount: sequential write + fsync", megabytes / mountTime, megabytes / nativeTime, "MB/s", note)

        // First reads of hot files: the mount's own page cache is dropped before each run (the
        // endpoint's stays hot), so without passthrough every byte crosses /dev/fuse.
        _ = try readFile(native + "/seq.bin", buffer, dropCache: false)
        _ = try readFile(endpoint + "/seq.bin", buffer, dropCache: false)
        (nativeTime, mountTime) = try alternate {
            try readFile(native + "/seq.bin", buffer, dropCache: false)
        } mounted: {
            try readFile(mountpoint + "/seq.bin", buffer, dropCache: true)
        }
        addRatio(table, "mount: sequential read, first", megabytes / mountTime, megabytes / nativeTime, "MB/s",
                 note + "; the mount's page cache dropped per run, the endpoint's hot")
        // And with the mount's page cache warm (keep_cache): the common case for a hot file read again.
        _ = try readFile(mountpoint + "/seq.bin", buffer, dropCache: false)
        (nativeTime, mountTime) = try alternate {
            try readFile(native + "/seq.bin", buffer, dropCache: false)
        } mounted: {
            try readFile(mountpoint + "/seq.bin", buffer, dropCache: false)
        }
        addRatio(table, "mount: sequential read, cached", megabytes / mountTime, megabytes / nativeTime, "MB/s",
                 note + "; pages kept across opens (keep_cache, or the endpoint's with passthrough)")
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

    /// Time to first byte of a stub read through the mount: an endpoint synced to a `file://` share,
    /// every file tiered, the endpoint mounted by the Gateway; then each stub is opened through the
    /// mount and its first 4 KiB read, which waits for the recall of the chunk that holds them.
    static func stubFirstByte(_ table: BenchTable) async throws {
        let root = BenchFiles.fresh("mount-stubs")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let shareURL = "file://\(root)/share"
        _ = try await CloudShare.create(in: try StoreLocator.open(shareURL))
        let endpointPath = root + "/endpoint", mountpoint = root + "/mnt"
        for directory in [endpointPath, mountpoint] {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
        let count = stubCount, size = 16 << 10, head = 4 << 10
        BenchFiles.smallFiles(at: endpointPath, count: count, size: size)
        let paths = (0..<count).map { "d\($0 % 100)/f\($0)" }
        let originals = try paths.map { try headBytes(endpointPath + "/" + $0, count: head) }

        let gateway = try Gateway(directory: StateDirectory(path: root + "/state"), serverName: "mount-bench")
        let endpoint = try await gateway.addEndpoint(path: endpointPath, shareURL: shareURL)
        _ = try await gateway.sync(endpoint)
        let tiered = try await gateway.tier(endpointPath)
        guard tiered.files == count else {
            throw BenchError("tiered \(tiered.files) of \(count) files: \(tiered.failures.first ?? "")")
        }
        BenchFiles.settle()
        let session = try await gateway.mount(endpoint, at: mountpoint)
        defer { session.stop() }

        // The reads block until the Gateway's recall, which runs on the cooperative pool: they run on
        // a thread of their own so that they cannot hold a pool thread the recall needs.
        var seconds = try await BenchFiles.onThread { () throws -> [Double] in
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: head, alignment: 4096)
            defer { buffer.deallocate() }
            return try paths.indices.map { index in
                let path = mountpoint + "/" + paths[index]
                var descriptor: Int32 = -1
                var count = 0
                var error: Int32 = 0
                let elapsed = Stopwatch.seconds {
                    descriptor = open(path, O_RDONLY | O_CLOEXEC)
                    if descriptor >= 0 { count = pread(descriptor, buffer.baseAddress, head, 0) }
                    error = errno
                }
                if descriptor >= 0 { close(descriptor) }
                guard descriptor >= 0, count == head else {
                    throw BenchError("reading \(path) through the mount: \(descriptor < 0 ? "open" : "pread") returned \(count), errno \(error)")
                }
                guard buffer.elementsEqual(originals[index]) else {
                    throw BenchError("\(path): the first \(head) bytes read through the mount differ from the original")
                }
                return elapsed
            }
        }
        seconds.sort()
        table.add("mount: first byte of a stub read p50", seconds[seconds.count / 2] * 1000, "ms",
                  note: "FUSE mount, file://, \(count) stubs of \(size >> 10) KiB; open + pread of the first \(head >> 10) KiB, bytes checked")
        table.add("mount: first byte of a stub read p95", seconds[seconds.count * 95 / 100] * 1000, "ms", note: "")
    }

    /// The first `count` bytes of a file.
    static func headBytes(_ path: String, count: Int) throws -> [UInt8] {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw BenchError("open \(path): errno \(errno)") }
        defer { close(descriptor) }
        var bytes = [UInt8](repeating: 0, count: count)
        guard pread(descriptor, &bytes, count, 0) == count else { throw BenchError("short read of \(path)") }
        return bytes
    }

    /// Runs `native` and `mounted` in turn `runs` times; the best time of each.
    /// Each run starts with no dirty pages (a `sync` first, not timed): a run must not pay for the
    /// writeback of the one before.
    static func alternate(native: () throws -> Void, mounted: () throws -> Void) throws -> (native: Double, mounted: Double) {
        var best = (native: Double.infinity, mounted: Double.infinity)
        for _ in 0..<runs {
            sync()
            best.native = min(best.native, try Stopwatch.seconds(native))
            sync()
            best.mounted = min(best.mounted, try Stopwatch.seconds(mounted))
        }
        return best
    }

    static func addRatio(_ table: BenchTable, _ name: String, _ mounted: Double, _ native: Double, _ unit: String, _ note: String) {
        let percent = Int((mounted / native * 100).rounded())
        table.add(name, mounted, unit, peer: native, note: "\(percent) % of native (peer); " + note)
    }

    static func readFile(_ path: String, _ block: UnsafeMutableRawBufferPointer, dropCache: Bool) throws {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw BenchError("open \(path): errno \(errno)") }
        defer { close(descriptor) }
        if dropCache { _ = posix_fadvise(descriptor, 0, 0, POSIX_FADV_DONTNEED) }
        while true {
            let count = read(descriptor, block.baseAddress, block.count)
            guard count >= 0 else { throw BenchError("read \(path): errno \(errno)") }
            if count == 0 { return }
        }
    }

    static func createAndStat(in directory: String, threads: Int) throws {
        guard mkdir(directory, 0o755) == 0 else { throw BenchError("mkdir \(directory): errno \(errno)") }
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
            throw BenchError("\(count) creates failed in \(directory), last errno \(error)")
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
