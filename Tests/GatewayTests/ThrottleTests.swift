import Backends
import Foundation
import Gateway
import Synchronization
import Testing

@Suite struct ThrottleTests {
    @Test(arguments: [("10M", 10_000_000), ("500K", 500_000), ("1.5G", 1_500_000_000), ("2048", 2048), ("10MB/s", 10_000_000)] as [(String, Int64)])
    func ratesParse(text: String, bytes: Int64) {
        #expect(ByteRate.parse(text) == bytes)
    }

    @Test(arguments: ["", "0", "-5M", "fast", "10X", "0.0001"])
    func nonRatesAreRefused(text: String) {
        #expect(ByteRate.parse(text) == nil)
    }

    @Test func aLimitedStorePacesItsBytes() async throws {
        let directory = NSTemporaryDirectory() + "tiergate-throttle-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = ThrottledStore(LocalStore(root: directory), bytesPerSecond: 1_000_000)
        let started = Date()
        // 3 MB of puts and 2 MB of gets at 1 MB/s with one second of burst: the last 0.5 MB request
        // may start 3.5 s in, not earlier, whatever the machine.
        for index in 0..<6 { try await store.put("object\(index)", bytes: [UInt8](repeating: 7, count: 500_000)) }
        for index in 0..<4 { _ = try await store.get("object\(index)") }
        let elapsed = Date().timeIntervalSince(started)
        #expect(elapsed >= 3.4, "5 MB went through a 1 MB/s limit in \(elapsed) s")
    }
}

/// The token bucket under a rate that changes, shared by several stores, and with recall exempt.
@Suite struct TokenBucketTests {
    static func directory() -> String { NSTemporaryDirectory() + "tiergate-bucket-" + UUID().uuidString }

    @Test func recallTrafficIsNotPacedWhileOtherTrafficIs() async throws {
        let path = Self.directory()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let base = LocalStore(root: path)
        try await base.put("big", bytes: [UInt8](repeating: 1, count: 4_000_000))
        let store = ThrottledStore(base, bytesPerSecond: 64_000)
        let started = Date()
        for _ in 0..<3 { _ = try await StoreTraffic.recall { try await store.get("big") } }
        let recall = Date().timeIntervalSince(started)
        // 12 MB at 64 KB/s would take over three minutes.
        #expect(recall < 30, "recall reads took \(recall) s")
        let paced = Date()
        // Five 64 KB reads at 64 KB/s with 64 KB of burst: the last may start 3 s in, not earlier.
        for _ in 0..<5 { _ = try await store.get("big", range: 0..<64_000) }
        #expect(Date().timeIntervalSince(paced) >= 2.9, "other reads are paced")
    }

    @Test func aChangeOfRateReachesAWaiterWithinASecond() async throws {
        let rate = Mutex<Int64?>(1000)
        let bucket = TokenBucket(rate: { rate.withLock { $0 } })
        try await bucket.take(1000)       // the burst
        try await bucket.take(1_000_000)    // goes at once, and holds the link for 1000 s
        let started = Date()
        let waiter = Task { try await bucket.take(1000) }    // starts after those 1000 s at the first rate
        try await Task.sleep(for: .milliseconds(300))
        rate.withLock { $0 = nil }
        try await waiter.value
        let elapsed = Date().timeIntervalSince(started)
        // About a second; the bound leaves room for a machine too busy to wake the task on time.
        #expect(elapsed < 60, "the waiter went \(elapsed) s after the limit was lifted, not 1000 s later")
        rate.withLock { $0 = 500_000 }
        try await Task.sleep(for: .milliseconds(1100))    // the bucket reads its rate once a second
        let limited = Date()
        for _ in 0..<4 { try await bucket.take(500_000) }
        // The fourth 0.5 MB may start 2 s in at 0.5 MB/s with 0.5 MB of burst.
        let paced = Date().timeIntervalSince(limited)
        #expect(paced >= 1.9, "took \(paced) s")
    }

    @Test func storesWrappedWithOneBucketShareItsLimit() async throws {
        let path = Self.directory()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let bucket = TokenBucket(bytesPerSecond: 1_000_000)
        let first = ThrottledStore(LocalStore(root: path + "/a"), bucket: bucket)
        let second = ThrottledStore(LocalStore(root: path + "/b"), bucket: bucket)
        let started = Date()
        async let a: Void = { for index in 0..<3 { try await first.put("a\(index)", bytes: [UInt8](repeating: 1, count: 500_000)) } }()
        async let b: Void = { for index in 0..<3 { try await second.put("b\(index)", bytes: [UInt8](repeating: 2, count: 500_000)) } }()
        _ = try await (a, b)
        // 3 MB through one 1 MB/s limit with 1 MB of burst: the last 0.5 MB may start 1.5 s in, not earlier
        // (each store alone would let its 1.5 MB through in 0.5 s).
        let elapsed = Date().timeIntervalSince(started)
        #expect(elapsed >= 1.4, "took \(elapsed) s")
    }
}
