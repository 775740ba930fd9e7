import Backends
import CloudShare
import Foundation
import Gateway
import Glibc
import Hashing
import Testing

/// Real `tiergate share gc` processes against a `file://` share: orphans left by killed writers go,
/// every version of every file still reads, a killed collector's work is finished by the next run, and
/// a `put` reusing a chunk of a pack being collected never commits a chunk that is gone.
@Suite(.serialized) struct ShareGCProcessTests {
    /// Every chunk of every upsert of every commit reads back (each file version equal to one of the
    /// contents written to its path when given), and `share verify --read-data` exits 0.
    static func everyVersionReads(_ url: String, contents: [String: Set<[UInt8]>] = [:]) async throws -> [String] {
        var problems: [String] = []
        let share = try await CloudShare.open(try StoreLocator.open(url))
        for commit in try await share.log.records(after: 0) {
            for operation in commit.operations where operation.entry?.kind == .file {
                var bytes: [UInt8] = []
                do {
                    for chunk in operation.entry?.chunks ?? [] { bytes += try await share.readChunk(chunk.id) }
                } catch {
                    problems.append("\(operation.path)@\(commit.sequence): \(error)")
                    continue
                }
                if let expected = contents[operation.path], !expected.contains(bytes) {
                    problems.append("\(operation.path)@\(commit.sequence): reads bytes never written there")
                }
            }
        }
        let verify = try TiergateProcess.run(["share", "verify", url, "--read-data"], logs: NSTemporaryDirectory())
        if verify.status != 0 { problems.append("share verify --read-data: \(verify.output.suffix(1500))") }
        return problems
    }

    /// Uploads `chunks` in one pack without committing, as a writer killed before its commit leaves them.
    static func orphanPack(_ url: String, _ chunks: [[UInt8]]) async throws {
        let share = try await CloudShare.open(try StoreLocator.open(url))
        let uploader = share.makeUploader()
        for chunk in chunks { try await uploader.add(id: SHA256.hash(chunk), bytes: chunk) }
        try await uploader.finish()
    }

    static func packCount(_ root: String) -> Int {
        (FileManager.default.enumerator(atPath: root + "/packs")?.allObjects as? [String] ?? []).filter { $0.count > 3 }.count
    }

    @Test func packsOfKilledPutsGoAfterGraceAndSafetyIntervalAndEveryVersionStillReads() async throws {
        let scratch = Scratch()
        let url = "file://" + scratch.path + "/share"
        #expect(try runTiergate(["share", "create", url, "--pack-size", "1048576"]) == 0)
        var contents: [String: Set<[UInt8]>] = [:]
        for version in 0..<2 {
            for file in 0..<4 {
                let bytes = randomBytes(50_000 + file * 7_000 + version, seed: UInt64(version * 100 + file * 2 + 1))
                scratch.write("src/f\(file).bin", bytes)
                contents["f\(file).bin", default: []].insert(bytes)
            }
            #expect(try runTiergate(["put", url, scratch.path + "/src"]) == 0)
        }
        let committedPacks = Self.packCount(scratch.path + "/share")
        // A put killed while it uploads: 6 MB at 1 MB/s in 1 MiB packs leaves packs no commit names.
        scratch.write("big/big.bin", randomBytes(6_000_000, seed: 999))
        #expect(try runTiergate(["put", url, scratch.path + "/big", "--bwlimit", "1M"], killAfter: 3) == nil)
        let orphans = Self.packCount(scratch.path + "/share") - committedPacks
        try #require(orphans > 0, "the killed put left no pack behind")

        let first = try TiergateProcess.run(["share", "gc", url, "--grace", "0s", "--safety-interval", "2s"], logs: scratch.path)
        #expect(first.status == 0, "\(first.output)")
        #expect(first.output.contains("marked pending:    \(orphans) pack"), "\(first.output)")
        #expect(first.output.contains("deleted:           0 packs"), "\(first.output)")
        #expect(Self.packCount(scratch.path + "/share") == committedPacks + orphans, "nothing is deleted before the safety interval")
        try await Task.sleep(for: .seconds(2.2))
        let second = try TiergateProcess.run(["share", "gc", url, "--grace", "0s", "--safety-interval", "2s"], logs: scratch.path)
        #expect(second.status == 0, "\(second.output)")
        #expect(second.output.contains("deleted:           \(orphans) pack"), "\(second.output)")
        #expect(Self.packCount(scratch.path + "/share") == committedPacks, "the orphans are gone, the referenced packs stay")

        let problems = try await Self.everyVersionReads(url, contents: contents)
        #expect(problems.isEmpty, "\(problems)")
        let restore = scratch.path + "/restore"
        #expect(try runTiergate(["get", url, restore]) == 0)
        for file in 0..<4 {
            let same = scratch.read("restore/f\(file).bin") == scratch.read("src/f\(file).bin")
            #expect(same, "f\(file).bin differs after the collection")
        }
    }

    /// A `file://` share in `scratch` holding one file, put with the CLI; its URL.
    static func share(in scratch: Scratch, holding name: String, _ bytes: [UInt8]) throws -> String {
        let url = "file://" + scratch.path + "/share"
        #expect(try runTiergate(["share", "create", url]) == 0)
        scratch.write("src/" + name, bytes)
        #expect(try runTiergate(["put", url, scratch.path + "/src"]) == 0)
        return url
    }

    @Test func shareInfoReportsReferencedBytesAndGarbage() async throws {
        let scratch = Scratch()
        let url = try Self.share(in: scratch, holding: "kept.bin", randomBytes(50_000, seed: 3))
        let committed = Self.packCount(scratch.path + "/share")
        for index in 0..<3 { try await Self.orphanPack(url, [randomBytes(4_000, seed: UInt64(100 + index))]) }
        let orphans = Self.packCount(scratch.path + "/share") - committed
        try #require(orphans > 0)
        let result = try TiergateProcess.run(["share", "info", url, "--json"], logs: scratch.path)
        #expect(result.status == 0, "\(result.output)")
        let object = try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any]
        let garbage = try #require(object?["garbage"] as? [String: Any], "\(result.output)")
        // Fresh orphans are younger than the grace period: garbage, but not reclaimable yet.
        #expect(garbage["youngPacks"] as? Int == orphans && garbage["reclaimablePacks"] as? Int == 0, "\(garbage), \(orphans) orphan packs")
        let stored = object?["storedBytes"] as? Int ?? 0, referenced = garbage["referencedBytes"] as? Int ?? 0
        #expect(referenced >= 50_000 && referenced < stored, "referenced \(referenced) of \(stored)")
        #expect(try TiergateProcess.run(["share", "info", url], logs: scratch.path).output.contains("in \(orphans) younger than a day"))
    }

    /// Temporary files of writers stopped mid-write (a file system without unnamed files, such as NFS, has
    /// them): `share gc` removes those older than its grace period, keeps younger ones (a write may be in
    /// flight), and says how many it removed.
    @Test func theCollectorRemovesTemporaryFilesOlderThanTheGracePeriod() async throws {
        let scratch = Scratch()
        let url = try Self.share(in: scratch, holding: "f.bin", randomBytes(40_000, seed: 5))
        let packFolder = try #require(try FileManager.default.contentsOfDirectory(atPath: scratch.path + "/share/packs").first)
        let old = scratch.path + "/share/packs/\(packFolder)/.tg-tmp-4242-1", young = scratch.path + "/share/log/.tg-tmp-4242-2"
        scratch.write("share/packs/\(packFolder)/.tg-tmp-4242-1", randomBytes(1000, seed: 6))
        scratch.write("share/log/.tg-tmp-4242-2", randomBytes(10, seed: 7))
        var times = [timespec(tv_sec: time(nil) - 7200, tv_nsec: 0), timespec(tv_sec: time(nil) - 7200, tv_nsec: 0)]
        #expect(utimensat(AT_FDCWD, old, &times, 0) == 0)
        let result = try TiergateProcess.run(["share", "gc", url, "--grace", "1h"], logs: scratch.path)
        #expect(result.status == 0, "\(result.output)")
        #expect(result.output.contains("abandoned writes:  1 removed"), "\(result.output)")
        #expect(!FileManager.default.fileExists(atPath: old), "the two-hour-old temporary file is gone")
        #expect(FileManager.default.fileExists(atPath: young), "the young one stays: its write may be in flight")
        let problems = try await Self.everyVersionReads(url, contents: ["f.bin": [randomBytes(40_000, seed: 5)]])
        #expect(problems.isEmpty, "\(problems)")
    }

    /// The sweep of abandoned writes stays inside the share: a symlink in the share to a folder outside
    /// (a careless operator, a hostile neighbour) is not followed, and an old temporary file out there,
    /// or the symlink's target named like one, is left alone.
    @Test func theCollectorsSweepNeverFollowsASymlinkOutOfTheShare() async throws {
        let scratch = Scratch()
        let url = try Self.share(in: scratch, holding: "f.bin", randomBytes(40_000, seed: 8))
        scratch.write("outside/.tg-tmp-1-1", randomBytes(100, seed: 9))
        scratch.write("outside/keep", randomBytes(100, seed: 10))
        let outside = scratch.path + "/outside"
        var times = [timespec(tv_sec: time(nil) - 7200, tv_nsec: 0), timespec(tv_sec: time(nil) - 7200, tv_nsec: 0)]
        #expect(utimensat(AT_FDCWD, outside + "/.tg-tmp-1-1", &times, 0) == 0)
        #expect(symlink(outside, scratch.path + "/share/packs/elsewhere") == 0)
        #expect(symlink(outside + "/keep", scratch.path + "/share/log/.tg-tmp-2-2") == 0)
        let result = try TiergateProcess.run(["share", "gc", url, "--grace", "1h"], logs: scratch.path)
        #expect(result.status == 0, "\(result.output)")
        #expect(FileManager.default.fileExists(atPath: outside + "/.tg-tmp-1-1"), "a file outside the share was removed")
        #expect(FileManager.default.fileExists(atPath: outside + "/keep"), "a symlink's target outside the share was removed")
        let problems = try await Self.everyVersionReads(url, contents: ["f.bin": [randomBytes(40_000, seed: 8)]])
        #expect(problems.isEmpty, "\(problems)")
    }

    @Test func aCollectorKilledAnywhereIsFinishedByTheNextRunAndHoldsOffOthersUntilItsLeaseExpires() async throws {
        let scratch = Scratch()
        let url = "file://" + scratch.path + "/share"
        #expect(try runTiergate(["share", "create", url, "--pack-size", "1048576"]) == 0)
        var contents: [String: Set<[UInt8]>] = [:]
        for file in 0..<3 {
            let bytes = randomBytes(40_000 + file, seed: UInt64(file * 2 + 1))
            scratch.write("src/f\(file).bin", bytes)
            contents["f\(file).bin"] = [bytes]
        }
        #expect(try runTiergate(["put", url, scratch.path + "/src"]) == 0)
        let committedPacks = Self.packCount(scratch.path + "/share")
        var random = SeededGenerator(state: 7)
        var refused = 0
        for round in 0..<6 {
            // New orphans every round, so that kills land in marking, recording and deleting alike.
            for index in 0..<40 { try await Self.orphanPack(url, [randomBytes(3_000, seed: UInt64(round * 1000 + index * 2 + 11))]) }
            let arguments = ["share", "gc", url, "--grace", "0s", "--safety-interval", "1s", "--lease", "2s"]
            let collector = try TiergateProcess(arguments, logs: scratch.path)
            // Killed once it holds its lease (however slowly the process started), at a random point after.
            let leases = scratch.path + "/share/gc/lease"
            let deadline = Date().addingTimeInterval(20)
            while collector.process.isRunning && Date() < deadline
                && ((try? FileManager.default.contentsOfDirectory(atPath: leases)) ?? []).isEmpty {
                usleep(200)
            }
            // The lease is held for 10–30 ms here (marking, then recording and deleting): the kill comes
            // within its first 12 ms.
            usleep(UInt32.random(in: 0...12_000, using: &random))
            collector.send(SIGKILL)
            _ = collector.exitStatus()
            let problems = try await Self.everyVersionReads(url, contents: contents)
            #expect(problems.isEmpty, "after the kill in round \(round): \(problems)")
            // A killed collector may still hold the lease: a second one is refused until it expires.
            let next = try TiergateProcess.run(arguments, logs: scratch.path)
            if next.status == 1 {
                #expect(next.output.contains("another garbage collector is running"), "\(next.output)")
                refused += 1
            } else {
                #expect(next.status == 0, "\(next.output)")
            }
            try await Task.sleep(for: .seconds(2.1))
        }
        #expect(refused > 0, "no kill left a lease behind: the kills came too late to test the lease")
        // Two further runs, a safety interval apart, finish everything the killed runs left.
        let arguments = ["share", "gc", url, "--grace", "0s", "--safety-interval", "1s", "--lease", "2s"]
        #expect(try TiergateProcess.run(arguments, logs: scratch.path).status == 0)
        try await Task.sleep(for: .seconds(1.1))
        let last = try TiergateProcess.run(arguments, logs: scratch.path)
        #expect(last.status == 0, "\(last.output)")
        #expect(Self.packCount(scratch.path + "/share") == committedPacks, "\(last.output)")
        let pending = (try? FileManager.default.contentsOfDirectory(atPath: scratch.path + "/share/gc/pending")) ?? []
        #expect(pending.isEmpty, "pending records left: \(pending)")
        let problems = try await Self.everyVersionReads(url, contents: contents)
        #expect(problems.isEmpty, "\(problems)")
    }

    @Test func aPutReusingAChunkOfAPackBeingCollectedNeverCommitsAMissingChunk() async throws {
        let scratch = Scratch()
        let url = "file://" + scratch.path + "/share"
        #expect(try runTiergate(["share", "create", url, "--pack-size", "1048576"]) == 0)
        // X is smaller than the smallest chunk: one chunk, its SHA-256 the file's. An orphan pack holds it.
        let x = randomBytes(100_000, seed: 77)
        try await Self.orphanPack(url, [x])
        // The orphan ages past the grace period; the put's own packs, uploaded while it runs, do not.
        try await Task.sleep(for: .seconds(3.5))
        scratch.write("src/x.bin", x)
        scratch.write("src/y/big.bin", randomBytes(5_000_000, seed: 79))
        // The put loads the index (X is in the orphan pack), reuses X, and uploads big.bin slowly; meanwhile
        // the collector marks the orphan pack, and after the safety interval deletes it.
        let put = try TiergateProcess(["put", url, scratch.path + "/src", "--bwlimit", "1M"], logs: scratch.path)
        usleep(800_000)
        let gc = ["share", "gc", url, "--grace", "3s", "--safety-interval", "1s"]
        let mark = try TiergateProcess.run(gc, logs: scratch.path)
        #expect(mark.output.contains("marked pending:    1 pack"), "\(mark.output)")
        try await Task.sleep(for: .seconds(1.2))
        let sweep = try TiergateProcess.run(gc, logs: scratch.path)
        #expect(sweep.output.contains("deleted:           1 pack"), "the orphan was not deleted while the put ran: \(sweep.output)")
        #expect(put.process.isRunning, "the put finished before the collector deleted the orphan: the race was not run")
        let status = put.exitStatus(timeout: 120)
        if status != 0 {
            // Allowed: nothing committed, with a clear error; a rerun stores X again.
            #expect(put.errorOutput.contains("garbage collector"), "\(put.errorOutput)")
            #expect(try runTiergate(["put", url, scratch.path + "/src"]) == 0)
        }
        let problems = try await Self.everyVersionReads(url, contents: ["x.bin": [x]])
        #expect(problems.isEmpty, "\(problems)")
        #expect(try runTiergate(["get", url, scratch.path + "/restore"]) == 0)
        let same = scratch.read("restore/x.bin") == x
        #expect(same, "x.bin differs after the collection")
        // Later runs keep what the commit needs.
        for _ in 0..<2 {
            #expect(try TiergateProcess.run(gc, logs: scratch.path).status == 0)
            try await Task.sleep(for: .seconds(1.1))
        }
        #expect(try await Self.everyVersionReads(url, contents: ["x.bin": [x]]).isEmpty)
    }
}
