import Foundation
import Gateway
import Testing

/// A seeded generator so a failing workload can be replayed.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}

@Suite(.serialized) struct ConvergenceTests {
    /// Random creates, edits, deletes and renames on three endpoints, with syncs interleaved at random;
    /// afterwards every endpoint must hold the identical tree.
    @Test(arguments: [1, 2])
    func aRandomWorkloadOnThreeEndpointsConverges(seed: UInt64) async throws {
        let group = try await SyncGroup(servers: 3)
        var random = SeededGenerator(state: seed)
        try await Self.randomWorkload(group, steps: 1000, using: &random)
        try await Self.expectConverged(group, moreItemsThan: 20)
    }

    /// `steps` random creates, edits, deletes, renames, directory moves and syncs on the group's endpoints.
    static func randomWorkload(_ group: SyncGroup, steps: Int, using random: inout SeededGenerator) async throws {
        let fm = FileManager.default
        for step in 0..<steps {
            let index = Int.random(in: 0..<group.endpoints.count, using: &random)
            let root = group.root(index)
            let tree = group.tree(index)
            let files = tree.filter { $0.value != "<dir>" }.map(\.key).sorted()
            let dirs = tree.filter { $0.value == "<dir>" }.map(\.key).sorted()
            func inRandomDirectory(_ name: String) -> String {
                let dir = (dirs + [""]).randomElement(using: &random)!
                return (dir.isEmpty ? "" : dir + "/") + name
            }
            switch Int.random(in: 0..<100, using: &random) {
            case 0..<30:
                group.write(index, inRandomDirectory("f\(step).txt"), "created \(step) on \(index)")
            case 30..<50:
                if let file = files.randomElement(using: &random) { group.write(index, file, "edited \(step) on \(index)") }
            case 50..<60:
                if let file = files.randomElement(using: &random) { try? fm.removeItem(atPath: root + "/" + file) }
            case 60..<70:
                if let file = files.randomElement(using: &random) { try? fm.moveItem(atPath: root + "/" + file, toPath: root + "/" + inRandomDirectory("r\(step).txt")) }
            case 70..<78:
                try? fm.createDirectory(atPath: root + "/" + inRandomDirectory("d\(step)"), withIntermediateDirectories: true)
            case 78..<82:
                if let dir = dirs.randomElement(using: &random) { try? fm.moveItem(atPath: root + "/" + dir, toPath: root + "/m\(step)") }
            case 82..<85:
                if let dir = dirs.randomElement(using: &random) { try? fm.removeItem(atPath: root + "/" + dir) }
            default:
                try await group.sync(index)
            }
        }
    }

    /// Three more rounds of syncs; then every endpoint holds the same tree (of more than `minimum`
    /// items) and nothing is left not syncing.
    static func expectConverged(_ group: SyncGroup, moreItemsThan minimum: Int) async throws {
        for _ in 0..<3 { for index in group.endpoints.indices { try await group.sync(index) } }
        let reference = group.tree(0)
        #expect(reference.count > minimum, "the workload left a non-trivial tree")
        for index in group.endpoints.indices.dropFirst() {
            let tree = group.tree(index)
            #expect(tree == reference, "endpoint \(index) differs: only there \(Set(tree.keys).subtracting(reference.keys).sorted().prefix(10)), missing \(Set(reference.keys).subtracting(tree.keys).sorted().prefix(10)), content \(tree.filter { reference[$0.key] != nil && reference[$0.key] != $0.value }.keys.sorted().prefix(10))")
        }
        for index in group.endpoints.indices {
            let errors = try group.gateways[index].itemErrors().map(\.error)
            #expect(errors.isEmpty, "endpoint \(index) has items not syncing: \(errors.prefix(5))")
        }
    }
}
