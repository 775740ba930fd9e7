import CLinux
import Foundation
import Gateway
import Glibc
import Testing

/// Stub primitives on real files in the temporary directory: punching, markers, leases, allocation.
@Suite struct StubFileTests {
    private func scratchFile(size: Int) throws -> (directory: String, path: String) {
        let directory = NSTemporaryDirectory() + "tiergate-stub-\(getpid())-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let path = directory + "/file.bin"
        let bytes = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) | 1 }
        #expect(FileManager.default.createFile(atPath: path, contents: Data(bytes)))
        return (directory, path)
    }

    private func status(_ path: String) -> stat {
        var info = stat()
        stat(path, &info)
        return info
    }

    @Test func punchingOutFreesAllDataAndKeepsInodeSizeAndMtime() throws {
        let (directory, path) = try scratchFile(size: 1_048_576 + 123)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var past = [timespec(tv_sec: 1_600_000_000, tv_nsec: 111), timespec(tv_sec: 1_500_000_000, tv_nsec: 123_456_789)]
        #expect(utimensat(AT_FDCWD, path, &past, 0) == 0)
        let before = status(path)
        #expect(before.st_blocks > 0)

        try StubFile.withOpened(path) { stub in
            try stub.punchOut()
            try stub.sync()
            #expect(try stub.allocatedBytes() == 0, "a stub holds no data, the partial last block included")
            #expect(try stub.size() == 1_048_576 + 123)
        }
        let after = status(path)
        #expect(after.st_ino == before.st_ino)
        #expect(after.st_size == before.st_size)
        #expect(after.st_mtim.tv_sec == 1_500_000_000)
        #expect(after.st_mtim.tv_nsec == 123_456_789)
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == Data(count: 1_048_576 + 123), "unwatched, a stub reads as holes")
    }

    @Test func punchingOutAnEmptyFileKeepsItEmpty() throws {
        let (directory, path) = try scratchFile(size: 0)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try StubFile.withOpened(path) { stub in
            try stub.punchOut()
            #expect(try stub.size() == 0)
            #expect(try stub.allocatedBytes() == 0)
        }
    }

    @Test func markersRoundTripAndAreRemovedTogether() throws {
        let (directory, path) = try scratchFile(size: 10)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try StubFile.withOpened(path) { stub in
            #expect(try stub.state() == nil)
            #expect(try stub.fileID() == nil)
            let origin = StubFile.Origin(shareID: "5f0c", share: "file:///srv/share one", fileID: "0123456789abcdef0123456789abcdef", version: 42)
            try stub.setMarkers(origin)
            #expect(try stub.state() == .tiered)
            #expect(try stub.fileID() == "0123456789abcdef0123456789abcdef")
            #expect(try stub.version() == "42")
            #expect(try stub.origin() == origin)
            try stub.setState(.partial)
            #expect(try stub.state() == .partial)

            try stub.removeMarkers()
            #expect(try stub.state() == nil)
            #expect(try stub.fileID() == nil)
            #expect(try stub.version() == nil)
            #expect(try stub.origin() == nil)
            try stub.removeMarkers()  // none left: not an error
        }
        // The markers live on the inode, so a read-only open sees them too.
        try StubFile.withOpened(path) { try $0.setState(.tiered) }
        #expect(try StubFile.withOpened(path, writable: false) { try $0.state() } == .tiered)
    }

    @Test func anUnknownStateMarkerIsRejectedNamingTheFile() throws {
        let (directory, path) = try scratchFile(size: 10)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        #expect(setxattr(path, StubFile.stateAttribute, "thawed", 6, 0) == 0)
        do {
            _ = try StubFile.withOpened(path, writable: false) { try $0.state() }
            Issue.record("an unknown state was accepted")
        } catch let error as StubFileError {
            #expect(error.code == .invalidAttribute)
            #expect(error.description.contains(path))
            #expect(error.description.contains("thawed"))
        }
    }

    @Test func aWriteLeaseIsGrantedWhenNobodyElseHasTheFileOpen() throws {
        let (directory, path) = try scratchFile(size: 10)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try StubFile.withOpened(path) { stub in
            try stub.takeWriteLease()
            #expect(try stub.holdsWriteLease())
            try stub.releaseLease()
            #expect(try !stub.holdsWriteLease())
        }
    }

    /// A write lease conflicts with any other open descriptor, for reading as much as for writing.
    @Test(arguments: [O_RDONLY, O_WRONLY, O_RDWR])
    func aWriteLeaseIsRefusedWhileAnotherDescriptorHasTheFileOpen(otherMode: Int32) throws {
        let (directory, path) = try scratchFile(size: 10)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let other = open(path, otherMode | O_CLOEXEC)
        #expect(other >= 0)
        defer { close(other) }
        do {
            try StubFile.withOpened(path) { try $0.takeWriteLease() }
            Issue.record("a write lease was granted while another descriptor had the file open")
        } catch let error as StubFileError {
            #expect(error.code == .inUse)
            #expect(error.description.contains(path))
            #expect(error.underlying?.errno == EAGAIN)
        }
    }

    @Test func anOpenDuringTheLeaseBreaksItAndWaitsForTheRelease() throws {
        let (directory, path) = try scratchFile(size: 10)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try StubFile.withOpened(path) { stub in
            try stub.takeWriteLease()
            // O_NONBLOCK: instead of waiting for the release, the opener fails at once; the break starts
            // all the same (and its SIGIO must not end this process).
            let blocked = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
            #expect(blocked == -1 && errno == EWOULDBLOCK)
            #expect(try !stub.holdsWriteLease(), "the lease is being broken")
            try stub.releaseLease()
        }
        let reopened = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        #expect(reopened >= 0)
        close(reopened)
    }

    @Test func allocatedBytesCountOnlyTheDataWritten() throws {
        let (directory, path) = try scratchFile(size: 0)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        #expect(truncate(path, 8 << 20) == 0)
        try StubFile.withOpened(path) { (stub) throws -> Void in
            #expect(try stub.allocatedBytes() == 0, "a sparse file holds no data")
            let bytes = [UInt8](repeating: 9, count: 65536)
            #expect(bytes.withUnsafeBytes { pwrite(stub.descriptor, $0.baseAddress, $0.count, 1 << 20) } == 65536)
            #expect(try stub.allocatedBytes() >= 65536)
            #expect(try stub.allocatedBytes() < 8 << 20)
        }
    }

    @Test func onlyRegularFilesOpenAndSymlinksAreNotFollowed() throws {
        let (directory, path) = try scratchFile(size: 10)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        #expect(symlink(path, directory + "/link") == 0)
        #expect(throws: StubFileError.self) { try StubFile.withOpened(directory + "/link") { _ in } }
        do {
            try StubFile.withOpened(directory, writable: false) { _ in }
            Issue.record("a directory was opened as a stub")
        } catch let error as StubFileError {
            #expect(error.code == .notRegularFile)
        }
        do {
            try StubFile.withOpened(directory + "/missing") { _ in }
            Issue.record("a missing file was opened")
        } catch let error as StubFileError {
            #expect(error.code == .open)
            #expect(error.description.contains(directory + "/missing"))
            #expect(error.underlying?.errno == ENOENT)
        }
    }
}
