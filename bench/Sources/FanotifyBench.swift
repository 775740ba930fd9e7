import Fanotify
import Foundation
import Gateway
import Glibc

/// What marking stubs for pre-content events costs the files that are not stubs, and what a recall
/// costs the first reader.
///
/// All figures come from one ext4 filesystem made for the run on a loop device (direct I/O to its image,
/// so cold reads reach the disk): a filesystem mark must never cover a filesystem other processes use,
/// and every case then reads the same blocks. Hot (fully allocated) files are read
///  (a) with no fanotify group at all: the peer figure of every row,
///  (b) while a group holds per-inode marks on other files (the stubs),
///  (c) under a filesystem mark with an ignore mark on each hot file, and
///  (d) under a filesystem mark without ignore marks, where every read waits for the handler (what a
///      file costs until its ignore mark is in place).
/// Time to first byte is a 4 KiB read of a stub block that is not yet local, the handler filling the
/// 64 KiB around it from memory.
enum FanotifyBench {
    static let group = BenchGroup(name: "fanotify", summary: "pre-content marks: hot-file read speed per marking scheme, recall first byte") { table in
        try run(table)
    }

    /// Hot data in MiB; `TIERGATE_BENCH_FANOTIFY_MIB` overrides the 1 GiB default.
    static var hotMiB: Int {
        ProcessInfo.processInfo.environment["TIERGATE_BENCH_FANOTIFY_MIB"].flatMap(Int.init) ?? 1024
    }

    /// Stubs marked in case (b) and for the marking rate; `TIERGATE_BENCH_FANOTIFY_STUBS` overrides 10,000.
    static var stubCount: Int {
        ProcessInfo.processInfo.environment["TIERGATE_BENCH_FANOTIFY_STUBS"].flatMap(Int.init) ?? 10_000
    }

    static let hotFileMiB = 64
    static let firstByteReads = 200

    static func run(_ table: BenchTable) throws {
        var template = Array("\(NSTemporaryDirectory())/tiergate-bench-fanotify-XXXXXX".utf8CString)
        guard let created = mkdtemp(&template) else { throw BenchError("mkdtemp failed: errno \(errno)") }
        let root = String(cString: created)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let volume = try LoopVolume(image: root + "/volume.img", mountpoint: root + "/mnt", megabytes: hotMiB + 512)
        defer { volume.remove() }
        try PreContentMonitor.checkSupport(at: volume.mountpoint)

        // The data set: hot files, empty stubs to mark, and one stub to recall from.
        let hot = volume.mountpoint + "/hot"
        let stubs = volume.mountpoint + "/stubs"
        for directory in [hot, stubs] { guard mkdir(directory, 0o755) == 0 else { throw BenchError("mkdir \(directory): errno \(errno)") } }
        let hotFiles = (0..<max(1, hotMiB / hotFileMiB)).map { hot + "/hot-\($0).bin" }
        let block = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 4096)
        defer { block.deallocate() }
        for index in 0..<block.count { block[index] = UInt8(truncatingIfNeeded: index &* 131 &+ 17) }
        for path in hotFiles { try BenchFiles.writeFile(path, block, blocks: min(hotFileMiB, hotMiB)) }
        let stubFiles = (0..<stubCount).map { stubs + "/stub-\($0).bin" }
        for path in stubFiles {
            let descriptor = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0o644)
            guard descriptor >= 0, ftruncate(descriptor, 1 << 20) == 0 else { throw BenchError("create \(path): errno \(errno)") }
            close(descriptor)
        }
        sync()
        let hotBytes = Double(hotFiles.count * min(hotFileMiB, hotMiB)) * 1_048_576

        // Cases alternate within each round and each figure is the best over the rounds, so that load
        // from other work on the machine does not favour whichever case ran in a quiet moment.
        var native = HotFigures()
        var perInode = HotFigures()
        var ignored = HotFigures()
        var unignored = HotFigures()
        var markRate = 0.0
        // Case (d) costs one handler round trip per read(): measured on the first hot file only.
        let firstFile = Array(hotFiles.prefix(1))
        let firstBytes = hotBytes / Double(hotFiles.count)
        for _ in 0..<rounds {
            // (a) No group: the native figures.
            native.keepBest(try measureHot(hotFiles, bytes: hotBytes))

            // (b) Per-inode marks on the stubs only.
            do {
                let monitor = try PreContentMonitor { _ in .allow }
                defer { monitor.stop() }
                let seconds = try Stopwatch.seconds { for path in stubFiles { try monitor.markFile(atPath: path) } }
                markRate = max(markRate, Double(stubFiles.count) / seconds)
                perInode.keepBest(try measureHot(hotFiles, bytes: hotBytes))
                if monitor.statistics.events != 0 { throw BenchError("hot files produced events under per-inode marks") }
            }

            // (c) A filesystem mark, each hot file exempted by an ignore mark.
            do {
                let monitor = try PreContentMonitor { _ in .allow }
                defer { monitor.stop() }
                try monitor.markFilesystem(containing: volume.mountpoint)
                for path in hotFiles { try monitor.ignoreFile(atPath: path) }
                ignored.keepBest(try measureHot(hotFiles, bytes: hotBytes))
                if monitor.statistics.events != 0 { throw BenchError("ignored hot files produced events") }

                // (d) The same filesystem mark without the ignore marks: every read() is an event.
                for path in firstFile { try monitor.unignoreFile(atPath: path) }
                unignored.keepBest(try measureHot(firstFile, bytes: firstBytes, cold: false))
                if monitor.statistics.events == 0 { throw BenchError("the filesystem mark produced no events") }
            }
        }
        table.add("fanotify: mark stubs (per-inode marks)", markRate, "marks/s",
                  note: "\(stubFiles.count) files by path; the rate at which a restart re-marks stubs from the database")

        func add(_ label: String, _ figures: HotFigures, _ note: String) {
            for (name, figure, peer) in [("warm 128 KiB reads", figures.warm128K, native.warm128K),
                                         ("warm 4 KiB reads", figures.warm4K, native.warm4K),
                                         ("cold 1 MiB reads", figures.cold1M, native.cold1M)] where figure > 0 {
                let percent = String(format: "%.0f", 100 * figure / peer)
                table.add("fanotify: hot files, \(label), \(name)", figure, "MB/s", peer: peer, note: "\(percent) % of unwatched (peer); " + note)
            }
        }
        add("unwatched", native, "no fanotify group")
        add("per-inode marks on stubs", perInode, "\(stubFiles.count) stubs marked, hot files unmarked")
        add("fs mark + ignore marks", ignored, "filesystem mark, evictable ignore mark per hot file")
        add("fs mark, no ignore marks", unignored, "every read() answered by the handler (allow); first hot file only")

        try measureFirstByte(table, directory: volume.mountpoint)
    }

    /// Rounds of all cases; `TIERGATE_BENCH_FANOTIFY_ROUNDS` overrides 5.
    static var rounds: Int {
        ProcessInfo.processInfo.environment["TIERGATE_BENCH_FANOTIFY_ROUNDS"].flatMap(Int.init) ?? 5
    }

    struct HotFigures {
        var warm128K = 0.0
        var warm4K = 0.0
        var cold1M = 0.0

        mutating func keepBest(_ other: HotFigures) {
            warm128K = max(warm128K, other.warm128K)
            warm4K = max(warm4K, other.warm4K)
            cold1M = max(cold1M, other.cold1M)
        }
    }

    /// Read throughput of the hot files: from the page cache in 128 KiB and 4 KiB reads (best of three),
    /// and from disk in 1 MiB reads (each file's cache dropped first).
    static func measureHot(_ files: [String], bytes: Double, cold: Bool = true) throws -> HotFigures {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 4096)
        defer { buffer.deallocate() }
        for path in files { try readFile(path, UnsafeMutableRawBufferPointer(rebasing: buffer[..<(1 << 20)]), dropCache: false) }
        var figures = HotFigures()
        figures.warm128K = bytes / 1e6 / (try Stopwatch.best(of: 3) {
            for path in files { try readFile(path, UnsafeMutableRawBufferPointer(rebasing: buffer[..<(128 << 10)]), dropCache: false) }
        })
        figures.warm4K = bytes / 1e6 / (try Stopwatch.best(of: 3) {
            for path in files { try readFile(path, UnsafeMutableRawBufferPointer(rebasing: buffer[..<4096]), dropCache: false) }
        })
        if cold {
            figures.cold1M = bytes / 1e6 / (try Stopwatch.seconds {
                for path in files { try readFile(path, buffer, dropCache: true) }
            })
        }
        return figures
    }

    /// Time to first byte of reads that need a recall, and of reads of ranges already recalled.
    static func measureFirstByte(_ table: BenchTable, directory: String) throws {
        let size = 64 << 20
        let stub = directory + "/first-byte.bin"
        let content = [UInt8]((0..<size).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 9) | 1 })
        let descriptor = open(stub, O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw BenchError("create \(stub): errno \(errno)") }
        close(descriptor)
        try StubFile.withOpened(stub) { file in
            guard ftruncate(file.descriptor, off_t(size)) == 0 else { throw BenchError("ftruncate: errno \(errno)") }
            try file.punchOut()
        }
        let monitor = try PreContentMonitor { event in
            guard let range = event.range else { return .deny(errno: EIO) }
            do {
                for hole in try event.holes(in: range.aligned(to: 65536, limit: event.size)) {
                    try content.withUnsafeBytes { bytes in
                        try event.write(UnsafeRawBufferPointer(rebasing: bytes[Int(hole.offset)..<Int(hole.end)]), at: hole.offset)
                    }
                }
                return .allow
            } catch {
                return .deny(errno: EIO)
            }
        }
        defer { monitor.stop() }
        try monitor.markFile(atPath: stub)

        // Blocks far enough apart that each read needs its own recall.
        let offsets = (0..<firstByteReads).map { ($0 * 5 % (size / 65536)) * 65536 + 1000 }
        let reader = open(stub, O_RDONLY | O_CLOEXEC)
        guard reader >= 0 else { throw BenchError("open \(stub): errno \(errno)") }
        defer { close(reader) }
        var buffer = [UInt8](repeating: 0, count: 4096)
        func timedReads() throws -> [Double] {
            try offsets.map { offset in
                let seconds = try Stopwatch.seconds {
                    let count = buffer.withUnsafeMutableBytes { pread(reader, $0.baseAddress, 4096, off_t(offset)) }
                    guard count == 4096 else { throw BenchError("pread at \(offset): \(count), errno \(errno)") }
                }
                guard buffer[0] == content[offset] else { throw BenchError("recalled byte at \(offset) is wrong") }
                return seconds * 1e6
            }
        }
        let recall = try timedReads().sorted()
        let present = try timedReads().sorted()
        let plainPath = directory + "/hot/hot-0.bin"
        let plain = open(plainPath, O_RDONLY | O_CLOEXEC)
        guard plain >= 0 else { throw BenchError("open \(plainPath): errno \(errno)") }
        defer { close(plain) }
        let native = try offsets.map { offset in
            try Stopwatch.seconds {
                guard buffer.withUnsafeMutableBytes({ pread(plain, $0.baseAddress, 4096, off_t(offset)) }) == 4096 else {
                    throw BenchError("pread \(plainPath): errno \(errno)")
                }
            } * 1e6
        }.sorted()
        func percentile(_ values: [Double], _ p: Double) -> Double { values[min(values.count - 1, Int(Double(values.count) * p))] }
        table.add("fanotify: first byte, recall p50", percentile(recall, 0.5), "µs", peer: percentile(native, 0.5),
                  note: "\(firstByteReads) 4 KiB reads of stub blocks, handler fills 64 KiB from memory; peer: warm read of a hot file")
        table.add("fanotify: first byte, recall p99", percentile(recall, 0.99), "µs", peer: percentile(native, 0.99), note: "")
        table.add("fanotify: read of a recalled range p50", percentile(present, 0.5), "µs", peer: percentile(native, 0.5),
                  note: "the range is local; still one event per read() while the file is marked")
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
}

/// A scratch ext4 filesystem on a loop device, mounted for the run and removed after it.
struct LoopVolume {
    let image: String
    let mountpoint: String
    let device: String

    init(image: String, mountpoint: String, megabytes: Int) throws {
        self.image = image
        self.mountpoint = mountpoint
        guard geteuid() == 0 else {
            throw BenchError("needs root: a scratch ext4 loop mount (and CAP_SYS_ADMIN for fanotify)")
        }
        let descriptor = open(image, O_CREAT | O_WRONLY | O_CLOEXEC, 0o600)
        guard descriptor >= 0, ftruncate(descriptor, off_t(megabytes) << 20) == 0 else {
            throw BenchError("create \(image): errno \(errno)")
        }
        close(descriptor)
        try Self.run("/usr/sbin/mkfs.ext4", ["-q", "-F", image])
        guard mkdir(mountpoint, 0o755) == 0 else { throw BenchError("mkdir \(mountpoint): errno \(errno)") }
        // Direct I/O to the image: cold reads then reach the disk instead of the image's page cache.
        device = try Self.run("/usr/sbin/losetup", ["-f", "--show", "--direct-io=on", image]).trimmingCharacters(in: .whitespacesAndNewlines)
        do {
            try Self.run("/usr/bin/mount", ["-t", "ext4", device, mountpoint])
        } catch {
            _ = try? Self.run("/usr/sbin/losetup", ["-d", device])
            throw error
        }
        // The filesystem mark is only ever placed on this volume: prove it is a mount of its own.
        var inner = stat()
        var outer = stat()
        guard stat(mountpoint, &inner) == 0, stat(mountpoint + "/..", &outer) == 0, inner.st_dev != outer.st_dev else {
            remove()
            throw BenchError("\(mountpoint) is not a separate filesystem")
        }
    }

    func remove() {
        _ = try? Self.run("/usr/bin/umount", [mountpoint])
        _ = try? Self.run("/usr/sbin/losetup", ["-d", device])
        unlink(image)
    }

    @discardableResult
    static func run(_ executable: String, _ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let output = Pipe()
        let errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let errorText = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw BenchError("\(executable) \(arguments.joined(separator: " ")) failed: \(errorText)")
        }
        return text
    }
}
