import Backends
import Foundation
import Glibc
import Testing

/// The share's chunk index is loaded when a pass needs it (content to store or to read), not when the
/// share is opened: a one-shot `tiergate sync` with nothing to do, or `status`, reads no index segment.
/// Counted with the real `tiergate` against moto, which counts the requests each share receives.
@Suite struct OnDemandIndexTests {
    @Test func aPassWithNothingToStoreOrReadSendsNoIndexRequest() async throws {
        let scratch = Scratch()
        let url = try await RemoteServers.freshS3URL()
        for index in 0..<40 {
            scratch.write("a/d\(index % 4)/f\(index)", randomBytes(3000 + index * 91, seed: UInt64(index) + 5))
        }
        let environment = ["AWS_ACCESS_KEY_ID": String(cString: getenv("AWS_ACCESS_KEY_ID")),
                           "AWS_SECRET_ACCESS_KEY": String(cString: getenv("AWS_SECRET_ACCESS_KEY"))]
        func tiergate(_ arguments: [String]) throws {
            let run = try TiergateProcess.run(arguments, logs: scratch.path, environment: environment)
            #expect(run.status == 0, "tiergate \(arguments.joined(separator: " ")): \(run.output)")
        }
        func indexGets() async throws -> Int { try await RemoteServers.s3RequestCounts(url)["GET index"] ?? 0 }
        let (stateA, stateB) = (scratch.path + "/state-a", scratch.path + "/state-b")
        try FileManager.default.createDirectory(atPath: scratch.path + "/b", withIntermediateDirectories: true)
        try tiergate(["share", "create", url])
        try tiergate(["endpoint", "add", scratch.path + "/a", "--share", url, "--state-dir", stateA])
        try tiergate(["sync", "--state-dir", stateA])
        try tiergate(["endpoint", "add", scratch.path + "/b", "--share", url, "--state-dir", stateB])
        try tiergate(["sync", "--state-dir", stateB])
        #expect(scratch.read("b/d1/f5") == scratch.read("a/d1/f5"))

        let before = try await indexGets()
        try tiergate(["sync", "--state-dir", stateA])
        try tiergate(["sync", "--state-dir", stateB])
        try tiergate(["status", "--state-dir", stateA])
        #expect(try await indexGets() == before, "passes with no change and status read no index segment")

        // An edit is stored against the index (loaded then) and reaches the other endpoint whole.
        scratch.write("a/d2/f6", randomBytes(70_000, seed: 77))
        try tiergate(["sync", "--state-dir", stateA])
        #expect(try await indexGets() > before, "a pass with content to store loads the index")
        try tiergate(["sync", "--state-dir", stateB])
        #expect(scratch.read("b/d2/f6") == randomBytes(70_000, seed: 77))
    }
}
