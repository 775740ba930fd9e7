import CFuse3
import Foundation
import Glibc
import Synchronization
import Testing
@testable import FUSE

/// Why a mount test cannot run; thrown so that the test fails with the reason instead of passing.
struct MountUnavailable: Error, CustomStringConvertible {
    var description: String
}

/// A temporary directory with an endpoint (`endpoint/`) mounted through a ``PassthroughCore`` at
/// `mountpoint/`. Stop it at the end of the test; the directory is removed then.
final class MountFixture: Sendable {
    let root: String
    let endpoint: String
    let mountpoint: String
    let core: PassthroughCore
    let session: MountSession

    init(hooks: any MountHooks = NoMountHooks(),
         configuration: PassthroughCore.Configuration = .init(),
         options: MountOptions = MountOptions(stopGracePeriod: .seconds(2))) throws {
        try Self.requireFUSE()
        root = try makeTemporaryDirectory("mount")
        endpoint = root + "/endpoint"
        mountpoint = root + "/mnt"
        try FileManager.default.createDirectory(atPath: endpoint, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: mountpoint, withIntermediateDirectories: true)
        core = try PassthroughCore(endpoint: endpoint, hooks: hooks, configuration: configuration)
        session = try MountSession.mount(core, at: mountpoint, options: options)
    }

    /// `mountpoint/relative`.
    func mounted(_ relative: String) -> String { mountpoint + "/" + relative }
    /// `endpoint/relative`.
    func backing(_ relative: String) -> String { endpoint + "/" + relative }

    /// Unmounts and removes the temporary directory.
    func stop() {
        session.stop()
        try? FileManager.default.removeItem(atPath: root)
    }

    /// Mount tests need the FUSE device and the right to mount; without them the test fails loudly.
    static func requireFUSE() throws {
        guard access("/dev/fuse", R_OK | W_OK) == 0 else {
            throw MountUnavailable(description: "/dev/fuse is not usable here (\(Errno.current)): FUSE mount tests cannot run")
        }
        guard geteuid() == 0 || access("/usr/bin/fusermount3", X_OK) == 0 else {
            throw MountUnavailable(description: "neither root nor fusermount3: FUSE mount tests cannot mount")
        }
    }
}

/// A fresh directory under the system temporary directory.
func makeTemporaryDirectory(_ label: String) throws -> String {
    var template = Array("\(NSTemporaryDirectory())/tiergate-fuse-\(label)-XXXXXX".utf8CString)
    guard let created = mkdtemp(&template) else { throw Errno.current }
    return String(cString: created)
}

/// The errno of a failed call (0 when it succeeded).
func errnoOf<T: BinaryInteger>(_ body: () -> T) -> Int32 {
    body() == -1 ? errno : 0
}

/// Writes `bytes` to `path` (created, truncated) with plain system calls.
func writeFile(_ path: String, _ bytes: [UInt8], mode: mode_t = 0o644) throws {
    let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
    guard descriptor >= 0 else { throw Errno.current }
    defer { close(descriptor) }
    try writeAll(descriptor, bytes)
}

func writeAll(_ descriptor: Int32, _ bytes: [UInt8]) throws {
    var done = 0
    while done < bytes.count {
        let count = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress! + done, bytes.count - done) }
        guard count > 0 else { throw Errno.current }
        done += count
    }
}

/// The whole content of `path`.
func readFile(_ path: String) throws -> [UInt8] {
    let descriptor = open(path, O_RDONLY | O_CLOEXEC)
    guard descriptor >= 0 else { throw Errno.current }
    defer { close(descriptor) }
    return try readAll(descriptor)
}

func readAll(_ descriptor: Int32) throws -> [UInt8] {
    var result: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
        guard count >= 0 else { throw Errno.current }
        if count == 0 { return result }
        result.append(contentsOf: chunk[0..<count])
    }
}

/// `stat` of a path without following a final symlink.
func status(_ path: String) throws -> stat {
    var result = stat()
    guard lstat(path, &result) == 0 else { throw Errno.current }
    return result
}

/// Deterministic bytes that differ per position and seed.
func pattern(_ count: Int, seed: UInt8 = 0) -> [UInt8] {
    (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ ($0 >> 8) &+ Int(seed)) }
}

/// Runs a shell command line in `directory`; returns its exit status and combined output.
@discardableResult
func shell(_ command: String, in directory: String) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/bin/sh")
    process.arguments = ["-c", command]
    process.currentDirectoryURL = URL(fileURLWithPath: directory)
    var environment = ProcessInfo.processInfo.environment
    environment["GIT_CONFIG_NOSYSTEM"] = "1"
    environment["HOME"] = directory
    process.environment = environment
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let output = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: output, as: UTF8.self))
}

/// Hooks that record every call, and can play the Gateway's part for stubs: a read or write of a
/// stub "recalls" it by writing `recalledContent` into the backing file and removing the stub mark.
final class RecordingHooks: MountHooks {
    enum Call: Equatable, Sendable {
        case beforeRead(String?, offset: Int64, length: Int)
        case beforeWrite(String?, WriteIntent)
        case didOpen(String?, flags: Int32)
        case didChange(MountChange.Kind, String?, previous: String?)
    }

    let calls = Mutex<[Call]>([])
    /// Backing path of the endpoint, to recall stubs into.
    let endpoint = Mutex<String?>(nil)
    /// What a recall writes.
    let recalledContent = Mutex<[UInt8]>([])
    /// When set, recalls fail with this errno.
    let failure = Mutex<Errno?>(nil)

    func beforeRead(_ file: MountedFile, offset: Int64, length: Int) throws(Errno) {
        calls.withLock { $0.append(.beforeRead(file.path, offset: offset, length: length)) }
        try recall(file)
    }

    func beforeWrite(_ file: MountedFile, _ intent: WriteIntent) throws(Errno) {
        calls.withLock { $0.append(.beforeWrite(file.path, intent)) }
        try recall(file)
    }

    func didOpen(_ file: MountedFile, flags: Int32) {
        calls.withLock { $0.append(.didOpen(file.path, flags: flags)) }
    }

    func didChange(_ change: MountChange) {
        calls.withLock { $0.append(.didChange(change.kind, change.path, previous: change.previousPath)) }
    }

    private func recall(_ file: MountedFile) throws(Errno) {
        if let failure = failure.withLock({ $0 }) { throw failure }
        guard let endpoint = endpoint.withLock({ $0 }), let path = file.path else { return }
        let content = recalledContent.withLock { $0 }
        let descriptor = open(endpoint + "/" + path, O_WRONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw .current }
        defer { close(descriptor) }
        _ = content.withUnsafeBytes { pwrite(descriptor, $0.baseAddress, $0.count, 0) }
        _ = fremovexattr(descriptor, PassthroughCore.stubMarker)
    }

    var recorded: [Call] { calls.withLock { $0 } }
    func reset() { calls.withLock { $0.removeAll() } }
}
