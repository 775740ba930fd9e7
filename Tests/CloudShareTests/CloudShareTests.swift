import Backends
@testable import CloudShare
import Foundation
import Hashing
import Testing

func pseudoRandomBytes(_ count: Int, seed: UInt64) -> [UInt8] {
    var state = seed | 1
    return (0..<count).map { _ in
        state ^= state << 13; state ^= state >> 7; state ^= state << 17
        return UInt8(truncatingIfNeeded: state)
    }
}

func temporaryStore() throws -> (LocalStore, cleanup: () -> Void) {
    let path = NSTemporaryDirectory() + "tiergate-share-" + UUID().uuidString
    return (LocalStore(root: path), { try? FileManager.default.removeItem(atPath: path) })
}

@Suite struct CloudShareTests {
    @Test func chunksRoundTripThroughPacksAndDedup() async throws {
        let (store, cleanup) = try temporaryStore()
        defer { cleanup() }
        let share = try await CloudShare.create(in: store, manifest: ShareManifest(packSize: 64 << 10))
        let chunks = (0..<40).map { pseudoRandomBytes(5000 + $0 * 97, seed: UInt64($0) + 1) }
        let uploader = share.makeUploader()
        for chunk in chunks + chunks {
            try await uploader.add(id: SHA256.hash(chunk), bytes: chunk)
        }
        try await uploader.finish()
        let (deduped, packs) = (await uploader.dedupedChunks, await uploader.packs)
        #expect(deduped == 40, "the second copy of every chunk is deduplicated")
        #expect(packs.count > 1, "64 KiB packs must split ~250 KiB of chunks")

        let reopened = try await CloudShare.open(store)
        #expect(reopened.indexFigures().chunks == 0, "opening a share does not load its index")
        try await reopened.ensureIndexLoaded()
        #expect(reopened.indexFigures().chunks == 40)
        for chunk in chunks {
            #expect(try await reopened.readChunk(SHA256.hash(chunk)) == chunk)
        }
        for pack in packs {
            #expect(try await reopened.verifyPack(pack) > 0)
        }

        let again = reopened.makeUploader()
        try await again.add(id: SHA256.hash(chunks[0]), bytes: chunks[0])
        try await again.finish()
        #expect(await again.packs.isEmpty, "a chunk already in the share is not stored again")
    }

    @Test func aCorruptPackIsReportedByName() async throws {
        let (store, cleanup) = try temporaryStore()
        defer { cleanup() }
        let share = try await CloudShare.create(in: store)
        let chunk = pseudoRandomBytes(10_000, seed: 7)
        let uploader = share.makeUploader()
        try await uploader.add(id: SHA256.hash(chunk), bytes: chunk)
        try await uploader.finish()
        let pack = await uploader.packs[0]
        let path = store.root + "/" + PackFormat.key(pack)
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        bytes[100] ^= 0xff
        try Data(bytes).write(to: URL(fileURLWithPath: path))

        await #expect(throws: ShareError.self) { _ = try await share.readChunk(SHA256.hash(chunk)) }
        do {
            _ = try await share.readChunk(SHA256.hash(chunk))
        } catch let error as ShareError {
            #expect(error.code == .corrupt)
            #expect(error.object == PackFormat.key(pack))
        }
        await #expect(throws: ShareError.self) { _ = try await share.verifyPack(pack) }

        // Truncated: the trailer is gone.
        try Data(bytes.prefix(5000)).write(to: URL(fileURLWithPath: path))
        await #expect(throws: ShareError.self) { _ = try await share.verifyPack(pack) }
        await #expect(throws: ShareError.self) { _ = try await share.readChunk(SHA256.hash(chunk)) }
    }

    @Test func anUnknownFormatVersionIsRefused() async throws {
        let store = MemoryStore()
        try await store.put(ShareManifest.key, bytes: Array(#"{"format": 99}"#.utf8))
        do {
            _ = try await CloudShare.open(store)
            Issue.record("opened a format-99 share")
        } catch let error as ShareError {
            #expect(error.code == .unsupportedFormat)
            #expect(error.description.contains("99"))
        }
        await #expect(throws: ShareError.self) { _ = try await CloudShare.open(MemoryStore()) }
    }

    @Test func aDamagedIndexSegmentIsRecordedAndItsChunksAreReadFromThePackTrailer() async throws {
        let store = MemoryStore()
        let share = try await CloudShare.create(in: store, manifest: ShareManifest(packSize: 64 << 10))
        let chunks = (0..<12).map { pseudoRandomBytes(20_000 + $0 * 31, seed: UInt64($0) + 50) }
        let uploader = share.makeUploader()
        for chunk in chunks { try await uploader.add(id: SHA256.hash(chunk), bytes: chunk) }
        try await uploader.finish()
        let packs = await uploader.packs
        #expect(packs.count >= 3)
        try await store.put(IndexSegment.key(packs[0]), bytes: [1, 2, 3])
        try await store.delete(IndexSegment.key(packs[1]))

        let reopened = try await CloudShare.open(store)
        try await reopened.ensureIndexLoaded()
        #expect(reopened.damagedIndexSegments.keys.sorted { $0.hex < $1.hex } == [packs[0]])
        for chunk in chunks { #expect(try await reopened.readChunk(SHA256.hash(chunk)) == chunk) }
        #expect(Set(reopened.damagedIndexSegments.keys) == [packs[0], packs[1]], "a pack without segment is found on a miss")

        // With the trailer damaged too, a chunk of that pack fails with an error naming the pack.
        let again = try await CloudShare.open(store)
        let pack = try await store.get(PackFormat.key(packs[0]))
        try await store.put(PackFormat.key(packs[0]), bytes: Array(pack.dropLast(10)))
        var lost: [UInt8]?
        for chunk in chunks where lost == nil {
            if try await share.location(of: SHA256.hash(chunk))?.pack == packs[0] { lost = chunk }
        }
        let lostChunk = try #require(lost)
        do {
            _ = try await again.readChunk(SHA256.hash(lostChunk))
            Issue.record("read a chunk of a pack with no readable chunk list")
        } catch let error as ShareError {
            #expect(error.code == .missingChunk)
            #expect(error.object == PackFormat.key(packs[0]), "\(error)")
        }
    }

    @Test func aChunkKnownOnlyFromADamagedPacksTrailerIsStoredAgainAndCommitsNameTheIndexedPack() async throws {
        let (store, cleanup) = try temporaryStore()
        defer { cleanup() }
        let share = try await CloudShare.create(in: store)
        let chunk = pseudoRandomBytes(20_000, seed: 11), id = SHA256.hash(chunk)
        let other = pseudoRandomBytes(9_000, seed: 12)
        let first = share.makeUploader()
        try await first.add(id: id, bytes: chunk)
        try await first.add(id: SHA256.hash(other), bytes: other)
        try await first.finish()
        let damaged = await first.packs[0]
        try await store.delete(IndexSegment.key(damaged))

        // A reader finds the chunk through the pack's trailer…
        let reopened = try await CloudShare.open(store)
        #expect(try await reopened.readChunk(id) == chunk)
        #expect(try await reopened.location(of: id)?.pack == damaged)
        // …but a writer does not reference it there: it stores the chunk again, in a pack with an index
        // segment, and a commit names that pack, never the damaged one.
        let writer = reopened.makeUploader()
        #expect(try await writer.add(id: id, bytes: chunk), "a chunk known only from a trailer must be stored again")
        try await writer.finish()
        let stored = await writer.packs
        #expect(stored.count == 1 && stored[0] != damaged)
        let commit = reopened.commit(author: "t", authorName: "T", operations: [
            .upsert("a", NamespaceEntry(kind: .file, fileID: NamespaceEntry.newFileID(), size: 20_000, mode: 0o644, mtime: 0, uid: 0, gid: 0,
                                        chunks: [ChunkRef(id: id, length: 20_000)])),
        ])
        #expect(commit.packs == stored.map(\.hex), "the commit names \(commit.packs), not the indexed pack")
        #expect(try await store.head(IndexSegment.key(stored[0])).size > 0)
    }

    @Test func onlyKeysAsSnapshotsAreWrittenNameSnapshots() {
        #expect(CloudShare.snapshotSequence(ofKey: CloudShare.snapshotKey(42)) == 42)
        #expect(CloudShare.snapshotSequence(ofKey: "snapshots/42") == nil)  // would be read as snapshots/000…042
        #expect(CloudShare.snapshotSequence(ofKey: "snapshots/+0000000000000000042") == nil)
        #expect(CloudShare.snapshotSequence(ofKey: "log/00000000000000000042") == nil)
    }

    @Test func creatingTwiceIsRefused() async throws {
        let store = MemoryStore()
        _ = try await CloudShare.create(in: store)
        await #expect(throws: ShareError.self) { _ = try await CloudShare.create(in: store) }
    }
}

@Suite struct CommitLogTests {
    func entry(_ size: Int64) -> NamespaceEntry {
        NamespaceEntry(kind: .file, fileID: UUID().uuidString, size: size, mode: 0o644, mtime: 0, uid: 0, gid: 0)
    }

    @Test func racingWritersNeverShareASequenceNumber() async throws {
        let (store, cleanup) = try temporaryStore()
        defer { cleanup() }
        let share = try await CloudShare.create(in: store)
        // Eight writers, each appending five commits with rebase-and-retry on a lost race.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for writer in 0..<8 {
                group.addTask {
                    for index in 0..<5 {
                        let commit = Commit(author: "w\(writer)", authorName: "w\(writer)", operations: [.upsert("w\(writer)/\(index)", entry(1))])
                        var head = try await share.log.head()
                        while !(try await share.log.tryAppend(commit, at: head + 1)) {
                            head = try await share.log.head(after: head)
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        let commits = try await share.log.records(after: 0)
        #expect(commits.map(\.sequence) == Array(1...40))
        #expect(Set(commits.map(\.id)).count == 40, "no commit was lost or written twice")
        let namespace = try await share.namespace()
        #expect(namespace.fileCount == 40)
    }

    /// A commit with every kind of operation and every optional field.
    func fullCommit() -> Commit {
        var file = entry(70_000)
        file.chunks = [ChunkRef(id: SHA256.hash(Array("a".utf8)), length: 65_536), ChunkRef(id: SHA256.hash(Array("b".utf8)), length: 4464)]
        file.fingerprint = "00112233445566778899aabbccddeeff"
        file.acl = ["system.posix_acl_access": "AgAAAAEABgD/////", "system.posix_acl_default": "AgAAAA=="]
        file.version = 12
        file.mtime = 1_764_000_000_123_456_789
        file.uid = 1000
        let directory = NamespaceEntry(kind: .directory, fileID: "d1", size: 0, mode: 0o755, mtime: -5, uid: 0, gid: 0)
        return Commit(author: "server/1", authorName: "Ünïcode ☃", packs: ["p1", "p2"],
                      operations: [.upsert("dir", directory), .upsert("dir/naïve file.txt", file), .delete("old"), .rename(from: "x", to: "y/z")])
    }

    @Test func binaryRecordsRoundTripAndJSONRecordsStillRead() async throws {
        let share = try await CloudShare.create(in: MemoryStore())
        #expect(share.manifest.format == 2)
        let commit = fullCommit()
        let sequence = try await share.log.append(commit)
        let raw = try await share.store.get(CommitLog.key(sequence))
        #expect(raw.starts(with: Array("TGC1".utf8)), "format-2 shares write binary records")
        let back = try await share.log.read(sequence)
        #expect(back.id == commit.id && back.author == commit.author && back.authorName == commit.authorName)
        #expect(back.time == commit.time && back.packs == commit.packs && back.sequence == sequence)
        #expect(back.operations == commit.operations)

        // A format-1 share keeps JSON records; a log may hold both kinds.
        let legacy = CommitLog(store: share.store, writesBinary: false)
        let next = try await legacy.append(commit, knownHead: sequence)
        #expect(try await share.store.get(CommitLog.key(next)).first == UInt8(ascii: "{"))
        #expect(try await share.log.records(after: 0).map(\.operations) == [commit.operations, commit.operations])
    }

    /// File ids and fingerprints of 32 lowercase hex digits are held in two numbers; every id and
    /// fingerprint, of that form or not, reads back and is encoded exactly as it was given.
    @Test func idsAndFingerprintsReadBackExactlyAsGiven() async throws {
        #expect(CompactHex("00112233445566778899aabbccddeeff") == .hex(0x0011_2233_4455_6677, 0x8899_aabb_ccdd_eeff))
        #expect(CompactHex(NamespaceEntry.newFileID()).string.count == 32)
        if case .text = CompactHex(NamespaceEntry.newFileID()) { Issue.record("a new file id is held as text") }
        let texts = ["00112233445566778899aabbccddeeff", "ffffffffffffffffffffffffffffffff", "00000000000000000000000000000000",
                     "00112233445566778899AABBCCDDEEFF", "00112233445566778899aabbccddeef", "00112233445566778899aabbccddeeff0",
                     "0011223344556677 899aabbccddeeff", "", "d1", UUID().uuidString, "ünïcode-id-☃-0123456789abcdef0123"]
        var operations: [NamespaceOperation] = []
        for (index, text) in texts.enumerated() {
            var entry = NamespaceEntry(kind: .file, fileID: text, size: 0, mode: 0o644, mtime: 0, uid: 0, gid: 0, fingerprint: text)
            #expect(entry.fileID == text && entry.fingerprint == text)
            #expect(entry.fingerprintValue == Fingerprint128(hex: text), "the value of '\(text)'")
            entry.fingerprint = nil
            #expect(entry.fingerprintValue == nil)
            #expect(entry.fingerprint == nil && entry.fileID == text)
            entry.fingerprint = text
            let json = try JSONEncoder().encode(entry)
            let object = try #require(try JSONSerialization.jsonObject(with: json) as? [String: Any])
            #expect(object["id"] as? String == text && object["f"] as? String == text)
            let decoded = try JSONDecoder().decode(NamespaceEntry.self, from: json)
            #expect(decoded == entry && decoded.fileID == text && decoded.fingerprint == text)
            operations.append(.upsert("f\(index)", entry))
        }
        let share = try await CloudShare.create(in: MemoryStore())
        let sequence = try await share.log.append(Commit(author: "a", authorName: "a", operations: operations))
        let back = try await share.log.read(sequence)
        #expect(back.operations == operations)
        #expect(back.operations.map { $0.entry?.fileID } == texts && back.operations.map { $0.entry?.fingerprint } == texts)
    }

    /// Entries share their fields until one changes: a changed copy, or an entry changed inside a
    /// dictionary, never changes another entry.
    @Test func aChangedCopyOfAnEntryLeavesTheOriginalAsItWas() throws {
        let original = NamespaceEntry(kind: .file, fileID: NamespaceEntry.newFileID(), size: 5, mode: 0o644, mtime: 7, uid: 1, gid: 2,
                                      chunks: [ChunkRef(id: SHA256.hash(Array("a".utf8)), length: 5)],
                                      fingerprint: "00112233445566778899aabbccddeeff", acl: ["k": "v"], version: 3)
        let changes: [(String, (inout NamespaceEntry) -> Void)] = [
            ("kind", { $0.kind = .directory }), ("fileID", { $0.fileID = "other" }), ("size", { $0.size = 6 }),
            ("mode", { $0.mode = 0o600 }), ("mtime", { $0.mtime = 8 }), ("uid", { $0.uid = 9 }), ("gid", { $0.gid = 9 }),
            ("chunks", { $0.chunks = [] }), ("fingerprint", { $0.fingerprint = nil }), ("acl", { $0.acl = nil }),
            ("version", { $0.version = nil }),
        ]
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let encoded = try encoder.encode(original)
        for (field, change) in changes {
            var copy = original
            change(&copy)
            #expect(copy != original, "changing \(field) changes the copy")
            #expect(try encoder.encode(original) == encoded, "changing \(field) of a copy leaves the original")
            var entries: [String: NamespaceEntry] = [:]
            entries["a"] = original
            entries["b"] = original
            change(&entries["a"]!)
            #expect(entries["a"] == copy && entries["b"] == original, "\(field) changed in a dictionary")
        }
        var twice = original
        twice.size = 6
        twice.size = 5
        #expect(twice == original)
    }

    @Test func theLogIsReadRecordByRecordAndAGapStopsTheReaderWhereItIs() async throws {
        let share = try await CloudShare.create(in: MemoryStore())
        for index in 0..<5 {
            _ = try await share.log.append(Commit(author: "w", authorName: "w", operations: [.upsert("f\(index)", entry(1))]))
        }
        var read: [UInt64] = []
        for try await commit in share.log.reading(after: 1) { read.append(commit.sequence) }
        #expect(read == [2, 3, 4, 5])

        try await share.store.delete(CommitLog.key(4))
        read = []
        do {
            for try await commit in share.log.reading(after: 0) { read.append(commit.sequence) }
            Issue.record("a log with a gap was read to its end")
        } catch let error as ShareError {
            #expect(error.code == .badLog && error.object == CommitLog.key(4), "\(error)")
        }
        #expect(read == [1, 2, 3], "the records before the gap are handed over, one at a time")
        await #expect(throws: ShareError.self) { try await share.log.records(after: 0) }
    }

    @Test func aDamagedBinaryRecordIsAnErrorNamingIt() async throws {
        let share = try await CloudShare.create(in: MemoryStore())
        let sequence = try await share.log.append(fullCommit())
        let key = CommitLog.key(sequence)
        let good = try await share.store.get(key)
        var flipped = good
        flipped[good.count / 2] ^= 0x40
        for (damage, bytes) in [("checksum mismatch", flipped), ("too short", Array(good.prefix(6)))] {
            try await share.store.delete(key)
            try await share.store.put(key, bytes: bytes)
            do {
                _ = try await share.log.read(sequence)
                Issue.record("a damaged record (\(damage)) was read")
            } catch let error as ShareError {
                #expect(error.code == .badLog)
                #expect(error.description.contains(key) && error.description.contains(damage), "\(error)")
            }
        }
        // Well-formed framing around nonsense: a count far larger than the record, with a valid checksum.
        let emptyString: [UInt8] = [0, 0, 0, 0]
        var writer = Array("TGC1".utf8) + emptyString + withUnsafeBytes(of: sequence.littleEndian, Array.init)
            + emptyString + emptyString + [UInt8](repeating: 0, count: 8)      // author, name, time
            + [0, 0, 0, 0] + [0xFF, 0xFF, 0xFF, 0x7F]                             // no packs, 2^31 - 1 operations
        writer += withUnsafeBytes(of: XXH3.hash64(writer).littleEndian, Array.init)
        try await share.store.delete(key)
        try await share.store.put(key, bytes: writer)
        await #expect(throws: ShareError.self) { _ = try await share.log.read(sequence) }
    }

    @Test func namespaceAppliesRenamesAndDeletesOfTrees() async throws {
        var namespace = Namespace()
        var commit = Commit(author: "a", authorName: "a", operations: [
            .upsert("dir", NamespaceEntry(kind: .directory, fileID: "d", size: 0, mode: 0o755, mtime: 0, uid: 0, gid: 0)),
            .upsert("dir/a", entry(3)), .upsert("dir/b", entry(4)), .upsert("dirx", entry(5)),
        ])
        commit.sequence = 1
        namespace.apply(commit)
        namespace.apply(.rename(from: "dir", to: "moved"), sequence: 2)
        #expect(Set(namespace.entries.keys) == ["moved", "moved/a", "moved/b", "dirx"])
        #expect(namespace.entries["moved/a"]?.version == 1)
        namespace.apply(.delete("moved"), sequence: 3)
        #expect(Set(namespace.entries.keys) == ["dirx"])
        #expect(namespace.logicalBytes == 5)
    }

    @Test func aCommitOfManyFolderDeletesKeepsItsOrder() async throws {
        let folder = NamespaceEntry(kind: .directory, fileID: "d", size: 0, mode: 0o755, mtime: 0, uid: 0, gid: 0)
        var namespace = Namespace()
        var made = Commit(author: "a", authorName: "a", operations: ["p", "q", "r", "pq"].flatMap { name in
            [.upsert(name, folder), .upsert("\(name)/sub", folder), .upsert("\(name)/sub/f", entry(1)), .upsert("\(name)/g", entry(2))]
        })
        made.sequence = 1
        namespace.apply(made)
        // Deletes of folders (and of an item inside one already deleted), a folder made again inside a
        // deleted one, then more deletes: the result is that of applying them one by one.
        var commit = Commit(author: "a", authorName: "a", operations: [
            .delete("p"), .delete("q/sub"), .delete("p/g"), .upsert("q/sub", folder), .upsert("q/sub/new", entry(3)),
            .delete("r"), .delete("q/g"),
        ])
        commit.sequence = 2
        var oneByOne = namespace
        for operation in commit.operations { oneByOne.apply(operation, sequence: 2) }
        namespace.apply(commit)
        #expect(Set(namespace.entries.keys) == ["q", "q/sub", "q/sub/new", "pq", "pq/sub", "pq/sub/f", "pq/g"])
        #expect(Set(namespace.entries.keys) == Set(oneByOne.entries.keys))
        #expect(namespace.sequence == 2)
    }

    /// Renames, deletes and upserts of random paths (files beneath files too, as concurrent servers can
    /// leave them), in commits of one to twenty operations, applied to a namespace and to a model that
    /// applies one operation at a time and moves everything at or beneath a renamed path: the two agree
    /// after every commit, also across a snapshot's encoding and decoding.
    @Test func commitsOfRenamesMoveExactlyWhatLiesAtAndBeneathTheirPaths() throws {
        var generator = SystemRandomNumberGenerator()
        let seed = UInt64.random(in: 0...UInt64.max, using: &generator)
        var random = SplitMix64(state: seed)
        let names = ["a", "b", "ab", "c"]
        func path() -> String {
            (0..<Int.random(in: 1...3, using: &random)).map { _ in names[Int.random(in: 0..<names.count, using: &random)] }.joined(separator: "/")
        }
        var namespace = Namespace()
        var model: [String: (id: String, folder: Bool)] = [:]
        func matches() -> Bool { namespace.entries.mapValues(\.fileID) == model.mapValues(\.id) }
        for round in 0..<1_500 {
            var operations: [NamespaceOperation] = []
            for _ in 0..<Int.random(in: 1...20, using: &random) {
                switch Int.random(in: 0..<10, using: &random) {
                case 0..<4:
                    var item = entry(1)
                    if Bool.random(using: &random) { item.kind = .directory }
                    operations.append(.upsert(path(), item))
                    model[operations.last!.path] = (item.fileID, item.kind == .directory)
                case 4..<5:
                    operations.append(.delete(path()))
                    let target = operations.last!.path
                    // Only a folder's delete takes what lies beneath it.
                    if model[target]?.folder == true { model = model.filter { !$0.key.hasPrefix(target + "/") } }
                    model[target] = nil
                default:
                    // Most renames move something that exists.
                    let from = Bool.random(using: &random) ? (model.keys.randomElement(using: &random) ?? path()) : path()
                    let to = path()
                    operations.append(NamespaceOperation(op: .rename, path: to, from: from, entry: nil))
                    if from != to {
                        let moved = model.filter { $0.key == from || $0.key.hasPrefix(from + "/") }
                        for key in moved.keys { model[key] = nil }
                        for (key, value) in moved { model[to + key.dropFirst(from.count)] = value }
                    }
                }
            }
            var commit = Commit(author: "a", authorName: "a", operations: operations)
            commit.sequence = UInt64(round + 1)
            namespace.apply(commit)
            #expect(matches(), "seed \(seed), round \(round): \(operations.map { "\($0.op) \($0.from ?? "") → \($0.path)" })")
            if !matches() { return }
            if round % 300 == 299 {
                namespace = try JSONDecoder().decode(Namespace.self, from: try JSONEncoder().encode(namespace))
            }
        }
    }

    @Test func snapshotsShortenReplay() async throws {
        let share = try await CloudShare.create(in: MemoryStore())
        for index in 1...3 {
            #expect(try await share.log.tryAppend(Commit(author: "a", authorName: "a", operations: [.upsert("f\(index)", entry(Int64(index)))]), at: UInt64(index)))
        }
        try await share.writeSnapshot(try await share.namespace())
        #expect(try await share.log.tryAppend(Commit(author: "a", authorName: "a", operations: [.delete("f1")]), at: 4))
        let namespace = try await share.namespace()
        #expect(namespace.sequence == 4)
        #expect(Set(namespace.entries.keys) == ["f2", "f3"])
        #expect(try await share.latestSnapshot()?.sequence == 3)
    }
}

