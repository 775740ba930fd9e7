import Backends
import CloudShare
import Fanotify
import Foundation
@testable import Gateway
import Glibc
import Testing

/// Runs blocking work on its own thread: a read of a stub waits for a recall that needs the cooperative
/// pool, so it must never block one of the pool's few threads.
func offPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try body() }) }.start()
    }
}

/// Reads a whole file off the cooperative pool.
func readStub(_ path: String) async throws -> [UInt8] {
    try await offPool { try readAll(path) }
}

/// Reads a whole file with plain POSIX reads (in the test process, served by the monitor's threads).
func readAll(_ path: String) throws -> [UInt8] {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { throw PosixError("open", path: path, errno: errno) }
    defer { close(fd) }
    var out: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let count = read(fd, &buffer, buffer.count)
        if count < 0 { throw PosixError("read", path: path, errno: errno) }
        if count == 0 { return out }
        out += buffer.prefix(count)
    }
}

func allocatedBytes(_ path: String) -> Int64 {
    var info = stat()
    stat(path, &info)
    return Int64(info.st_blocks) * 512
}

/// True when the file has no data blocks at all (its xattr block may still be allocated).
func holdsNoData(_ path: String) -> Bool {
    let fd = open(path, O_RDONLY)
    defer { close(fd) }
    return lseek(fd, 0, 3 /* SEEK_DATA */) == -1 && errno == ENXIO
}

/// A one-endpoint group with tiering on and a synced file of `size` random bytes (from `seed`) at `name`.
func tieredGroup(size: Int = 3 << 20, download: NamespaceDownloadMode = .avoidTieredFiles, name: String = "big.bin",
                 seed: UInt64 = 77) async throws -> (SyncGroup, [UInt8]) {
    let group = try await SyncGroup(servers: 1)
    _ = try group.gateways[0].setTiering("1", TieringConfig(volumeFreeSpacePercent: 0, download: download))
    group.endpoints[0] = try group.gateways[0].endpoint("1")
    let content = randomBytes(size, seed: seed)
    group.scratch.write("ep0/" + name, content)
    try await group.sync(0)
    return (group, content)
}

@Suite(.serialized) struct TieringTests {

    func runtime(_ group: SyncGroup, _ index: Int = 0) async throws -> TieringRuntime? {
        guard PreContentMonitor.isSupported(at: group.root(index)) else {
            Issue.record("fanotify pre-content events are unavailable here (Linux ≥ 6.14, CAP_SYS_ADMIN, ext4/xfs/btrfs needed): tiering tests cannot run")
            return nil
        }
        let share = try await CloudShare.open(try StoreLocator.open(group.url))
        return try TieringRuntime(endpoint: group.endpoints[index], share: share, state: group.gateways[index].state)
    }

    @Test func aTieredFileKeepsItsInodeSizeAndMtimeAndReadsBackExactly() async throws {
        let (group, content) = try await tieredGroup()
        guard let runtime = try await runtime(group) else { return }
        defer { runtime.stop() }
        let path = group.root(0) + "/big.bin"
        var before = stat(); stat(path, &before)
        #expect(try await runtime.tier("big.bin") == Int64(content.count))
        var after = stat(); stat(path, &after)
        #expect(after.st_ino == before.st_ino)
        #expect(after.st_size == before.st_size)
        #expect(after.st_mtim.tv_sec == before.st_mtim.tv_sec && after.st_mtim.tv_nsec == before.st_mtim.tv_nsec)
        #expect(holdsNoData(path), "a stub holds no data")
        #expect(StubFile.marker(atPath: path) == .tiered)
        let back = try await readStub(path)
        #expect(back == content, "reading a stub returns the tiered bytes, never zeros")
        #expect(StubFile.marker(atPath: path) == nil, "a fully read stub becomes a normal file")
        #expect(try group.gateways[0].state.entry(1, "big.bin")?.residency == .full)
        let report = try await group.sync(0)
        #expect(report.uploaded == 0, "a recall is not a local change")
    }

    @Test func aPartialReadRecallsOnlyTheChunksItTouches() async throws {
        let (group, content) = try await tieredGroup(size: 8 << 20)
        guard let runtime = try await runtime(group) else { return }
        defer { runtime.stop() }
        let path = group.root(0) + "/big.bin"
        try await runtime.tier("big.bin")
        let buffer = try await offPool { () -> [UInt8] in
            let fd = open(path, O_RDONLY)
            defer { close(fd) }
            var buffer = [UInt8](repeating: 0, count: 4096)
            _ = pread(fd, &buffer, 4096, 5_000_000)
            return buffer
        }
        #expect(buffer == Array(content[5_000_000..<5_004_096]))
        let allocated = allocatedBytes(path)
        #expect(allocated > 0 && allocated < Int64(content.count) / 2, "only the chunks around the read are recalled (\(allocated) bytes)")
        #expect(StubFile.marker(atPath: path) == .partial)
        #expect(try await readStub(path) == content)
    }

    @Test func namespaceOnlyDownloadCreatesStubsThatRecallOnRead() async throws {
        let group = try await SyncGroup(servers: 2)
        _ = try group.gateways[1].setTiering("1", TieringConfig(volumeFreeSpacePercent: 0, download: .namespaceOnly))
        group.endpoints[1] = try group.gateways[1].endpoint("1")
        var files: [String: [UInt8]] = [:]
        for index in 0..<20 {
            files["d/f\(index).bin"] = randomBytes(20_000 + index * 1000, seed: UInt64(index) + 5)
            group.scratch.write("ep0/d/f\(index).bin", files["d/f\(index).bin"]!)
        }
        try await group.sync(0)
        let report = try await group.sync(1)
        #expect(report.stubsCreated == 20)
        for path in files.keys {
            #expect(holdsNoData(group.root(1) + "/" + path))
            #expect(StubFile.marker(atPath: group.root(1) + "/" + path) == .tiered)
        }
        guard let runtime = try await runtime(group, 1) else { return }
        defer { runtime.stop() }
        try await runtime.markStubs()
        for (path, bytes) in files {
            let same = try await readStub(group.root(1) + "/" + path) == bytes
            #expect(same, "\(path)")
        }
    }

    @Test func changedCloudFilesArriveAsStubsOnANamespaceOnlyEndpoint() async throws {
        let group = try await SyncGroup(servers: 2)
        _ = try group.gateways[1].setTiering("1", TieringConfig(volumeFreeSpacePercent: 0, download: .namespaceOnly))
        group.endpoints[1] = try group.gateways[1].endpoint("1")
        group.scratch.write("ep0/cloud.bin", randomBytes(30_000, seed: 1))
        group.scratch.write("ep1/local.bin", randomBytes(30_000, seed: 2))
        group.scratch.write("ep1/both.bin", randomBytes(30_000, seed: 3))
        try await group.converge()
        #expect(StubFile.marker(atPath: group.root(1) + "/cloud.bin") == .tiered)
        #expect(StubFile.marker(atPath: group.root(1) + "/local.bin") == nil, "made here: full")

        // Server 0 changes all three; server 1 changed `both.bin` too, after server 0.
        let changed = ["cloud.bin": randomBytes(31_000, seed: 4), "local.bin": randomBytes(32_000, seed: 5), "both.bin": randomBytes(33_000, seed: 6)]
        for (path, bytes) in changed { group.scratch.write("ep0/" + path, bytes) }
        try await group.sync(0)
        let ours = randomBytes(34_000, seed: 7)
        group.scratch.write("ep1/both.bin", ours)
        let report = try await group.sync(1)
        #expect(report.stubsCreated == 2, "\(report.summary)")
        for path in ["cloud.bin", "local.bin"] {
            #expect(StubFile.marker(atPath: group.root(1) + "/" + path) == .tiered, "\(path) is a stub of the new version")
            #expect(holdsNoData(group.root(1) + "/" + path))
        }
        // A file changed on both sides keeps both versions, with content.
        let copies = try FileManager.default.contentsOfDirectory(atPath: group.root(1)).filter { $0.hasPrefix("both") }
        #expect(copies.count == 2, "\(copies)")
        let kept = try copies.map { try readAll(group.root(1) + "/" + $0) }
        #expect(kept.contains(ours) && kept.contains(changed["both.bin"]!), "both versions of both.bin are kept")

        guard let runtime = try await runtime(group, 1) else { return }
        defer { runtime.stop() }
        try await runtime.markStubs()
        for path in ["cloud.bin", "local.bin"] {
            let same = try await readStub(group.root(1) + "/" + path) == changed[path]!
            #expect(same, "\(path) recalls the new version")
        }
    }

    @Test func aStubWrittenWithoutADaemonIsKeptAsAConflictCopyAndNeverUploadedOverTheCloudVersion() async throws {
        let (group, content) = try await tieredGroup()
        let share = try await CloudShare.open(try StoreLocator.open(group.url))
        let tierer = Tierer(share: share, state: group.gateways[0].state, endpoint: group.endpoints[0])
        try await tierer.tier("big.bin")
        // No daemon: the write lands in the stub; the holes around it must never be uploaded as zeros.
        let fd = open(group.root(0) + "/big.bin", O_WRONLY)
        var patch = [UInt8](repeating: 0xAB, count: 100)
        #expect(pwrite(fd, &patch, 100, 1000) == 100)
        close(fd)
        // Which bytes of the written block were the application's cannot be known any more: the write is
        // kept as a conflict copy, the cloud version stays the file's content.
        let report = try await group.sync(0)
        #expect(report.conflicts == 1)
        let copy = try readAll(group.root(0) + "/big-Server0.bin")
        #expect(Array(copy[1000..<1100]) == patch, "the application's bytes are kept")
        #expect(StubFile.marker(atPath: group.root(0) + "/big.bin") == .tiered, "the file is a stub of the cloud version again")
        let other = group.scratch.path + "/check"
        _ = try await TreeExport.run(share: try await CloudShare.open(try StoreLocator.open(group.url)), destination: other)
        let intact = try readAll(other + "/big.bin") == content
        #expect(intact, "the share still holds the tiered content, never zeros")
        let errors = try group.gateways[0].itemErrors().map(\.error)
        #expect(errors.contains { $0.path == "big.bin" && $0.kind == "conflict" })
    }

    @Test func anOrphanedStubFailsReadsWithEIOAndIsNeverDeleted() async throws {
        let (group, _) = try await tieredGroup()
        guard let runtime = try await runtime(group) else { return }
        defer { runtime.stop() }
        try await runtime.tier("big.bin")
        // The cloud loses the data.
        try FileManager.default.removeItem(atPath: group.scratch.path + "/share/packs")
        let path0 = group.root(0) + "/big.bin"
        let failure = try await offPool { () -> Int32 in
            let fd = open(path0, O_RDONLY)
            defer { close(fd) }
            var buffer = [UInt8](repeating: 0, count: 4096)
            return read(fd, &buffer, 4096) == -1 ? errno : 0
        }
        #expect(failure == EIO)
        #expect(StubFile.marker(atPath: group.root(0) + "/big.bin") == .tiered, "the stub is left intact")
        let report = try await group.sync(0)
        #expect(report.deleted == 0 && report.uploaded == 0, "a failed recall is never a local delete or change")
        #expect(FileManager.default.fileExists(atPath: group.root(0) + "/big.bin"))
        #expect(runtime.recaller.currentFigures.failures >= 1)
    }

    @Test func onlyCleanClosedFilesAreTiered() async throws {
        let (group, _) = try await tieredGroup()
        let share = try await CloudShare.open(try StoreLocator.open(group.url))
        let tierer = Tierer(share: share, state: group.gateways[0].state, endpoint: group.endpoints[0])
        let path = group.root(0) + "/big.bin"
        let holder = open(path, O_RDONLY)
        await #expect(throws: Tierer.Refusal.self) { try await tierer.tier("big.bin") }
        close(holder)
        #expect(allocatedBytes(path) > 0)
        group.scratch.write("ep0/big.bin", [1, 2, 3])
        await #expect(throws: Tierer.Refusal.self) { try await tierer.tier("big.bin") }
        #expect(try readAll(path) == [1, 2, 3])
    }

    @Test func policiesPickTheColdestFilesFirst() throws {
        let gib: Int64 = 1 << 30
        let volume = TieringPolicy.Volume(device: 1, total: 100 * gib, free: 5 * gib, blockSize: 4096)
        func record(_ mtime: Int64, size: Int64 = gib) -> EntryRecord {
            EntryRecord(kind: .file, fileID: "id\(mtime)", size: size, mtime: mtime, ctime: 0, inode: 0, mode: 0o644, uid: 0, gid: 0,
                        fingerprint: .init(high: 0, low: 0), version: 1)
        }
        let entries = ["old": record(1), "new": record(9_000), "mid": record(5_000), "tiny": record(0, size: 100)]
        let heat = ["id1": HeatStore.Heat(lastAccess: 8_000, count: 3)]  // "old" was read recently
        // 10 % free wanted, 5 % free: 5 GiB to free → the five-GiB budget takes mid, then old (files of 1 GiB).
        let picked = TieringPolicy.evaluate(entries: entries, heat: heat, volume: volume, freeSpacePercent: 10, dateDays: nil)
        #expect(picked.map(\.path) == ["mid", "old", "new"].prefix(picked.count).map { $0 })
        #expect(!picked.contains { $0.path == "tiny" }, "files under the minimum size are never tiered")
        let dated = TieringPolicy.evaluate(entries: entries, heat: heat, volume: volume, freeSpacePercent: 0, dateDays: 1, now: 2 * 86_400_000_000_000)
        #expect(Set(dated.map(\.path)) == ["mid", "old", "new"])
        #expect(dated.allSatisfy { $0.reason == "date" })
    }
}
