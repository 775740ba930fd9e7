import Foundation
import Glibc

/// Test trees and peer tools shared by the store and sync groups.
enum BenchFiles {
    /// Where benchmark trees go: `TIERGATE_BENCH_DIR`, else a folder in the temporary directory.
    static var base: String {
        let path = ProcessInfo.processInfo.environment["TIERGATE_BENCH_DIR"] ?? NSTemporaryDirectory() + "tiergate-bench"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// Runs blocking `body` on a new thread and waits for it without holding a cooperative pool thread
    /// (a read of a stub blocks until a recall that runs on that pool answers).
    static func onThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            Thread { continuation.resume(with: Result { try body() }) }.start()
        }
    }

    /// Writes `blocks` copies of `block` to `path` (created or truncated), then fsyncs it when `sync`.
    static func writeFile(_ path: String, _ block: UnsafeMutableRawBufferPointer, blocks: Int, sync: Bool = false) throws {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw BenchError("open \(path): errno \(errno)") }
        defer { close(descriptor) }
        for _ in 0..<blocks {
            var done = 0
            while done < block.count {
                let count = write(descriptor, block.baseAddress! + done, block.count - done)
                guard count > 0 else { throw BenchError("write \(path): errno \(errno)") }
                done += count
            }
        }
        if sync { guard fsync(descriptor) == 0 else { throw BenchError("fsync \(path): errno \(errno)") } }
    }

    /// An integer setting from the environment, else `fallback`.
    static func setting(_ name: String, _ fallback: Int) -> Int {
        ProcessInfo.processInfo.environment[name].flatMap(Int.init) ?? fallback
    }

    /// A fresh, empty directory under ``base``.
    static func fresh(_ name: String) -> String {
        let path = base + "/" + name
        try? FileManager.default.removeItem(atPath: path)
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// `count` files of `size` random bytes in 100 folders (distinct content, so nothing deduplicates).
    static func smallFiles(at root: String, count: Int, size: Int) {
        var state: UInt64 = 0x243f_6a88_85a3_08d3
        var buffer = [UInt8](repeating: 0, count: size)
        for folder in 0..<100 { mkdir(root + "/d\(folder)", 0o755) }
        for index in 0..<count {
            buffer.withUnsafeMutableBytes { raw in
                let words = raw.bindMemory(to: UInt64.self)
                for word in words.indices {
                    state ^= state << 13; state ^= state >> 7; state ^= state << 17
                    words[word] = state
                }
            }
            let fd = open(root + "/d\(index % 100)/f\(index)", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
            _ = buffer.withUnsafeBytes { write(fd, $0.baseAddress, size) }
            close(fd)
        }
    }

    /// `count` files of `size` bytes of random content, written in 8 MiB blocks.
    static func largeFiles(at root: String, count: Int, size: Int) {
        var state: UInt64 = 0x1319_8a2e_0370_7344
        let block = 8 << 20
        var buffer = [UInt8](repeating: 0, count: block)
        for index in 0..<count {
            let fd = open(root + "/large\(index).bin", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
            var written = 0
            while written < size {
                buffer.withUnsafeMutableBytes { raw in
                    let words = raw.bindMemory(to: UInt64.self)
                    for word in words.indices {
                        state ^= state << 13; state ^= state >> 7; state ^= state << 17
                        words[word] = state
                    }
                }
                let count = min(block, size - written)
                _ = buffer.withUnsafeBytes { write(fd, $0.baseAddress, count) }
                written += count
            }
            close(fd)
        }
    }

    /// Runs a command and returns its wall time in seconds; throws when it fails.
    @discardableResult
    static func time(_ executable: String, _ arguments: [String]) throws -> Double {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let started = Date()
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw BenchError("\(executable) \(arguments.joined(separator: " ")) exited with \(process.terminationStatus)")
        }
        return Date().timeIntervalSince(started)
    }

    /// The path of a tool on PATH, or nil.
    static func which(_ name: String) -> String? {
        for directory in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
            let path = "\(directory)/\(name)"
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        return nil
    }

    /// Flushes dirty pages so one measurement's writeback does not land in the next one's time.
    static func settle() { sync() }

    /// Every regular file below `root` (relative path → size), without an endpoint's own `.tiergate`
    /// folder: what two trees are compared by after a copy or a sync.
    static func listing(_ root: String) throws -> [String: Int] {
        var files: [String: Int] = [:]
        var folders = [""]
        while let folder = folders.popLast() {
            guard let directory = opendir(folder.isEmpty ? root : root + "/" + folder) else { throw BenchError("opendir \(root)/\(folder): errno \(errno)") }
            defer { closedir(directory) }
            while let entry = readdir(directory) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                if name == "." || name == ".." || (folder.isEmpty && name == ".tiergate") { continue }
                let path = folder.isEmpty ? name : folder + "/" + name
                var info = stat()
                guard lstat(root + "/" + path, &info) == 0 else { throw BenchError("lstat \(root)/\(path): errno \(errno)") }
                switch info.st_mode & S_IFMT {
                case S_IFDIR: folders.append(path)
                case S_IFREG: files[path] = Int(info.st_size)
                default: break
                }
            }
        }
        return files
    }

    /// The file system `path` lies on, for the report: type, and for ext4 whether it has a journal (the
    /// kernel lists a journaled ext4 volume's journal under /proc/fs/jbd2); device and mount point.
    static func fileSystem(of path: String) -> String {
        guard let real = realpath(path, nil), let mounts = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return "unknown" }
        let resolved = String(cString: real)
        free(real)
        var best: (point: String, type: String, device: String)?
        for line in mounts.split(separator: "\n") {
            // "36 35 98:0 /root /mnt/point rw,noatime … - ext4 /dev/vda rw"; spaces in paths are written \040.
            let halves = line.components(separatedBy: " - ")
            let fields = halves[0].split(separator: " "), tail = halves.count > 1 ? halves[1].split(separator: " ") : []
            guard fields.count > 4, tail.count > 1 else { continue }
            let point = fields[4].replacingOccurrences(of: "\\040", with: " ")
            guard resolved == point || resolved.hasPrefix(point == "/" ? "/" : point + "/"), point.count >= (best?.point.count ?? 0) else { continue }
            best = (point, String(tail[0]), String(tail[1]))
        }
        guard let best else { return "unknown" }
        var type = best.type
        if type == "ext4" {
            let device = (best.device as NSString).lastPathComponent
            type += FileManager.default.fileExists(atPath: "/proc/fs/jbd2/\(device)-8") ? " with a journal" : " without a journal"
        }
        return "\(type) (\(best.device) at \(best.point))"
    }
}

/// A benchmark that could not run, with the reason.
struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
