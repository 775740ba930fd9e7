import Backends
@testable import CloudShare
import Foundation
import Hashing
import Testing

/// The retention mark replays the log into a ``CompactNamespace`` instead of a ``Namespace``: it must hold
/// the same items as `Namespace.apply` after every commit, and mark exactly the chunks the replay over the
/// full namespace marked, on random logs of upserts, overwrites, deletes and renames of files and folders,
/// snapshots, retention windows, rules and lagging servers.
@Suite struct CompactNamespaceTests {
    /// Paths that nest in each other, so that deletes and renames of folders move, replace and drop items
    /// below them, renames go into or out of themselves, and files are upserted over folders.
    static let paths = ["a", "a/b", "a/b/c", "c", "a/x", "a/y", "a/b/x", "a/b/c/x", "c/x", "c/a", "c/a/b", "x", "y", "", "a/", "a//x"]

    /// A random log: commits of one to four operations, their times spread over weeks (some stamped early,
    /// as by a slow clock), chunks drawn from a small pool so that files share them.
    static func randomLog(_ random: inout SplitMix64, commits count: Int) -> [Commit] {
        let pool = (0..<20).map { SHA256.hash(Array("chunk \($0)".utf8)) }
        var time = RetentionPolicyTests.monday - 90 * 86_400
        var commits: [Commit] = []
        for sequence in 1...UInt64(count) {
            var operations: [NamespaceOperation] = []
            for _ in 0..<(1 + Int(random.next() % 4)) {
                let path = paths[Int(random.next() % UInt64(paths.count))]
                switch random.next() % 20 {
                case 0..<8:
                    let chunks = (0..<Int(random.next() % 4)).map { _ in ChunkRef(id: pool[Int(random.next() % UInt64(pool.count))], length: 1) }
                    operations.append(.upsert(path, NamespaceEntry(kind: .file, fileID: "f", size: 1, mode: 0o644, mtime: 0, uid: 0, gid: 0, chunks: chunks)))
                case 8..<11:
                    operations.append(.upsert(path, NamespaceEntry(kind: .directory, fileID: "d", size: 0, mode: 0o755, mtime: 0, uid: 0, gid: 0)))
                case 11..<15:
                    operations.append(.delete(path))
                default:
                    operations.append(.rename(from: path, to: paths[Int(random.next() % UInt64(paths.count))]))
                }
            }
            var commit = Commit(author: "t", authorName: "T", operations: operations)
            commit.sequence = sequence
            time += Double(random.next() % (3 * 86_400))
            commit.time = random.next() % 8 == 0 ? time - Double(random.next() % (5 * 86_400)) : time
            commits.append(commit)
        }
        return commits
    }

    /// The items of a namespace as the compact one holds them unmarked: kind and chunk ids by path.
    static func items(_ namespace: Namespace) -> [String: [Digest32]?] {
        namespace.entries.mapValues { $0.kind == .file ? $0.chunks.map(\.id) : nil }
    }

    static func items(_ namespace: CompactNamespace) -> [String: [Digest32]?] {
        namespace.items.mapValues { item -> [Digest32]? in
            switch item {
            case .directory: return nil
            case .file(let id): return [id]
            case .fileOfChunks(let ids): return ids
            case .markedFile: Issue.record("a file marked without marking"); return []
            }
        }
    }

    @Test(arguments: 0..<200)
    func theCompactNamespaceHoldsWhatNamespaceApplyHolds(_ seed: Int) {
        var random = SplitMix64(state: UInt64(seed))
        let namespace = CompactNamespace()
        var oracle = Namespace()
        var unused = ChunkMark()
        for commit in Self.randomLog(&random, commits: 40) {
            for operation in commit.operations {
                namespace.apply(operation, marksUpserts: false, mark: &unused)
                oracle.apply(operation, sequence: commit.sequence)
                let (have, want) = (Self.items(namespace), Self.items(oracle))
                #expect(have == want, "seed \(seed), #\(commit.sequence), after \(operation.op) \(operation.from.map { "'\($0)' → " } ?? "")'\(operation.path)'")
                if have != want { return }
            }
        }
        #expect(unused.count == 0)
    }

    /// The mark as the collector took it before the compact replay: every commit held, the whole
    /// ``Namespace`` replayed with `Namespace.apply`, marked whole at the first kept version of each run of
    /// kept versions and by the upserts of each next one; then the snapshots kept and the newest.
    static func markOfTheFullReplay(commits: [Commit], base: UInt64, snapshots: [UInt64: Namespace], retained: RetainedVersions) -> Set<Digest32> {
        func fileChunks(_ namespace: Namespace) -> [Digest32] {
            namespace.entries.values.flatMap { $0.kind == .file ? $0.chunks.map(\.id) : [] }
        }
        func upserted(_ commit: Commit) -> [Digest32] {
            commit.operations.flatMap { operation -> [Digest32] in
                guard operation.op == .upsert, let entry = operation.entry, entry.kind == .file else { return [] }
                return entry.chunks.map(\.id)
            }
        }
        var marked: Set<Digest32> = []
        var namespace = base > 0 ? snapshots[base]! : Namespace()
        var previousKept = base == 0 || retained.contains(base)
        if base > 0 && previousKept { marked.formUnion(fileChunks(namespace)) }
        for commit in commits where commit.sequence > base {
            namespace.apply(commit)
            if retained.contains(commit.sequence) {
                marked.formUnion(previousKept ? upserted(commit) : fileChunks(namespace))
                previousKept = true
            } else {
                previousKept = false
            }
        }
        let newest = snapshots.keys.max()
        for (sequence, snapshot) in snapshots where sequence == newest || retained.contains(sequence) {
            marked.formUnion(fileChunks(snapshot))
        }
        return marked
    }

    @Test(arguments: 0..<150)
    func theMarkIsTheOneOfTheFullReplay(_ seed: Int) async throws {
        var random = SplitMix64(state: 0x6D61_726B + UInt64(seed))
        let count = 10 + Int(random.next() % 40)
        let commits = Self.randomLog(&random, commits: count)
        let store = MemoryStore()
        let log = CommitLog(store: store)
        for commit in commits { #expect(try await log.tryAppend(commit, at: commit.sequence)) }

        // Snapshots at random sequences; with the first, the log may start after it (older records collected).
        var snapshots: [UInt64: Namespace] = [:]
        var base: UInt64 = 0
        for _ in 0..<Int(random.next() % 3) {
            let at = 1 + random.next() % UInt64(count - 1)
            var namespace = Namespace()
            for commit in commits.prefix(Int(at)) { namespace.apply(commit) }
            snapshots[at] = namespace
            let encoder = JSONEncoder()
            encoder.outputFormatting = .sortedKeys
            try await store.put(CloudShare.snapshotKey(at), bytes: Array(try encoder.encode(namespace)))
        }
        if let first = snapshots.keys.min(), random.next() % 2 == 0 {
            base = first
            for sequence in 1...first { try await store.delete(CommitLog.key(sequence)) }
        }

        // A policy that keeps some versions: a window, rules, or both; perhaps a lagging server.
        var policy = RetentionPolicy()
        if random.next() % 3 != 0 { policy.keepWithin = Double(random.next() % (40 * 86_400)) }
        if random.next() % 2 == 0 { policy.keepDaily = 1 + Int(random.next() % 4) }
        if random.next() % 3 == 0 { policy.keepWeekly = 1 + Int(random.next() % 3) }
        if random.next() % 4 == 0 { policy.keepMonthly = 1 + Int(random.next() % 2) }
        if policy.keepsEverything { policy.keepWithin = 0 }
        try await policy.save(to: store)
        var heldFrom: UInt64?
        if random.next() % 3 == 0 {
            heldFrom = base + random.next() % UInt64(count - Int(base) + 1)
            try await ServerRegistration(serverID: "s", name: "lagging", endpoint: 1, lastSeen: 0, lastAppliedSequence: UInt64(count),
                                         holdsFrom: heldFrom).write(to: store)
        }
        let now = commits.last!.time + Double(random.next() % (10 * 86_400))

        let mark = try await GarbageCollector.mark(store: store, now: now, progress: nil)
        let versions = commits.filter { $0.sequence > base }.map { RetentionPolicy.Version(sequence: $0.sequence, time: $0.time) }
        let retained = policy.retained(versions, now: now, heldFrom: heldFrom)
        #expect(mark.head == UInt64(count) && mark.retained == retained)
        let want = Self.markOfTheFullReplay(commits: commits, base: base, snapshots: snapshots, retained: retained)
        let marked = Set(mark.chunks.ids)
        #expect(marked.count == mark.chunks.count, "seed \(seed): the mark holds each chunk once")
        #expect(marked == want, "seed \(seed): \(marked.subtracting(want).count) marked more, \(want.subtracting(marked).count) fewer; base \(base), kept from \(retained.from), selected \(retained.selected.sorted())")

        // What the mark must keep whatever the replay: every chunk of every kept version's namespace.
        var namespace = Namespace()
        for commit in commits {
            namespace.apply(commit)
            guard commit.sequence >= base, retained.contains(commit.sequence) else { continue }
            let needed = Set(namespace.entries.values.flatMap { $0.kind == .file ? $0.chunks.map(\.id) : [] })
            #expect(needed.allSatisfy(mark.chunks.contains), "seed \(seed): version #\(commit.sequence) is kept and needs chunks the mark left out")
        }
    }
}
