import Backends
import Foundation
import Testing

/// The one suite every ``ObjectStore`` must pass. Each store's test file calls
/// `StoreConformance.run(on:)` with a fresh, empty store (or prefix).
enum StoreConformance {
    static func run(on store: any ObjectStore) async throws {
        try await roundTrip(store)
        try await ranges(store)
        try await overwriteAndDelete(store)
        try await putIfAbsentIsExclusive(store)
        try await listingPagesInOrder(store)
        try await invalidKeysAreRefused(store)
        try await unusualNames(store)
        try await largeObject(store)
    }

    static func expectCode(_ code: StoreError.Code, _ body: () async throws -> Void, sourceLocation: SourceLocation = #_sourceLocation) async {
        do {
            try await body()
            Issue.record("expected \(code), got success", sourceLocation: sourceLocation)
        } catch let error as StoreError {
            #expect(error.code == code, "\(error)", sourceLocation: sourceLocation)
        } catch {
            Issue.record("expected StoreError(\(code)), got \(error)", sourceLocation: sourceLocation)
        }
    }

    static func roundTrip(_ store: any ObjectStore) async throws {
        let bytes = (0..<10_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        try await store.put("conformance/a/object", bytes: bytes)
        #expect(try await store.get("conformance/a/object") == bytes)
        #expect(try await store.head("conformance/a/object").size == 10_000)
        try await store.put("conformance/empty", bytes: [])
        #expect(try await store.get("conformance/empty") == [])
        #expect(try await store.head("conformance/empty").size == 0)
        await expectCode(.notFound) { _ = try await store.get("conformance/missing") }
        await expectCode(.notFound) { _ = try await store.head("conformance/missing") }
    }

    static func ranges(_ store: any ObjectStore) async throws {
        let bytes = (0..<4096).map { UInt8(truncatingIfNeeded: $0) }
        try await store.put("conformance/range", bytes: bytes)
        #expect(try await store.get("conformance/range", range: 0..<10) == Array(bytes[0..<10]))
        #expect(try await store.get("conformance/range", range: 100..<1000) == Array(bytes[100..<1000]))
        #expect(try await store.get("conformance/range", range: 4000..<9000) == Array(bytes[4000..<4096]), "a range past the end is clamped")
        #expect(try await store.get("conformance/range", range: 4095..<4096) == [255])
    }

    static func overwriteAndDelete(_ store: any ObjectStore) async throws {
        try await store.put("conformance/replace", bytes: [1, 2, 3])
        try await store.put("conformance/replace", bytes: [4, 5])
        #expect(try await store.get("conformance/replace") == [4, 5])
        try await store.delete("conformance/replace")
        await expectCode(.notFound) { _ = try await store.get("conformance/replace") }
        try await store.delete("conformance/replace") // idempotent
    }

    static func putIfAbsentIsExclusive(_ store: any ObjectStore) async throws {
        try await store.putIfAbsent("conformance/log/0001", bytes: [1])
        await expectCode(.alreadyExists) { try await store.putIfAbsent("conformance/log/0001", bytes: [2]) }
        #expect(try await store.get("conformance/log/0001") == [1], "the loser must not overwrite")

        // Eight racing writers on each of five keys: exactly one wins each key.
        for round in 0..<5 {
            let key = "conformance/log/race-\(round)"
            let winners = await withTaskGroup(of: UInt8?.self) { group in
                for writer in 0..<8 {
                    group.addTask {
                        do {
                            try await store.putIfAbsent(key, bytes: [UInt8(writer)])
                            return UInt8(writer)
                        } catch {
                            return nil
                        }
                    }
                }
                var winners: [UInt8] = []
                for await winner in group { if let winner { winners.append(winner) } }
                return winners
            }
            #expect(winners.count == 1, "racing putIfAbsent on \(key): \(winners.count) winners")
            if let winner = winners.first {
                #expect(try await store.get(key) == [winner])
            }
        }
    }

    static func listingPagesInOrder(_ store: any ObjectStore) async throws {
        var expected: [String] = []
        for index in 0..<25 {
            let key = "conformance/list/\(String(format: "%03d", index))"
            expected.append(key)
            try await store.put(key, bytes: [UInt8(index)])
        }
        try await store.put("conformance/list/sub/nested", bytes: [9])
        expected.append("conformance/list/sub/nested")
        try await store.put("conformance/listing-sibling", bytes: [9])

        var seen: [String] = []
        var after: String? = nil
        var pages = 0
        while true {
            let page = try await store.list(prefix: "conformance/list/", startAfter: after, limit: 10)
            pages += 1
            seen += page.objects.map(\.key)
            #expect(page.objects.count <= 10)
            guard page.isTruncated, let last = page.objects.last else { break }
            after = last.key
        }
        #expect(seen == expected)
        #expect(pages == 3)
        let sizes = try await store.listAll(prefix: "conformance/list/0").map(\.size)
        #expect(sizes == Array(repeating: 1, count: 25))
        let partial = try await store.listAll(prefix: "conformance/list/00").map(\.key)
        #expect(partial == (0..<10).map { "conformance/list/00\($0)" })
        #expect(try await store.listAll(prefix: "conformance/nothing-here/").isEmpty)
    }

    static func invalidKeysAreRefused(_ store: any ObjectStore) async throws {
        for key in ["", "/abs", "a/../../escape", "..", "a//b", "a/./b", "nul\u{0}byte", "trailing/"] {
            await expectCode(.invalidKey) { try await store.put(key, bytes: [1]) }
            await expectCode(.invalidKey) { _ = try await store.get(key) }
        }
    }

    static func unusualNames(_ store: any ObjectStore) async throws {
        let keys = ["conformance/names/space name", "conformance/names/plus+sign", "conformance/names/ünïcødé-名前",
                    "conformance/names/tilde~and%percent", "conformance/names/q?uery&amp=;", "conformance/names/emoji-🎉"]
        for (index, key) in keys.enumerated() {
            try await store.put(key, bytes: [UInt8(index)])
            #expect(try await store.get(key) == [UInt8(index)], "\(key)")
        }
        let listed = try await store.listAll(prefix: "conformance/names/").map(\.key)
        #expect(listed == keys.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) })
    }

    static func largeObject(_ store: any ObjectStore) async throws {
        // 12 MiB: large enough for a multipart upload with a short last part.
        var state: UInt64 = 0x9e37_79b9_7f4a_7c15
        let words = (0..<(12 << 17) + 4321).map { _ in
            state ^= state << 13; state ^= state >> 7; state ^= state << 17
            return state
        }
        let bytes = words.withUnsafeBytes { Array($0) }
        try await store.put("conformance/large", bytes: bytes)
        let back = try await store.get("conformance/large")
        #expect(back.count == bytes.count)
        #expect(back == bytes)
        #expect(try await store.get("conformance/large", range: 9_000_000..<9_000_100) == Array(bytes[9_000_000..<9_000_100]))
        #expect(try await store.head("conformance/large").size == Int64(bytes.count))
    }
}
