import Foundation
import Glibc
import Testing
@testable import FUSE

/// A mount never hides what is already at its mountpoint: a mountpoint where anything is mounted, or a
/// directory with files in it, is refused with the reason, and what was there keeps working.
@Suite struct MountGuardrailTests {
    @Test func mountingWhereAnotherMountIsRefusedAndTheOtherKeepsServing() throws {
        let first = try MountFixture()
        defer { first.stop() }
        try writeFile(first.backing("seen.txt"), Array("first mount".utf8))
        let other = try makeTemporaryDirectory("other-endpoint")
        defer { try? FileManager.default.removeItem(atPath: other) }
        do {
            let session = try MountSession.mount(try PassthroughCore(endpoint: other), at: first.mountpoint)
            session.stop()
            Issue.record("a second mount was stacked on \(first.mountpoint)")
        } catch {
            #expect("\(error)".contains("already a mount point") && "\(error)".contains("fuse.tiergate"), "\(error)")
        }
        #expect(try readFile(first.mounted("seen.txt")) == Array("first mount".utf8))
    }

    @Test func mountingOnADirectoryWithFilesIsRefused() throws {
        try MountFixture.requireFUSE()
        let root = try makeTemporaryDirectory("nonempty")
        defer { try? FileManager.default.removeItem(atPath: root) }
        try FileManager.default.createDirectory(atPath: root + "/endpoint", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: root + "/mnt", withIntermediateDirectories: true)
        try writeFile(root + "/mnt/already-here.txt", [1])
        do {
            let session = try MountSession.mount(try PassthroughCore(endpoint: root + "/endpoint"), at: root + "/mnt")
            session.stop()
            Issue.record("a non-empty mountpoint was accepted")
        } catch {
            #expect("\(error)".contains("is not empty") && "\(error)".contains("choose an empty directory"), "\(error)")
        }
        #expect(!MountPoint.mounts(at: root + "/mnt").contains { $0.type == "fuse.tiergate" })
        #expect(try readFile(root + "/mnt/already-here.txt") == [1])
    }
}
