import Backends
import Foundation
import Gateway
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
