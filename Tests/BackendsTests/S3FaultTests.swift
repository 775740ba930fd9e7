import Backends
import Foundation
import Testing

/// The S3 store behind a proxy that breaks requests: throttling, server errors, reset and truncated
/// connections, stalls. Operations must still complete with identical data, within bounded retries,
/// and a short body must never be returned as data.
@Suite struct S3FaultTests {
    /// Short backoffs; the stall timeout is short only where a test injects stalls, because the shared
    /// moto server answers slowly while parallel tests load it.
    static func configuration(attempts: Int, stall: Duration = .seconds(15)) -> S3Store.Configuration {
        var configuration = S3Store.Configuration()
        configuration.http.stallTimeout = stall
        configuration.retry = RetryPolicy(maxAttempts: attempts, baseDelay: .milliseconds(5), maxDelay: .milliseconds(100))
        configuration.multipartThreshold = 5 << 20
        configuration.partSize = 5 << 20
        return configuration
    }

    /// Puts, conditional puts, whole and ranged gets, heads, listings and deletes; returns the
    /// objects it leaves behind.
    static func workload(_ store: S3Store) async throws -> [String: [UInt8]] {
        var objects: [String: [UInt8]] = [:]
        for index in 0..<24 { objects["small/\(index)"] = pseudoRandomBytes(1 + index * 2_711, seed: UInt64(index + 1)) }
        objects["packs/large-1"] = pseudoRandomBytes((11 << 20) + 17, seed: 101)
        let snapshot = objects
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (key, bytes) in snapshot { group.addTask { try await store.put(key, bytes: bytes) } }
            try await group.waitForAll()
        }
        for index in 0..<12 {
            let record = Array("commit \(index) by server A".utf8)
            try await store.putIfAbsent("log/\(String(format: "%04d", index))", bytes: record)
            objects["log/\(String(format: "%04d", index))"] = record
        }
        for index in 0..<3 {
            await StoreConformance.expectCode(.alreadyExists) { try await store.putIfAbsent("log/\(String(format: "%04d", index))", bytes: [0]) }
        }
        for (key, bytes) in objects {
            #expect(try await store.get(key) == bytes, "\(key)")
            #expect(try await store.head(key).size == Int64(bytes.count), "\(key)")
            let lower = Int64(bytes.count / 3), upper = Int64(bytes.count / 3 + 777)
            #expect(try await store.get(key, range: lower..<upper) == Array(bytes[Int(lower)..<min(Int(upper), bytes.count)]), "\(key)")
        }
        #expect(try await store.listAll(prefix: "", pageSize: 7).map(\.key) == objects.keys.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) })
        for index in stride(from: 0, to: 24, by: 2) {
            try await store.delete("small/\(index)")
            objects["small/\(index)"] = nil
        }
        #expect(try await store.listAll(prefix: "small/").count == 12)
        return objects
    }

    @Test func withThirtyPercentOfRequestsFailingOperationsCompleteWithIdenticalData() async throws {
        let attempts = 10
        // The same workload without faults gives the number of requests it needs.
        let baseline = try await motoStore(configuration: Self.configuration(attempts: attempts))
        _ = try await Self.workload(baseline)
        let needed = baseline.client.requestCount

        let proxy = try await TestServers.faultProxy(["--rate", "0.3", "--stall-seconds", "5", "--seed", "7"])
        let url = proxy.url()
        let store = try await motoStore(url: url, configuration: Self.configuration(attempts: attempts, stall: .seconds(2)))
        let objects = try await Self.workload(store)

        // What reached the server is exactly what was written.
        let direct = try await motoStore(url: proxy.directURL(url))
        for (key, bytes) in objects { #expect(try await direct.get(key) == bytes, "\(key)") }
        #expect(try await direct.listAll(prefix: "").count == objects.count)
        #expect(try await direct.incompleteUploads().isEmpty)

        let stats = try await proxy.stats()
        let faults = stats["faults"] ?? 0
        #expect(Double(faults) >= 0.2 * Double(stats["requests"] ?? 0), "\(stats)")
        for kind in ["slowdown", "error500", "reset", "truncate", "stall", "drop"] { #expect((stats[kind] ?? 0) > 0, "no \(kind) fault was injected: \(stats)") }
        #expect(store.client.requestCount > needed)
        #expect(store.client.requestCount <= needed * 3, "\(store.client.requestCount) requests for a workload of \(needed)")
    }

    @Test(arguments: ["truncate", "reset"])
    func aShortDownloadIsNeverReturnedAsData(_ kind: String) async throws {
        let proxy = try await TestServers.faultProxy(["--rate", "1", "--kinds", kind])
        let url = proxy.url()
        let bytes = pseudoRandomBytes(300_000, seed: 5)
        try await motoStore(url: proxy.directURL(url)).put("object", bytes: bytes)
        let store = try await motoStore(url: url, configuration: Self.configuration(attempts: 3))
        for range in [nil, Optional(1_000..<250_000)] as [Range<Int64>?] {
            do {
                let data = try await store.get("object", range: range)
                Issue.record("a \(kind) download returned \(data.count) bytes instead of failing")
            } catch let error as StoreError {
                #expect(error.code == .transient, "\(error)")
            }
        }
        #expect(store.client.requestCount == 6, "each GET is tried exactly 3 times")
    }

    @Test func aStalledRequestTimesOutAndIsRetried() async throws {
        let proxy = try await TestServers.faultProxy(["--rate", "1", "--kinds", "stall", "--stall-seconds", "90"])
        let store = try await motoStore(url: proxy.url(), configuration: Self.configuration(attempts: 2, stall: .seconds(1)))
        let start = ContinuousClock.now
        do {
            _ = try await store.head("anything")
            Issue.record("a stalled request succeeded")
        } catch let error as StoreError {
            #expect(error.code == .transient && "\(error)".contains("timed out"), "\(error)")
        }
        // Two attempts of about a second each; the bound is loose because parallel tests share the CPU.
        #expect(ContinuousClock.now - start < .seconds(45), "the stall timeout did not cut the wait short")
        #expect(store.client.requestCount == 2)
    }

    @Test func throttlingIsRetriedBoundedlyThenReportedAsTransient() async throws {
        let proxy = try await TestServers.faultProxy(["--rate", "1", "--kinds", "slowdown"])
        let store = try await motoStore(url: proxy.url(), configuration: Self.configuration(attempts: 4))
        do {
            try await store.put("k", bytes: [1])
            Issue.record("a throttled put succeeded")
        } catch let error as StoreError {
            #expect(error.code == .transient && "\(error)".contains("SlowDown"), "\(error)")
        }
        #expect(store.client.requestCount == 4)
    }

    @Test func aConditionalWriteConflictIsRetried() async throws {
        let proxy = try await TestServers.faultProxy(["--fail-method", "PUT", "--fail-status", "409", "--fail-code", "ConditionalRequestConflict", "--fail-count", "2"])
        let store = try await motoStore(url: proxy.url(), configuration: Self.configuration(attempts: 4))
        try await store.putIfAbsent("log/0001", bytes: [1])
        #expect(store.client.requestCount >= 3, "two conflicts, then the write")
        #expect(try await store.get("log/0001") == [1])
    }

    @Test func otherClientErrorsAreNotRetried() async throws {
        let proxy = try await TestServers.faultProxy(["--fail-query", "list-type=2", "--fail-status", "400", "--fail-code", "InvalidArgument"])
        let store = try await motoStore(url: proxy.url(), configuration: Self.configuration(attempts: 5))
        await StoreConformance.expectCode(.permanent) { _ = try await store.list(prefix: "", startAfter: nil, limit: 10) }
        #expect(store.client.requestCount == 1)
    }

    @Test func aPutIfAbsentWhoseAnswerWasLostIsStillOurs() async throws {
        // The first PUT reaches the server and writes; the proxy then replaces its answer by a 500. The
        // retry meets 412, reads the object back, finds its own bytes, and reports success.
        let proxy = try await TestServers.faultProxy(["--rate", "1", "--kinds", "error500", "--fault-count", "1"])
        let store = try await motoStore(url: proxy.url(), configuration: Self.configuration(attempts: 3))
        try await store.putIfAbsent("log/0001", bytes: [1, 2, 3])
        #expect(store.client.requestCount >= 3, "PUT (answer lost), PUT (412), GET (read back)")
        // A different writer losing the same race still gets "already exists".
        await StoreConformance.expectCode(.alreadyExists) { try await store.putIfAbsent("log/0001", bytes: [9]) }
    }

    @Test(arguments: [[4, 5, 6], []] as [[UInt8]])
    func aWriteThatCurlSilentlyResentIsRecognised(_ bytes: [UInt8]) async throws {
        // The proxy forwards the PUT (S3 writes it) and then drops the connection without an answer.
        // On a reused connection curl resends the request by itself, and the resend meets 412; the
        // store must see that the 412 may answer its own first copy, read back and succeed.
        let proxy = try await TestServers.faultProxy(["--rate", "1", "--kinds", "drop", "--fault-count", "1", "--fault-methods", "PUT"])
        let store = try await motoStore(url: proxy.url(), configuration: Self.configuration(attempts: 3))
        await StoreConformance.expectCode(.notFound) { _ = try await store.head("log/0001") } // warms the connection
        try await store.putIfAbsent("log/0001", bytes: bytes)
        #expect(try await store.get("log/0001") == bytes)
        await StoreConformance.expectCode(.alreadyExists) { try await store.putIfAbsent("log/0001", bytes: [9]) }
    }
}
