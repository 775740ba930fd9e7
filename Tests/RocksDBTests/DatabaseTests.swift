import Foundation
@testable import RocksDB
import Testing

/// A fresh temporary directory path (not created), removed by the caller.
func temporaryPath() -> String {
    NSTemporaryDirectory() + "tiergate-rocksdb-test-" + UUID().uuidString
}

func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

/// Opens a database with the design's column families in a fresh directory and removes it afterwards.
func withDatabase(_ body: (Database, String) throws -> Void) throws {
    let path = temporaryPath()
    defer { try? FileManager.default.removeItem(atPath: path) }
    let database = try Database(path: path, families: ["entries", "heat", "chunks"])
    try body(database, path)
    database.close()
}

@Suite struct DatabaseTests {
    @Test func valuesRoundTripAndDeletesRemoveThem() throws {
        try withDatabase { db, _ in
            let entries = try db.family("entries")
            let binary: [UInt8] = [0, 255, 1, 0, 128]
            try db.put(bytes("a/b"), binary, in: entries)
            try db.put(binary, [], in: entries, sync: true)
            #expect(try db.get(bytes("a/b"), in: entries) == binary)
            #expect(try db.get(binary, in: entries) == [])
            #expect(try db.get(bytes("missing"), in: entries) == nil)
            try db.put(bytes("a/b"), bytes("second"), in: entries)
            #expect(try db.get(bytes("a/b"), in: entries) == bytes("second"))
            try db.delete(bytes("a/b"), in: entries, sync: true)
            try db.delete(bytes("never there"), in: entries)
            #expect(try db.get(bytes("a/b"), in: entries) == nil)
        }
    }

    @Test func columnFamiliesAreIsolated() throws {
        try withDatabase { db, _ in
            let entries = try db.family("entries"), heat = try db.family("heat")
            try db.put(bytes("k"), bytes("entry"), in: entries)
            try db.put(bytes("k"), bytes("heat"), in: heat)
            #expect(try db.get(bytes("k"), in: entries) == bytes("entry"))
            #expect(try db.get(bytes("k"), in: heat) == bytes("heat"))
            #expect(try db.get(bytes("k"), in: db.family("chunks")) == nil)
            #expect(try db.get(bytes("k"), in: db.family("default")) == nil)
            try db.delete(bytes("k"), in: heat)
            #expect(try db.get(bytes("k"), in: entries) == bytes("entry"))
        }
    }

    @Test func aBatchAppliesEveryOperationTogether() throws {
        try withDatabase { db, _ in
            let entries = try db.family("entries"), chunks = try db.family("chunks")
            try db.put(bytes("old"), bytes("1"), in: entries)
            var batch = WriteBatch()
            batch.put(bytes("file"), bytes("meta"), in: entries)
            batch.put(bytes("chunk"), bytes("pack"), in: chunks)
            batch.delete(bytes("old"), in: entries)
            #expect(batch.count == 3)
            try db.write(batch, sync: true)
            #expect(try db.get(bytes("file"), in: entries) == bytes("meta"))
            #expect(try db.get(bytes("chunk"), in: chunks) == bytes("pack"))
            #expect(try db.get(bytes("old"), in: entries) == nil)
        }
    }

    @Test func aBatchWithABadOperationAppliesNothing() throws {
        try withDatabase { db, _ in
            let otherPath = temporaryPath()
            defer { try? FileManager.default.removeItem(atPath: otherPath) }
            let other = try Database(path: otherPath, families: ["entries"])
            var batch = WriteBatch()
            batch.put(bytes("first"), bytes("1"), in: try db.family("entries"))
            batch.put(bytes("second"), bytes("2"), in: try other.family("entries"))
            do throws(RocksDBError) {
                try db.write(batch)
                Issue.record("a family of another database was accepted")
            } catch {
                #expect(error.code == .unknownColumnFamily)
            }
            #expect(try db.get(bytes("first"), in: db.family("entries")) == nil)
        }
    }

    @Test func prefixScansReturnMatchingKeysInOrder() throws {
        try withDatabase { db, _ in
            let entries = try db.family("entries")
            let keys = ["dir/b", "dir/a", "dir0", "dir/c/d", "di", "dir/", "e", "dir\u{7f}"]
            for key in keys.shuffled() { try db.put(bytes(key), bytes("v:" + key), in: entries) }
            let found = try db.entries(in: entries, prefix: bytes("dir/"))
            #expect(found.map { String(decoding: $0.key, as: UTF8.self) } == ["dir/", "dir/a", "dir/b", "dir/c/d"])
            #expect(found.map(\.value) == found.map { bytes("v:") + $0.key })
            #expect(try db.entries(in: entries).count == keys.count)
            #expect(try db.entries(in: entries, prefix: bytes("zzz")).isEmpty)
        }
    }

    @Test func aPrefixOfAllOnesBytesScansToTheEnd() throws {
        try withDatabase { db, _ in
            let heat = try db.family("heat")
            for key: [UInt8] in [[0xfe], [0xff], [0xff, 0x00], [0xff, 0xff, 0x01]] { try db.put(key, [1], in: heat) }
            #expect(try db.entries(in: heat, prefix: [0xff]).map(\.key) == [[0xff], [0xff, 0x00], [0xff, 0xff, 0x01]])
            #expect(Database.successor(of: [0x01, 0xff]) == [0x02])
            #expect(Database.successor(of: [0xff, 0xff]) == nil)
            #expect(Database.successor(of: []) == nil)
        }
    }

    @Test func rangeScansIncludeTheStartExcludeTheEndAndStopWhenAsked() throws {
        try withDatabase { db, _ in
            let chunks = try db.family("chunks")
            for index in 0..<20 { try db.put([UInt8(index)], [UInt8(index * 2)], in: chunks) }
            var seen: [UInt8] = []
            try db.scan(chunks, from: [5], to: [9]) { key, value in
                #expect(value == [key[0] * 2])
                seen.append(key[0])
                return true
            }
            #expect(seen == [5, 6, 7, 8])

            seen = []
            try db.scan(chunks, from: [17], to: nil) { key, _ in seen.append(key[0]); return true }
            #expect(seen == [17, 18, 19])

            seen = []
            try db.scan(chunks, from: [], to: nil) { key, _ in seen.append(key[0]); return seen.count < 3 }
            #expect(seen == [0, 1, 2])
        }
    }

    @Test func anErrorThrownByTheScanBodyReachesTheCaller() throws {
        struct Stop: Error {}
        try withDatabase { db, _ in
            let heat = try db.family("heat")
            try db.put([1], [1], in: heat)
            #expect(throws: Stop.self) { try db.scan(heat, prefix: []) { _, _ in throw Stop() } }
            #expect(try db.get([1], in: heat) == [1])
        }
    }

    @Test func dataSurvivesCloseAndReopen() throws {
        let path = temporaryPath()
        defer { try? FileManager.default.removeItem(atPath: path) }
        do {
            let db = try Database(path: path, families: ["entries", "state"])
            try db.put(bytes("durable"), bytes("yes"), in: db.family("entries"), sync: true)
            try db.put(bytes("buffered"), bytes("also"), in: db.family("state"))
            db.close()
        }
        let db = try Database(path: path, families: ["entries"])
        // "state" exists on disk, so it is opened even though this open did not list it.
        #expect(db.familyNames.contains("state"))
        #expect(try db.get(bytes("durable"), in: db.family("entries")) == bytes("yes"))
        #expect(try db.get(bytes("buffered"), in: db.family("state")) == bytes("also"))
    }

    @Test func usingAClosedDatabaseThrowsAndCloseIsIdempotent() throws {
        let path = temporaryPath()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let db = try Database(path: path, families: ["entries"])
        let entries = try db.family("entries")
        db.close()
        db.close()
        #expect(db.isClosed)
        do throws(RocksDBError) {
            _ = try db.get([1], in: entries)
            Issue.record("get after close succeeded")
        } catch {
            #expect(error.code == .closed)
        }
        #expect(throws: RocksDBError.self) { try db.scan(entries, prefix: []) { _, _ in true } }
    }

    @Test func anUnknownFamilyNameIsAClearError() throws {
        try withDatabase { db, path in
            do throws(RocksDBError) {
                _ = try db.family("pending")
                Issue.record("unknown family accepted")
            } catch {
                #expect(error.code == .unknownColumnFamily)
                #expect(error.description.contains("pending"))
            }
        }
    }

    @Test func openingARegularFileFailsWithRocksDBsReason() throws {
        let path = temporaryPath()
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(FileManager.default.createFile(atPath: path, contents: Data("not a database".utf8)))
        do throws(RocksDBError) {
            _ = try Database(path: path, families: ["entries"])
            Issue.record("a regular file opened as a database")
        } catch {
            #expect(error.code == .rocksdb)
            #expect(error.operation == "open \(path)")
            #expect(!error.message.isEmpty)
            #expect(error.description.contains(path))
        }
    }

    @Test func openingAMissingDatabaseWithoutCreateFails() throws {
        var options = Database.Options()
        options.createIfMissing = false
        let path = temporaryPath()
        // RocksDB still creates the directory for its info LOG before it finds no database there.
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(throws: RocksDBError.self) { try Database(path: path, families: [], options: options) }
    }

    @Test func compactionDropsDeletedDataAndSizesAreReported() throws {
        try withDatabase { db, _ in
            let chunks = try db.family("chunks")
            let value = [UInt8](repeating: 7, count: 1000)
            for index in 0..<5000 { try db.put(Array("chunk-\(index)".utf8), value, in: chunks) }
            try db.compactRange(in: chunks)
            let full = try #require(Int(try db.property("rocksdb.total-sst-files-size", in: chunks) ?? ""))
            #expect(full > 0)
            #expect(try db.diskSize() >= full)
            #expect(try db.property("rocksdb.no-such-property", in: chunks) == nil)

            for index in 0..<5000 { try db.delete(Array("chunk-\(index)".utf8), in: chunks) }
            try db.compactRange(in: chunks, from: Array("chunk-".utf8), to: Array("chunk.".utf8))
            let emptied = try #require(Int(try db.property("rocksdb.total-sst-files-size", in: chunks) ?? ""))
            #expect(emptied < full)
            #expect(try db.entries(in: chunks).isEmpty)
        }
    }

    @Test func concurrentReadersAndWritersShareOneDatabase() async throws {
        let path = temporaryPath()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let db = try Database(path: path, families: ["heat"])
        let heat = try db.family("heat")
        try await withThrowingTaskGroup(of: Void.self) { group in
            for worker in 0..<4 {
                group.addTask {
                    for index in 0..<500 {
                        let key = Array("w\(worker)-\(index)".utf8)
                        try db.put(key, [UInt8(worker)], in: heat)
                        #expect(try db.get(key, in: heat) == [UInt8(worker)])
                    }
                }
            }
            try await group.waitForAll()
        }
        #expect(try db.entries(in: heat).count == 2000)
        db.close()
    }
}
