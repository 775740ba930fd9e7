import Foundation
import Glibc
import Synchronization
import Testing
@testable import FUSE

/// Many threads using one mount at once.
@Suite struct MountConcurrencyTests {
    /// Runs `body(index)` on `count` POSIX threads at once (file I/O on the mount blocks, so not on
    /// Swift's cooperative pool) and returns the errors they threw.
    func onThreads(_ count: Int, _ body: @escaping @Sendable (Int) throws -> Void) -> [String] {
        let failures = Mutex<[String]>([])
        let done = DispatchGroup()
        for index in 0..<count {
            done.enter()
            Thread {
                do { try body(index) } catch { failures.withLock { $0.append("thread \(index): \(error)") } }
                done.leave()
            }.start()
        }
        done.wait()
        return failures.withLock { $0 }
    }

    @Test func concurrentWritersToSeparateFilesAndReadersOfOneFileAgree() throws {
        let fixture = try MountFixture()
        defer { fixture.stop() }
        let shared = pattern(1 << 20, seed: 5)
        try writeFile(fixture.mounted("shared"), shared)
        let failures = onThreads(8) { index in
            if index % 2 == 0 {
                let mine = pattern(300_000, seed: UInt8(index))
                for round in 0..<5 {
                    try writeFile(fixture.mounted("w-\(index)"), mine)
                    guard try readFile(fixture.mounted("w-\(index)")) == mine else {
                        throw MountUnavailable(description: "writer \(index) read back other bytes in round \(round)")
                    }
                }
            } else {
                for round in 0..<5 {
                    guard try readFile(fixture.mounted("shared")) == shared else {
                        throw MountUnavailable(description: "reader \(index) saw other bytes in round \(round)")
                    }
                }
            }
        }
        #expect(failures.isEmpty, "\(failures)")
        for index in stride(from: 0, to: 8, by: 2) {
            #expect(try readFile(fixture.backing("w-\(index)")) == pattern(300_000, seed: UInt8(index)))
        }
    }

    @Test func concurrentWritersOfDisjointRangesOfOneFileKeepEveryRange() throws {
        let fixture = try MountFixture()
        defer { fixture.stop() }
        let block = 64 * 1024
        try writeFile(fixture.mounted("big"), [])
        let failures = onThreads(6) { index in
            let descriptor = open(fixture.mounted("big"), O_WRONLY | O_CLOEXEC)
            guard descriptor >= 0 else { throw Errno.current }
            defer { close(descriptor) }
            for slot in stride(from: index, to: 48, by: 6) {
                let bytes = pattern(block, seed: UInt8(slot))
                guard bytes.withUnsafeBytes({ pwrite(descriptor, $0.baseAddress, block, off_t(slot * block)) }) == block else {
                    throw Errno.current
                }
            }
        }
        #expect(failures.isEmpty, "\(failures)")
        let content = try readFile(fixture.backing("big"))
        #expect(content.count == 48 * block)
        for slot in 0..<48 where content.count == 48 * block {
            #expect(Array(content[slot * block ..< (slot + 1) * block]) == pattern(block, seed: UInt8(slot)), "slot \(slot)")
        }
    }

    @Test func concurrentCreatesRenamesAndListingsStayConsistent() throws {
        let fixture = try MountFixture()
        defer { fixture.stop() }
        #expect(mkdir(fixture.mounted("pool"), 0o755) == 0)
        let failures = onThreads(6) { index in
            for item in 0..<100 {
                let name = fixture.mounted("pool/t\(index)-\(item)")
                try writeFile(name + ".tmp", [UInt8(item)])
                guard rename(name + ".tmp", name) == 0 else { throw Errno.current }
                if item % 10 == 0 { _ = try FileManager.default.contentsOfDirectory(atPath: fixture.mounted("pool")) }
            }
        }
        #expect(failures.isEmpty, "\(failures)")
        let listed = try FileManager.default.contentsOfDirectory(atPath: fixture.mounted("pool"))
        #expect(listed.count == 600)
        #expect(!listed.contains { $0.hasSuffix(".tmp") })
    }
}
