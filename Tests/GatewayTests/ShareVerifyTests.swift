import Backends
import CloudShare
import Foundation
import Glibc
import Hashing
import Testing

/// `tiergate share verify` with the real binary: each kind of damage is found and named, `--repair`
/// rebuilds index segments byte for byte, and the exit status says whether problems remain.
@Suite(.serialized) struct ShareVerifyTests {
    /// Damage done to a share's folder between two verifies.
    enum Damage: String, CaseIterable, Sendable {
        case truncatedIndexSegment, missingIndexSegment, corruptPackByte, deletedPack, garbledLogRecord
    }

    /// The problems of a `--json` report: (kind, object, paths needing it).
    static func problems(_ output: String) -> [(kind: String, object: String, paths: Set<String>)] {
        guard let start = output.firstIndex(of: "{"), let end = output.lastIndex(of: "}"),
              let report = try? JSONSerialization.jsonObject(with: Data(output[start...end].utf8)) as? [String: Any],
              let problems = report["problems"] as? [[String: Any]] else { return [] }
        return problems.map { problem in
            let paths = ((problem["needs"] as? [[String: Any]]) ?? []).compactMap { $0["path"] as? String }
            return (problem["kind"] as? String ?? "", problem["object"] as? String ?? "", Set(paths))
        }
    }

    /// Paths of the files at the log head with a chunk in `pack` (only the chunk holding byte `offset` when
    /// given), found from the pack's trailer and the namespace.
    static func files(in pack: Digest32, at offset: UInt64? = nil, share folder: String) async throws -> Set<String> {
        let store = LocalStore(root: folder)
        let entries = try await PackFormat.readTrailer(of: pack, in: store)
        let chunks = Set(entries.filter { entry in offset.map { entry.offset <= $0 && $0 < entry.offset + UInt64(entry.length) } ?? true }.map(\.id))
        let namespace = try await CloudShare.open(store).namespace()
        return Set(namespace.entries.filter { $0.value.chunks.contains { chunks.contains($0.id) } }.map(\.key))
    }

    @Test(arguments: Damage.allCases)
    func verifyFindsTheDamageAndNamesTheObject(_ damage: Damage) async throws {
        let scratch = Scratch()
        let (folder, url, _) = try DamagedIndexSegmentTests.makeShare(scratch)
        let clean = try TiergateProcess.run(["share", "verify", url, "--read-data"], logs: scratch.path)
        #expect(clean.status == 0, "\(clean.output)")
        #expect(clean.output.contains("result: clean"), "\(clean.output)")

        let packHex = try #require(DamagedIndexSegmentTests.segments(folder).first)
        let pack = try #require(Digest32(hex: packHex))
        let packPath = folder + "/" + PackFormat.key(pack), segmentPath = folder + "/" + IndexSegment.key(pack)
        var expectedObject = IndexSegment.key(pack), expectedKind = ""
        var affected: Set<String> = []
        var arguments = ["share", "verify", url, "--json"]
        switch damage {
        case .truncatedIndexSegment:
            #expect(truncate(segmentPath, 10) == 0)
            expectedKind = "damaged index segment"
        case .missingIndexSegment:
            #expect(unlink(segmentPath) == 0)
            expectedKind = "missing index segment"
        case .corruptPackByte:
            var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: packPath)))
            bytes[100] ^= 0xff
            try Data(bytes).write(to: URL(fileURLWithPath: packPath))
            // The trailer still matches: only reading the data finds it.
            let structural = try TiergateProcess.run(["share", "verify", url], logs: scratch.path)
            #expect(structural.status == 0, "\(structural.output)")
            arguments.append("--read-data")
            expectedObject = PackFormat.key(pack)
            expectedKind = "damaged pack"
            affected = try await Self.files(in: pack, at: 100, share: folder)
        case .deletedPack:
            affected = try await Self.files(in: pack, share: folder)
            #expect(unlink(packPath) == 0)
            expectedObject = PackFormat.key(pack)
            expectedKind = "missing pack"
        case .garbledLogRecord:
            let record = folder + "/" + CommitLog.key(1)
            var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: record)))
            bytes[bytes.count / 2] ^= 0x5a
            try Data(bytes).write(to: URL(fileURLWithPath: record))
            expectedObject = CommitLog.key(1)
            expectedKind = "unreadable log record"
        }

        let run = try TiergateProcess.run(arguments, logs: scratch.path)
        #expect(run.status == 1, "\(run.output)")
        let problems = Self.problems(run.output)
        #expect(problems.contains { $0.kind == expectedKind && $0.object == expectedObject }, "\(run.output)")
        if damage == .corruptPackByte || damage == .deletedPack {
            #expect(!affected.isEmpty, "the damaged pack holds no file's chunk; the test proves nothing")
            let named = damage == .deletedPack
                ? problems.filter { $0.kind == "lost chunk" }.reduce(into: Set<String>()) { $0.formUnion($1.paths) }
                : problems.first { $0.object == expectedObject }?.paths ?? []
            #expect(named == affected, "the files needing the pack: \(run.output)")
        }
        let human = try TiergateProcess.run(arguments.filter { $0 != "--json" }, logs: scratch.path)
        #expect(human.status == 1)
        #expect(human.output.contains("problem: \(expectedObject): \(expectedKind)"), "\(human.output)")
        for path in affected { #expect(human.output.contains(path), "\(path) is not named: \(human.output)") }
        #expect(human.output.contains("problems remain"), "\(human.output)")
    }

    @Test func repairRebuildsATruncatedAndAMissingIndexSegmentByteForByte() async throws {
        let scratch = Scratch()
        let (folder, url, _) = try DamagedIndexSegmentTests.makeShare(scratch)
        let segments = DamagedIndexSegmentTests.segments(folder)
        #expect(segments.count >= 2)
        let truncated = folder + "/index/" + segments[0], missing = folder + "/index/" + segments[1]
        let originals = [truncated, missing].map { FileManager.default.contents(atPath: $0) }
        #expect(truncate(truncated, 10) == 0)
        #expect(unlink(missing) == 0)

        let repair = try TiergateProcess.run(["share", "verify", url, "--repair"], logs: scratch.path)
        #expect(repair.status == 0, "\(repair.output)")
        #expect(repair.output.contains("repaired: index/\(segments[0]): damaged index segment"), "\(repair.output)")
        #expect(repair.output.contains("repaired: index/\(segments[1]): missing index segment"), "\(repair.output)")
        #expect(FileManager.default.contents(atPath: truncated) == originals[0], "the rebuilt segment differs from the original")
        #expect(FileManager.default.contents(atPath: missing) == originals[1], "the rebuilt segment differs from the original")

        let again = try TiergateProcess.run(["share", "verify", url, "--read-data=50", "--seed", "3"], logs: scratch.path)
        #expect(again.status == 0, "\(again.output)")
        #expect(again.output.contains("result: clean"), "\(again.output)")
        #expect(!again.output.contains("problem:"), "\(again.output)")
        #expect(again.output.contains("(50%, seed 3)"), "\(again.output)")
    }
}
