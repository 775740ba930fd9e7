@testable import Backends
import Foundation
import Glibc
import Testing

/// A fresh temporary directory, removed by the caller.
func temporaryDirectory(_ name: String = #function) -> String {
    let path = NSTemporaryDirectory() + "tiergate-test-" + UUID().uuidString
    try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

@Suite struct LocalStoreTests {
    /// With unnamed files (`O_TMPFILE`), and with the named temporary files of a file system without them.
    @Test(arguments: [true, false]) func passesTheConformanceSuite(unnamedFiles: Bool) async throws {
        let root = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        try await StoreConformance.run(on: LocalStore(root: root, usesUnnamedFiles: unnamedFiles))
    }

    @Test(arguments: [true, false]) func writesLeaveNoTemporaryFilesBehind(unnamedFiles: Bool) async throws {
        let root = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let store = LocalStore(root: root, usesUnnamedFiles: unnamedFiles)
        try await store.put("a/b", bytes: [1])
        try await store.put("a/b", bytes: [4])
        try await store.putIfAbsent("a/c", bytes: [2])
        await StoreConformance.expectCode(.alreadyExists) { try await store.putIfAbsent("a/c", bytes: [3]) }
        let names = try FileManager.default.contentsOfDirectory(atPath: root + "/a").sorted()
        #expect(names == ["b", "c"])
        #expect(try await store.get("a/b") == [4])
        #expect(try await store.get("a/c") == [2])
    }

    @Test func aSymlinkedKeyIsNotFollowed() async throws {
        let root = temporaryDirectory()
        let outside = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: root); try? FileManager.default.removeItem(atPath: outside) }
        FileManager.default.createFile(atPath: outside + "/secret", contents: Data([7]))
        #expect(symlink(outside + "/secret", root + "/link") == 0)
        let store = LocalStore(root: root)
        await StoreConformance.expectCode(.invalidKey) { _ = try await store.get("link") }
    }

    @Test func reservedTemporaryNamesAreRefused() async throws {
        let root = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let store = LocalStore(root: root)
        await StoreConformance.expectCode(.invalidKey) { try await store.put("x/.tg-tmp-1", bytes: [1]) }
    }
}

@Suite struct MemoryStoreTests {
    @Test func passesTheConformanceSuite() async throws {
        try await StoreConformance.run(on: MemoryStore())
    }

    @Test func faultInjectionFailsThenRecovers() async throws {
        let store = FaultInjectingStore(MemoryStore())
        store.inject(.init(operations: ["put"], count: 2))
        await StoreConformance.expectCode(.transient) { try await store.put("k", bytes: [1]) }
        await StoreConformance.expectCode(.transient) { try await store.put("k", bytes: [1]) }
        try await store.put("k", bytes: [1])
        #expect(store.calls("put") == 3)
        #expect(try await store.get("k") == [1])
    }

    @Test func afterWriteFaultsApplyTheWrite() async throws {
        let store = FaultInjectingStore(MemoryStore())
        store.inject(.init(operations: ["putIfAbsent"], afterWrite: true))
        await StoreConformance.expectCode(.transient) { try await store.putIfAbsent("log/1", bytes: [1]) }
        #expect(try await store.get("log/1") == [1])
    }
}
