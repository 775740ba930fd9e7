import Backends
import CloudShare
import Foundation
import FUSE
@testable import Gateway
import Glibc
import Testing

@Suite(.serialized) struct MountRecallTests {
    /// A synced, tiered 3 MiB file on an endpoint, and that endpoint mounted through FUSE.
    func mountedStub() async throws -> (SyncGroup, [UInt8], String, MountSession)? {
        guard FileManager.default.fileExists(atPath: "/dev/fuse") else {
            Issue.record("/dev/fuse is missing: the mounted cache volume cannot be tested here")
            return nil
        }
        let group = try await SyncGroup(servers: 1)
        let content = randomBytes(3 << 20, seed: 91)
        group.scratch.write("ep0/doc.bin", content)
        try await group.sync(0)
        let share = try await CloudShare.open(try StoreLocator.open(group.url))
        try await Tierer(share: share, state: group.gateways[0].state, endpoint: group.endpoints[0]).tier("doc.bin")
        let mountpoint = group.scratch.path + "/mnt"
        try FileManager.default.createDirectory(atPath: mountpoint, withIntermediateDirectories: true)
        let session = try await group.gateways[0].mount(group.endpoints[0], at: mountpoint)
        return (group, content, mountpoint, session)
    }

    /// The real `tiergate mount`: SIGTERM right after it says "mounted" unmounts and exits 0; reads at
    /// the end of a stub (whose read-ahead would start past it) keep it up and read exactly; and killed
    /// with SIGKILL it leaves a stale mount that a new `tiergate mount` started at once recovers.
    @Test func theMountProcessSurvivesSignalsReadsAtTheEndAndAKill() async throws {
        guard FileManager.default.fileExists(atPath: "/dev/fuse") else {
            Issue.record("/dev/fuse is missing: the mounted cache volume cannot be tested here")
            return
        }
        let group = try await SyncGroup(servers: 1)
        let content = randomBytes(1_000_003, seed: 93)
        group.scratch.write("ep0/end.bin", content)
        try await group.sync(0)
        let share = try await CloudShare.open(try StoreLocator.open(group.url))
        try await Tierer(share: share, state: group.gateways[0].state, endpoint: group.endpoints[0]).tier("end.bin")
        group.release()
        let state = group.scratch.path + "/state0", mountpoint = group.scratch.path + "/mnt", logs = group.scratch.path
        try FileManager.default.createDirectory(atPath: mountpoint, withIntermediateDirectories: true)
        let arguments = ["mount", group.root(0), mountpoint, "--state-dir", state]

        let first = try TiergateProcess(arguments, logs: logs)
        #expect(first.waitFor("mounted endpoint"), "mounted: \(first.errorOutput)")
        first.send(SIGTERM)
        #expect(first.exitStatus() == 0, "SIGTERM right after the announcement unmounts cleanly: \(first.errorOutput)")
        #expect(!((try? String(contentsOfFile: "/proc/mounts", encoding: .utf8)) ?? "").contains(" \(mountpoint) "), "nothing is left mounted")

        var mount = try TiergateProcess(arguments, logs: logs)
        defer { mount.send(SIGTERM); _ = mount.exitStatus() }
        #expect(mount.waitFor("mounted endpoint"), "mounted again: \(mount.errorOutput)")
        let path = mountpoint + "/end.bin", size = content.count
        let tail = try await offPool { () -> [UInt8] in
            let fd = open(path, O_RDONLY)
            defer { close(fd) }
            _ = posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM)
            var bytes = [UInt8](repeating: 0, count: 8_192)
            let start = (size - 1) / 4096 * 4096 - 4096
            let first = pread(fd, &bytes, 4096, off_t(start))
            let second = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + 4096, 4096, off_t(start + 4096)) }
            return first < 0 || second < 0 ? [] : Array(bytes[0..<first + second])
        }
        let start = (size - 1) / 4096 * 4096 - 4096
        #expect(tail == Array(content[start...]), "the last pages read exactly (\(tail.count) bytes)")
        usleep(300_000)     // the read-ahead runs on a thread of its own
        #expect(mount.process.isRunning, "the mount is still up: \(mount.errorOutput.suffix(600))")
        #expect(try await readStub(path) == content)

        mount.send(SIGKILL)
        _ = mount.exitStatus()
        mount = try TiergateProcess(arguments, logs: logs)
        #expect(mount.waitFor("mounted endpoint", timeout: 20), "a new mount started within the attribute timeout recovers the stale one: \(mount.errorOutput)")
        #expect(try await readStub(path) == content)
    }

    @Test func readingAStubThroughTheMountRecallsExactlyAndStatShowsItsSize() async throws {
        guard let (group, content, mountpoint, session) = try await mountedStub() else { return }
        defer { session.stop() }
        var info = stat()
        #expect(stat(mountpoint + "/doc.bin", &info) == 0)
        #expect(info.st_size == off_t(content.count), "stat of a stub shows its real size")
        let buffer = try await offPool { () -> [UInt8] in
            let fd = open(mountpoint + "/doc.bin", O_RDONLY)
            defer { close(fd) }
            var buffer = [UInt8](repeating: 0, count: 4096)
            _ = pread(fd, &buffer, 4096, 2_000_000)
            return buffer
        }
        #expect(buffer == Array(content[2_000_000..<2_004_096]))
        #expect(StubFile.marker(atPath: group.root(0) + "/doc.bin") == .partial, "only the chunks read are recalled")
        let whole = try await readStub(mountpoint + "/doc.bin") == content
        #expect(whole)
        #expect(StubFile.marker(atPath: group.root(0) + "/doc.bin") == nil)
        let report = try await group.sync(0)
        #expect(report.uploaded == 0, "recalling through the mount is not an edit")
    }

    @Test func writingIntoAStubThroughTheMountRecallsItFirst() async throws {
        guard let (group, content, mountpoint, session) = try await mountedStub() else { return }
        let patch = [UInt8](repeating: 0x5A, count: 10)
        let wrote = try await offPool { () -> Bool in
            let fd = open(mountpoint + "/doc.bin", O_WRONLY)
            defer { close(fd) }
            var bytes = patch
            return pwrite(fd, &bytes, 10, 100) == 10 && fsync(fd) == 0
        }
        #expect(wrote)
        session.stop()
        var expected = content
        expected.replaceSubrange(100..<110, with: patch)
        let local = try readAll(group.root(0) + "/doc.bin") == expected
        #expect(local, "the stub was recalled whole before the write landed")
        let report = try await group.sync(0)
        #expect(report.uploaded == 1)
        let other = group.scratch.path + "/check"
        _ = try await TreeExport.run(share: try await CloudShare.open(try StoreLocator.open(group.url)), destination: other)
        let uploaded = try readAll(other + "/doc.bin") == expected
        #expect(uploaded, "the share holds the whole file with the write")
    }

    @Test func writesIntoAFullFileBypassTheDaemonAndAreStillSynced() async throws {
        guard let (group, content, mountpoint, session) = try await mountedStub() else { return }
        let recalled = try await readStub(mountpoint + "/doc.bin") == content
        #expect(recalled)
        #expect(StubFile.marker(atPath: group.root(0) + "/doc.bin") == nil)
        // Full now: the kernel writes it directly (passthrough), the Gateway only sees the open and release.
        let patch = [UInt8](repeating: 0x33, count: 10)
        let wrote = try await offPool { () -> Bool in
            let fd = open(mountpoint + "/doc.bin", O_WRONLY)
            defer { close(fd) }
            var bytes = patch
            return pwrite(fd, &bytes, 10, 500) == 10
        }
        #expect(wrote)
        #expect(session.isPassingThrough)
        session.stop()
        var expected = content
        expected.replaceSubrange(500..<510, with: patch)
        let local = try readAll(group.root(0) + "/doc.bin") == expected
        #expect(local)
        let report = try await group.sync(0)
        #expect(report.uploaded == 1, "a write the daemon never saw is still recorded as a change")
    }

    /// Shared mappings of stubs written through the mount while a sequential read runs the read-ahead:
    /// every write reaches the share, and a later tier and recall brings it back (a fill's mtime restore
    /// once hid such writes, which the next tier then punched away).
    @Test func mmapWritesIntoStubsThroughTheMountAreAllSynced() async throws {
        guard FileManager.default.fileExists(atPath: "/dev/fuse") else {
            Issue.record("/dev/fuse is missing: the mounted cache volume cannot be tested here")
            return
        }
        let group = try await SyncGroup(servers: 1)
        let names = (0..<5).map { "m\($0).bin" }
        var contents: [String: [UInt8]] = [:]
        for (index, name) in names.enumerated() {
            contents[name] = randomBytes(2_500_000 + index * 4_097, seed: UInt64(200 + index))
            group.scratch.write("ep0/" + name, contents[name]!)
        }
        try await group.sync(0)
        let share = try await CloudShare.open(try StoreLocator.open(group.url))
        let tierer = Tierer(share: share, state: group.gateways[0].state, endpoint: group.endpoints[0])
        for name in names { try await tierer.tier(name) }
        let mountpoint = group.scratch.path + "/mnt"
        try FileManager.default.createDirectory(atPath: mountpoint, withIntermediateDirectories: true)
        let session = try await group.gateways[0].mount(group.endpoints[0], at: mountpoint)
        let patch = [UInt8](repeating: 0x6D, count: 3_000), sizes = contents.mapValues(\.count)
        let failures = try await offPool { () -> [String] in
            var failures: [String] = []
            for name in names {
                let fd = open(mountpoint + "/" + name, O_RDWR)
                guard fd >= 0 else { failures.append("\(name): open: \(errno)"); continue }
                defer { close(fd) }
                var buffer = [UInt8](repeating: 0, count: 65_536)
                _ = pread(fd, &buffer, buffer.count, 0)                   // two sequential reads: read-ahead starts
                _ = pread(fd, &buffer, buffer.count, 65_536)
                let size = sizes[name]!
                guard let map = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), map != MAP_FAILED else {
                    failures.append("\(name): mmap: \(errno)")
                    continue
                }
                patch.withUnsafeBytes { (map + 1_000_000).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
                if msync(map, size, MS_SYNC) != 0 { failures.append("\(name): msync: \(errno)") }
                munmap(map, size)
            }
            return failures
        }
        #expect(failures.isEmpty, "\(failures)")
        session.stop()
        let report = try await group.sync(0)
        #expect(report.uploaded == names.count, "every mapped write is a change: \(report.summary)")
        let after = try await CloudShare.open(try StoreLocator.open(group.url)).namespace()
        for name in names {
            var expected = contents[name]!
            expected.replaceSubrange(1_000_000..<1_003_000, with: patch)
            var got: [UInt8] = []
            for chunk in after.entries[name]?.chunks ?? [] { got += try await share.readChunk(chunk.id) }
            let same = got == expected
            #expect(same, "\(name): the share holds the mapped write")
        }
    }

    /// Reads all of the open descriptor `fd` from offset 0 (off the cooperative pool: a stub read blocks).
    func readOpen(_ fd: Int32, size: Int) async throws -> [UInt8] {
        try await offPool { () -> [UInt8] in
            var buffer = [UInt8](repeating: 0, count: size)
            var done = 0
            while done < size {
                let count = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + done, size - done, off_t(done)) }
                if count <= 0 { break }
                done += count
            }
            return Array(buffer.prefix(done))
        }
    }

    @Test func aFileOpenedThroughTheMountBeforeItWasTieredRecallsAfterwards() async throws {
        guard let (group, content, mountpoint, session) = try await mountedStub() else { return }
        defer { session.stop() }
        // Make it full, read it through the mount (the mount sees a full file), then tier it again.
        let first = try await readStub(mountpoint + "/doc.bin") == content
        #expect(first)
        #expect(StubFile.marker(atPath: group.root(0) + "/doc.bin") == nil)
        let full = try await readStub(mountpoint + "/doc.bin") == content     // opened as a full file
        #expect(full)
        let share = try await CloudShare.open(try StoreLocator.open(group.url))
        try await Tierer(share: share, state: group.gateways[0].state, endpoint: group.endpoints[0]).tier("doc.bin")
        #expect(StubFile.marker(atPath: group.root(0) + "/doc.bin") == .tiered)
        let again = try await readStub(mountpoint + "/doc.bin") == content
        #expect(again, "a file tiered while the mount runs is a stub to it at once, never zeros")
    }

    @Test func anOpenStubStillRecallsAfterUnlinkRenameOverAndANonUTF8Name() async throws {
        guard let (group, content, mountpoint, session) = try await mountedStub() else { return }
        defer { session.stop() }
        // Unlinked while open.
        let unlinked = open(mountpoint + "/doc.bin", O_RDONLY)
        #expect(unlinked >= 0)
        #expect(unlink(mountpoint + "/doc.bin") == 0)
        let afterUnlink = try await readOpen(unlinked, size: content.count) == content
        close(unlinked)
        #expect(afterUnlink, "an unlinked open stub reads its exact bytes")

        // Another file renamed over it while open; then renamed to a name that is not UTF-8.
        group.scratch.write("ep0/two.bin", content)
        try await group.sync(0)
        let share = try await CloudShare.open(try StoreLocator.open(group.url))
        try await Tierer(share: share, state: group.gateways[0].state, endpoint: group.endpoints[0]).tier("two.bin")
        let covered = open(mountpoint + "/two.bin", O_RDONLY)
        #expect(covered >= 0)
        FileManager.default.createFile(atPath: mountpoint + "/other.txt", contents: Data("other".utf8))
        #expect(rename(mountpoint + "/other.txt", mountpoint + "/two.bin") == 0)
        let afterRenameOver = try await readOpen(covered, size: 1 << 20) == Array(content.prefix(1 << 20))
        close(covered)
        #expect(afterRenameOver, "a stub with another file renamed over it still reads its exact bytes")

        group.scratch.write("ep0/three.bin", content)
        try await group.sync(0)
        try await Tierer(share: share, state: group.gateways[0].state, endpoint: group.endpoints[0]).tier("three.bin")
        let strange = open(mountpoint + "/three.bin", O_RDONLY)
        #expect(strange >= 0)
        var badName = Array((mountpoint + "/bad-").utf8).map { CChar(bitPattern: $0) } + [CChar(bitPattern: 0xFF), 0]
        #expect(rename(mountpoint + "/three.bin", &badName) == 0)
        let afterOddName = try await readOpen(strange, size: content.count) == content
        close(strange)
        #expect(afterOddName, "a stub renamed to a name that is not UTF-8 still reads its exact bytes")
    }

    @Test func aStubHardLinkedOrRenamedToANonUTF8NameIsNeverCommittedAsDeleted() async throws {
        guard let (group, content, mountpoint, session) = try await mountedStub() else { return }
        defer { session.stop() }
        let share = try await CloudShare.open(try StoreLocator.open(group.url))
        #expect(link(mountpoint + "/doc.bin", mountpoint + "/doc-link.bin") == 0)
        try await group.sync(0)
        #expect(try await share.namespace().entries["doc.bin"] != nil, "a hard-linked stub is still in the share")
        #expect(unlink(mountpoint + "/doc-link.bin") == 0)
        var badName = Array((mountpoint + "/doc-").utf8).map { CChar(bitPattern: $0) } + [CChar(bitPattern: 0xFE), 0]
        #expect(rename(mountpoint + "/doc.bin", &badName) == 0)
        try await group.sync(0)
        try await group.sync(0)
        let entry = try await share.namespace().entries["doc.bin"]
        #expect(entry != nil, "a stub renamed to a name that is not UTF-8 is still in the share")
        var bytes: [UInt8] = []
        for chunk in entry?.chunks ?? [] { bytes += try await share.readChunk(chunk.id) }
        #expect(bytes == content)
    }
}
