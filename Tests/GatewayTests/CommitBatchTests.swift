import CloudShare
import Foundation
@testable import Gateway
import Testing

/// A large upload is committed in bounded records: every record stays within the limit, each batch is
/// in the database before the next, and the other servers apply them all.
@Suite(.serialized) struct CommitBatchTests {
    @Test func aLargeUploadIsCommittedInRecordsOfBoundedSize() async throws {
        let group = try await SyncGroup(servers: 2) { index, root in
            guard index == 0 else { return }
            for file in 0..<25 { try! Data("file \(file)\n".utf8).write(to: URL(fileURLWithPath: root + "/f\(file)")) }
        }
        let engine = try await group.gateways[0].engine(for: group.endpoints[0])
        engine.commitLimit = (operations: 10, chunks: 1_000)
        let report = try await engine.syncOnce()
        #expect(report.uploaded == 25 && report.commits == 3, "\(report.summary)")
        let commits = try await engine.share.log.records(after: 0)
        #expect(commits.map(\.operations.count) == [10, 10, 5], "operations per record")
        #expect(try group.gateways[0].state.cursor(group.endpoints[0].id) == 3)
        // Nothing is committed twice: a second pass finds everything recorded.
        #expect(try await engine.syncOnce().commits == 0)
        try await group.sync(1)
        #expect(group.tree(1) == group.tree(0) && group.tree(1).count == 25)

        // The chunk references bound a record too.
        engine.commitLimit = (operations: 1_000, chunks: 2)
        for file in 0..<5 { group.write(0, "g\(file)", "more \(file)\n") }
        let more = try await engine.syncOnce()
        #expect(more.commits == 3 && more.uploaded == 5, "\(more.summary)")
    }
}
