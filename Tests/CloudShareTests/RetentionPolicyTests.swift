import Backends
import CloudShare
import Foundation
import Hashing
import Testing

/// Which versions a retention policy keeps (the pure selection), and what a collector run then deletes:
/// a chunk stays exactly while some kept version's namespace references it.
@Suite struct RetentionPolicyTests {
    /// Monday 2 March 2026, 00:00 UTC.
    static let monday = 1_772_409_600.0
    static func at(day: Double, hour: Double = 12) -> Double { monday + day * 86_400 + hour * 3600 }

    struct Case: Sendable, CustomTestStringConvertible {
        var name: String
        var policy: RetentionPolicy
        /// Commit times, in log order (sequence 1, 2, …).
        var times: [Double]
        var now: Double
        var heldFrom: UInt64?
        var from: UInt64
        var selected: Set<UInt64>
        var testDescription: String { name }
    }

    static let cases: [Case] = [
        Case(name: "no rule keeps every version", policy: RetentionPolicy(), times: (0..<5).map { at(day: Double($0)) },
             now: at(day: 9), heldFrom: nil, from: 0, selected: []),
        Case(name: "a rule but no window keeps the head", policy: RetentionPolicy(keepMonthly: 1), times: (0..<5).map { at(day: Double($0)) },
             now: at(day: 9), heldFrom: nil, from: 5, selected: []),
        // Version 9 (day 8, 12:00) was current until day 9, 12:00: inside a window starting day 8, 18:00.
        Case(name: "the window keeps the version current at its start", policy: RetentionPolicy(keepWithin: 86_400),
             times: (0..<10).map { at(day: Double($0)) }, now: at(day: 9, hour: 18), heldFrom: nil, from: 9, selected: []),
        Case(name: "no commit before the window keeps from the empty share", policy: RetentionPolicy(keepWithin: 30 * 86_400),
             times: (0..<10).map { at(day: Double($0)) }, now: at(day: 9, hour: 18), heldFrom: nil, from: 0, selected: []),
        Case(name: "no commit inside the window keeps the head", policy: RetentionPolicy(keepWithin: 3600),
             times: (0..<10).map { at(day: Double($0)) }, now: at(day: 20), heldFrom: nil, from: 10, selected: []),
        Case(name: "a lagging server holds versions older than the window", policy: RetentionPolicy(keepWithin: 86_400),
             times: (0..<10).map { at(day: Double($0)) }, now: at(day: 9, hour: 18), heldFrom: 2, from: 2, selected: []),
        Case(name: "a server inside the window changes nothing", policy: RetentionPolicy(keepWithin: 86_400),
             times: (0..<10).map { at(day: Double($0)) }, now: at(day: 9, hour: 18), heldFrom: 10, from: 9, selected: []),
        // A slow clock stamps the head before the window: versions current within the window stay.
        Case(name: "a commit stamped early by a slow clock never shrinks the window", policy: RetentionPolicy(keepWithin: 3600),
             times: [at(day: 0), at(day: 5, hour: 11.5), at(day: 0)], now: at(day: 5, hour: 12), heldFrom: nil, from: 1, selected: []),
        // Two versions a day (06:00, 18:00), days 0…4: the last of days 3 and 2 besides the head's day.
        Case(name: "daily keeps the last version of each newest day", policy: RetentionPolicy(keepDaily: 3),
             times: (0..<5).flatMap { [at(day: Double($0), hour: 6), at(day: Double($0), hour: 18)] }, now: at(day: 4, hour: 20),
             heldFrom: nil, from: 10, selected: [8, 6]),
        // Days without commits are not counted: days 0, 3 and 7 have commits.
        Case(name: "daily counts days that have commits", policy: RetentionPolicy(keepDaily: 2),
             times: [at(day: 0), at(day: 3, hour: 6), at(day: 3, hour: 9), at(day: 7)], now: at(day: 8), heldFrom: nil, from: 4, selected: [3]),
        // Daily versions days 0…20 (Mondays are days 0, 7, 14): the last version of the week before the head's (day 13, a Sunday).
        Case(name: "weekly keeps the last version of each newest ISO week", policy: RetentionPolicy(keepWeekly: 3),
             times: (0..<21).map { at(day: Double($0)) }, now: at(day: 20, hour: 13), heldFrom: nil, from: 21, selected: [14, 7]),
        Case(name: "monthly keeps the last version of each newest month", policy: RetentionPolicy(keepMonthly: 2),
             times: [at(day: -40), at(day: -20), at(day: -1), at(day: 2), at(day: 3)], now: at(day: 4), heldFrom: nil, from: 5, selected: [2]),
        Case(name: "rules and a window together", policy: RetentionPolicy(keepWithin: 86_400, keepDaily: 3, keepMonthly: 2),
             times: [at(day: -40), at(day: -20), at(day: -1), at(day: 2), at(day: 3), at(day: 4, hour: 6), at(day: 4, hour: 8)],
             now: at(day: 4, hour: 9), heldFrom: nil, from: 4, selected: [2]),
    ]

    @Test(arguments: cases)
    func theKeepRulesSelectTheVersions(_ test: Case) {
        let versions = test.times.enumerated().map { RetentionPolicy.Version(sequence: UInt64($0.offset + 1), time: $0.element) }
        let retained = test.policy.retained(versions, now: test.now, heldFrom: test.heldFrom)
        #expect(retained.from == test.from && retained.selected == test.selected, "from \(retained.from), selected \(retained.selected.sorted())")
        #expect(retained.contains(UInt64(test.times.count)), "the head is always kept")
        for sequence in 1...UInt64(test.times.count) {
            #expect(retained.contains(sequence) == (sequence >= test.from || test.selected.contains(sequence)))
        }
    }

    /// What a registered endpoint holds, for the collector's run.
    enum Holder: Sendable, CustomTestStringConvertible {
        case none
        case from(UInt64)
        case unreadable
        var testDescription: String {
            switch self {
            case .none: "no server"
            case .from(let sequence): "a server holding versions from #\(sequence)"
            case .unreadable: "an unreadable registration"
            }
        }
    }

    /// The log: 1 a=A, 2 b=B, 3 a=A2, 4 rename a→c, 5 delete b, 6 d=D (head: c=A2, d=D). The policy keeps
    /// only the head, so the holder decides: from #4 B is still needed (b lives in [2, 5)), from #2 A too.
    @Test(arguments: [
        (Holder.none, ["A", "B"]), (.from(6), ["A", "B"]), (.from(5), ["A", "B"]), (.from(4), ["A"]), (.from(3), ["A"]),
        (.from(2), []), (.from(1), []), (.unreadable, []),
    ])
    func aChunkIsDeletedOnlyWhenNoKeptVersionReferencesIt(_ holder: Holder, collected: [String]) async throws {
        let store = MemoryStore()
        let share = try await CloudShare.create(in: store, manifest: ShareManifest(packSize: 1 << 20))
        let content = Dictionary(uniqueKeysWithValues: ["A", "B", "A2", "D"].enumerated().map { ($0.element, Array("chunk \($0.element) ".utf8) + Array(repeating: UInt8($0.offset), count: 5000)) })
        func commit(_ operations: [NamespaceOperation], storing names: [String] = []) async throws {
            let uploader = share.makeUploader()
            for name in names { try await uploader.add(id: SHA256.hash(content[name]!), bytes: content[name]!) }
            let log = share.log
            _ = try await share.appendCommit(author: "t", authorName: "T", operations: operations, uploader: uploader) { try await log.append($0) }
        }
        try await commit([.upsert("a", fileEntry([content["A"]!]))], storing: ["A"])
        try await commit([.upsert("b", fileEntry([content["B"]!]))], storing: ["B"])
        try await commit([.upsert("a", fileEntry([content["A2"]!]))], storing: ["A2"])
        try await commit([.rename(from: "a", to: "c")])
        try await commit([.delete("b")])
        try await commit([.upsert("d", fileEntry([content["D"]!]))], storing: ["D"])
        try await RetentionPolicy(keepWithin: 0).save(to: store)
        switch holder {
        case .none: break
        case .from(let sequence):
            try await ServerRegistration(serverID: "s", name: "lagging", endpoint: 1, lastSeen: 0, lastAppliedSequence: 6, holdsFrom: sequence).write(to: store)
        case .unreadable:
            try await store.put(ServerRegistration.prefix + "s-1.json", bytes: Array("{not json".utf8))
        }
        let clock = MovableClock()
        clock.advance(1)
        var options = GarbageCollector.Options()
        options.grace = 0
        options.safetyInterval = 60
        options.now = clock.now
        _ = try await GarbageCollector(store: store, options: options).run()
        clock.advance(61)
        let sweep = try await GarbageCollector(store: store, options: options).run()
        #expect(sweep.deleted.packs == collected.count, "\(sweep)")

        let reader = try await CloudShare.open(store)
        var gone: [String] = []
        for name in content.keys.sorted() {
            if (try? await reader.readChunk(SHA256.hash(content[name]!))) != content[name]! { gone.append(name) }
        }
        #expect(gone == collected.sorted())
        // `share verify` counts versions outside retention as information, not damage.
        let report = try await ShareVerifier(store: store, options: .init(readDataPercent: 100)).run()
        #expect(report.isClean, "\(report.problems)")
        #expect(report.problems.contains { $0.kind == .outsideRetention } == !collected.isEmpty)
    }
}
