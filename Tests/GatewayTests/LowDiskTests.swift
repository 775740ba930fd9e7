import Backends
import CloudShare
import Fanotify
import Foundation
@testable import Gateway
import Glibc
import Testing

/// A small ext4 file system in an image file, loop-mounted (root only), for full-disk tests.
final class LoopVolume {
    let path: String
    let image: String

    /// Formats and mounts a volume of `mebibytes` at `path`; nil (after recording why) where the machine
    /// cannot (not root, no loop devices, no mkfs.ext4).
    static func make(at path: String, mebibytes: Int) -> LoopVolume? {
        let image = path + ".img"
        guard geteuid() == 0 else {
            Issue.record("full-disk tests need root to loop-mount a small ext4 volume")
            return nil
        }
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
            let fd = open(image, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
            guard fd >= 0 else { throw PosixError("open", path: image, errno: errno) }
            defer { close(fd) }
            guard ftruncate(fd, off_t(mebibytes) << 20) == 0 else { throw PosixError("ftruncate", path: image, errno: errno) }
            try run("/sbin/mkfs.ext4", "-q", "-F", "-m", "0", "-b", "4096", image)
            try run("/bin/mount", "-o", "loop", image, path)
        } catch {
            Issue.record("cannot make a loop-mounted ext4 volume for the full-disk test (needs mkfs.ext4 from e2fsprogs, mount and loop devices): \(error)")
            return nil
        }
        return LoopVolume(path: path, image: image)
    }

    private init(path: String, image: String) {
        self.path = path
        self.image = image
    }

    deinit {
        // A process of the test may still hold a file open on it: detach it then, so no mount outlives the test.
        if (try? Self.run("/bin/umount", path)) == nil { try? Self.run("/bin/umount", "--lazy", path) }
        unlink(image)
    }

    static func run(_ tool: String, _ arguments: String...) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = arguments
        let errors = Pipe()
        process.standardError = errors
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            let message = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            throw GatewayError("\(tool) \(arguments.joined(separator: " ")) exited with \(process.terminationStatus): \(message)")
        }
    }

    /// Fills the volume with one file until writes fail with ENOSPC; returns its path.
    func fill() throws -> String {
        let filler = path + "/filler"
        let fd = open(filler, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        guard fd >= 0 else { throw PosixError("open", path: filler, errno: errno) }
        defer { close(fd) }
        let block = [UInt8](repeating: 0xA5, count: 1 << 20)
        for size in [1 << 20, 4096] {
            while true {
                let count = write(fd, block, size)
                if count < 0 {
                    guard errno == ENOSPC else { throw PosixError("write", path: filler, errno: errno) }
                    break
                }
            }
        }
        fsync(fd)
        return filler
    }
}

/// Tiering when the disk is short of space: a recall into a full volume, and low-disk mode.
@Suite(.serialized) struct LowDiskTests {
    /// An endpoint on a 32 MiB volume with tiering on and an 8 MiB synced file `big.bin`.
    final class SmallEndpoint {
        let scratch = Scratch()
        let volume: LoopVolume
        let root: String
        let url: String
        let gateway: Gateway
        let endpoint: EndpointConfig
        let content = randomBytes(8 << 20, seed: 91)

        init?() async throws {
            guard let volume = LoopVolume.make(at: scratch.path + "/vol", mebibytes: 32) else { return nil }
            self.volume = volume
            root = volume.path + "/ep"
            try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
            url = "file://" + scratch.path + "/share"
            _ = try await CloudShare.create(in: try StoreLocator.open(url), manifest: ShareManifest(chunking: try ChunkingParametersForTests.small(), packSize: 1 << 20))
            gateway = try Gateway(directory: StateDirectory(path: scratch.path + "/state"), serverName: "Full")
            _ = try await gateway.addEndpoint(path: root, shareURL: url)
            endpoint = try gateway.setTiering("1", TieringConfig(volumeFreeSpacePercent: 0))
            try Data(content).write(to: URL(fileURLWithPath: root + "/big.bin"))
            _ = try await gateway.sync(endpoint)
            guard PreContentMonitor.isSupported(at: root) else {
                Issue.record("fanotify pre-content events are unavailable on the loop-mounted ext4 volume: the test cannot run")
                return nil
            }
        }

        func runtime() async throws -> TieringRuntime {
            try TieringRuntime(endpoint: endpoint, share: try await CloudShare.open(try StoreLocator.open(url)), state: gateway.state)
        }
    }

    @Test func aRecallIntoAFullVolumeFailsWithENOSPCAndLeavesTheStubIntact() async throws {
        guard let setup = try await SmallEndpoint() else { return }
        let (root, gateway, endpoint, content, volume) = (setup.root, setup.gateway, setup.endpoint, setup.content, setup.volume)
        let runtime = try await setup.runtime()
        defer { runtime.stop() }
        let path = root + "/big.bin"
        try await runtime.tier("big.bin")
        var before = stat(); stat(path, &before)
        let filler = try volume.fill()

        // The whole-file recall fails, naming the file and the cause.
        do {
            try await runtime.recaller.recall("big.bin")
            Issue.record("a recall into a full volume succeeded")
        } catch {
            let message = "\(error)"
            #expect(message.contains("big.bin") && message.contains("No space left on device"), "the error names the file and the cause: \(message)")
        }
        // A reader of the stub gets ENOSPC, never zeros.
        let failure = try await offPool { () -> Int32 in
            let fd = open(path, O_RDONLY)
            defer { close(fd) }
            var buffer = [UInt8](repeating: 0, count: 4096)
            return read(fd, &buffer, 4096) == -1 ? errno : 0
        }
        #expect(failure == ENOSPC)
        // The stub is intact: markers, size, mtime and its record.
        #expect(StubFile.marker(atPath: path) != nil)
        var after = stat(); stat(path, &after)
        #expect(after.st_size == before.st_size)
        #expect(after.st_mtim.tv_sec == before.st_mtim.tv_sec && after.st_mtim.tv_nsec == before.st_mtim.tv_nsec)
        #expect(try gateway.state.entry(1, "big.bin")?.residency == .tiered)
        let report = try await gateway.sync(endpoint)
        #expect(report.uploaded == 0 && report.deleted == 0, "a failed recall is never a local change or delete")

        // With space again, the stub recalls exactly.
        unlink(filler)
        #expect(try await readStub(path) == content)
        #expect(StubFile.marker(atPath: path) == nil)
        #expect(runtime.recaller.currentFigures.failures >= 2)
    }

    @Test func aStubWrittenWithoutADaemonOnAFullVolumeStaysInPlaceUntilItCanBeSetAside() async throws {
        guard let setup = try await SmallEndpoint() else { return }
        let path = setup.root + "/big.bin"
        let runtime = try await setup.runtime()
        try await runtime.tier("big.bin")
        runtime.stop()
        // No daemon: a write lands in the stub, the rest of it reads as zeros.
        let fd = open(path, O_WRONLY)
        #expect(pwrite(fd, "edited", 6, 100) == 6)
        close(fd)
        let written = try readAll(path)
        let filler = try setup.volume.fill()
        // The fresh stub cannot be made: nothing moves, nothing is committed.
        let report = try await setup.gateway.sync(setup.endpoint)
        #expect(report.uploaded == 0 && report.deleted == 0 && report.commits == 0)
        #expect(try readAll(path) == written, "the written file stays where it was")
        #expect(try setup.gateway.state.errors(setup.endpoint.id).contains { $0.path == "big.bin" }, "the item is reported")
        // With space again the write is set aside as a conflict copy and the path is a stub again.
        unlink(filler)
        _ = try await setup.gateway.sync(setup.endpoint)
        #expect(StubFile.marker(atPath: path) == .tiered)
        let copies = try FileManager.default.contentsOfDirectory(atPath: setup.root).filter { $0.hasPrefix("big-Full") }
        #expect(copies.count == 1, "one conflict copy: \(copies)")
        // The copy holds the write and, where the stub had holes, the recalled bytes (never zeros nobody
        // wrote); only the block the write allocated reads as the application saw it.
        var info = stat()
        stat(path, &info)
        let block = Int(info.st_blksize)
        let expected = Array(written.prefix(block)) + Array(setup.content.dropFirst(block))
        #expect(try copies.first.map { try readAll(setup.root + "/" + $0) } == expected)
        let again = try await setup.runtime()
        defer { again.stop() }
        _ = try await again.markStubs()
        #expect(try await readStub(path) == setup.content, "the path recalls the cloud version")
    }

    /// What the daemon's low-disk tick does, repeated for up to a second while files are still open.
    func tierUnkept(_ runtime: TieringRuntime) async -> Int {
        for _ in 0..<20 {
            let tiered = await runtime.tierUnkeptRecalls()
            if tiered > 0 { return tiered }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return 0
    }

    @Test func inLowDiskModeRecalledFilesAreTieredAgainOnceClosed() async throws {
        let (group, content) = try await tieredGroup(size: 8 << 20, seed: 93)
        let root = group.root(0)
        guard PreContentMonitor.isSupported(at: root) else {
            Issue.record("fanotify pre-content events are unavailable here: the low-disk test cannot run")
            return
        }
        let share = try await CloudShare.open(try StoreLocator.open(group.url))
        let runtime = try TieringRuntime(endpoint: group.endpoints[0], share: share, state: group.gateways[0].state)
        defer { runtime.stop() }
        let path = root + "/big.bin"
        try await runtime.tier("big.bin")
        runtime.recaller.setLowOnSpace(true)

        // A partial read, then the same range again (answered locally: a cache hit).
        let reads = try await offPool { () -> [[UInt8]] in
            let fd = open(path, O_RDONLY)
            defer { close(fd) }
            return (0..<2).map { _ in
                var buffer = [UInt8](repeating: 0, count: 4096)
                _ = pread(fd, &buffer, 4096, 5_000_000)
                return buffer
            }
        }
        #expect(reads.allSatisfy { $0 == Array(content[5_000_000..<5_004_096]) })
        #expect(StubFile.marker(atPath: path) == .partial)
        let figures = runtime.recaller.currentFigures
        #expect(figures.recalls == 1 && figures.hits >= 1, "one recall, then a hit: \(figures)")
        #expect(figures.hitRate != nil)

        // While someone has it open it stays as it is, and still recalls: never zeros.
        let holding = open(path, O_RDONLY)
        #expect(await runtime.tierUnkeptRecalls() == 0, "an open partial stub is not punched")
        let elsewhere = try await offPool { () -> [UInt8] in
            let fd = open(path, O_RDONLY)
            defer { close(fd) }
            var buffer = [UInt8](repeating: 0, count: 4096)
            _ = pread(fd, &buffer, 4096, 7_000_000)
            return buffer
        }
        #expect(elsewhere == Array(content[7_000_000..<7_004_096]), "a refused tiering leaves the stub recalling")
        close(holding)

        // The recalled ranges are not kept: punched out again, a whole stub once more (as soon as the
        // daemon's own descriptor for the event is closed too).
        #expect(await tierUnkept(runtime) == 1)
        #expect(holdsNoData(path))
        #expect(StubFile.marker(atPath: path) == .tiered)
        #expect(try group.gateways[0].state.entry(1, "big.bin")?.residency == .tiered)

        // A whole read while someone keeps the file open: tiered only after it is closed.
        let holder = open(path, O_RDONLY)
        #expect(try await readStub(path) == content)
        #expect(await runtime.tierUnkeptRecalls() == 0, "an open file is not tiered")
        close(holder)
        #expect(await tierUnkept(runtime) == 1)
        #expect(holdsNoData(path) && StubFile.marker(atPath: path) == .tiered)
        #expect(try await readStub(path) == content, "the stub still recalls exactly")

        // Out of low-disk mode, recalls are kept.
        runtime.recaller.setLowOnSpace(false)
        try await runtime.tier("big.bin")
        #expect(try await readStub(path) == content)
        #expect(await runtime.tierUnkeptRecalls() == 0)
        #expect(StubFile.marker(atPath: path) == nil)
        let report = try await group.sync(0)
        #expect(report.uploaded == 0 && report.deleted == 0)
    }
}
