@testable import Backends
import Foundation
import ObjectStoreServers
import Testing

/// The S3 store against real object stores, not only moto: SeaweedFS and Ceph's RADOS Gateway, each
/// started on loopback by the test setup (see ``RealS3Server``). Each test gets a bucket of its own.
@Suite struct RealS3StoreTests {
    /// A store for a fresh bucket of `server` (or `prefix` in it), with the user's keys from the
    /// credentials file its URL names, as `tiergate` opens it.
    static func store(on server: RealS3Server, prefix: String = "", configuration: S3Store.Configuration = .init()) async throws -> S3Store {
        let url = try await server.running().freshBucket(prefix: prefix)
        return try S3Store(url: url, environment: [:], configuration: configuration)
    }

    @Test(arguments: RealS3Server.allCases)
    func passesTheConformanceSuite(on server: RealS3Server) async throws {
        let store = try await Self.store(on: server, prefix: "share/nested")
        try await StoreConformance.run(on: store)
        #expect(try await store.incompleteUploads().isEmpty)
    }

    /// The same suite at the bucket's root, with 5 MiB parts so that its 12 MiB object is a multipart
    /// upload (three parts, the last one short).
    @Test(arguments: RealS3Server.allCases)
    func passesTheConformanceSuiteAtTheBucketRootWithMultipartUploads(on server: RealS3Server) async throws {
        var configuration = S3Store.Configuration()
        configuration.multipartThreshold = 5 << 20
        configuration.partSize = 5 << 20
        let store = try await Self.store(on: server, configuration: configuration)
        try await StoreConformance.run(on: store)
        #expect(try await store.incompleteUploads().isEmpty)
        #expect(store.client.requestCount > 0)
    }

    /// An empty object (an empty file's pack could be one) and ranges at or past an object's end read as
    /// no bytes; RGW and SeaweedFS answer 416 for them, where S3 sends the empty object.
    @Test(arguments: RealS3Server.allCases)
    func rangesAtOrPastTheEndReadAsNoBytes(on server: RealS3Server) async throws {
        let store = try await Self.store(on: server, prefix: "ranges")
        try await store.put("empty", bytes: [])
        #expect(try await store.get("empty", range: 0..<10) == [])
        #expect(try await store.get("empty") == [])
        try await store.put("r", bytes: [1, 2, 3])
        #expect(try await store.get("r", range: 3..<10) == [])
        #expect(try await store.get("r", range: 50..<60) == [])
        #expect(try await store.get("r", range: 2..<60) == [3])
        await StoreConformance.expectCode(.notFound) { _ = try await store.get("missing", range: 0..<10) }
    }

    /// Listings carry modification times (the garbage collector's grace period reads them) and any answer
    /// carries the server's clock (`tiergate check` compares it with the local one).
    @Test(arguments: RealS3Server.allCases)
    func listingsAndAnswersCarryTheServersTimes(on server: RealS3Server) async throws {
        let store = try await Self.store(on: server, prefix: "times")
        try await store.put("packs/a", bytes: [1])
        let listed = try await store.listAll(prefix: "packs/")
        #expect(listed.map(\.key) == ["packs/a"])
        let modified = try #require(listed.first?.modified, "the listing has no LastModified")
        #expect(abs(modified.timeIntervalSinceNow) < 120, "LastModified \(modified) is not now")
        let clock = try #require(try await store.serverTime(), "the answer has no Date header")
        #expect(abs(clock.timeIntervalSinceNow) < 120)
    }

    /// An upload a writer initiated and never finished (killed mid-upload) is aborted by a sweep once the
    /// store lists it as initiated longer ago than the sweep's age, never before. (moto lists a fixed
    /// time of 2010 for every upload, so only real stores can show this.)
    @Test(arguments: RealS3Server.allCases)
    func anAbandonedMultipartUploadIsAbortedOnceOldEnough(on server: RealS3Server) async throws {
        let store = try await Self.store(on: server, prefix: "abandoned")
        try await store.put("kept", bytes: [1])
        let initiate = try await store.send("put", "pack", method: "POST", objectKey: store.location.objectKey("pack"), query: [("uploads", "")])
        #expect(initiate.status == 200)
        #expect(try await store.incompleteUploads().map(\.key) == ["pack"])
        #expect(try await store.removeAbandonedWrites(olderThan: 3600) == 0, "an upload in flight is kept")
        #expect(try await store.incompleteUploads().count == 1)
        try await Task.sleep(for: .seconds(2.1))
        #expect(try await store.removeAbandonedWrites(olderThan: 1) == 1)
        #expect(try await store.incompleteUploads().isEmpty)
        #expect(try await store.get("kept") == [1])
    }

    /// A multipart upload cancelled after its first part is aborted: no upload is left behind and the
    /// object does not appear.
    @Test(arguments: RealS3Server.allCases)
    func aCancelledMultipartUploadIsAborted(on server: RealS3Server) async throws {
        var configuration = S3Store.Configuration()
        configuration.multipartThreshold = 5 << 20
        configuration.partSize = 5 << 20
        configuration.maxConcurrentParts = 1
        let store = try await Self.store(on: server, prefix: "cancel", configuration: configuration)
        let upload = Task { try await store.put("pack", bytes: pseudoRandomBytes(25 << 20, seed: 2)) }
        while store.client.requestCount < 2 { try await Task.sleep(for: .milliseconds(5)) }
        upload.cancel()
        _ = await upload.result
        #expect(try await store.incompleteUploads().isEmpty, "the cancelled upload was not aborted")
        await StoreConformance.expectCode(.notFound) { _ = try await store.head("pack") }
    }

    /// The servers really check signatures: a wrong secret and an unknown key are refused, once, naming
    /// the store (so a conformance pass is not a pass of an open server).
    @Test(arguments: RealS3Server.allCases)
    func aWrongSecretOrAnUnknownKeyIsUnauthorized(on server: RealS3Server) async throws {
        let running = try await server.running()
        let url = try await running.freshBucket(prefix: "p")
        let location = try S3Location(url: url, environment: [:])
        let wrong = try S3Store(location: location, credentials: S3Credentials(accessKeyId: running.credentials.accessKeyId,
                                                                                 secretAccessKey: "not-the-secret-0123456789"))
        do {
            try await wrong.put("a", bytes: [1])
            Issue.record("\(running.version) accepted a request signed with a wrong secret: signature checking is off")
        } catch let error as StoreError {
            #expect(error.code == .unauthorized, "\(error)")
            #expect("\(error)".contains(wrong.displayName) && !"\(error)".contains("not-the-secret"), "\(error)")
        }
        #expect(wrong.client.requestCount == 1, "an authorization failure must not be retried")
        let unknown = try S3Store(location: location, credentials: S3Credentials(accessKeyId: "TIERGATEUNKNOWNKEY00", secretAccessKey: "x"))
        await StoreConformance.expectCode(.unauthorized) { _ = try await unknown.get("a") }
    }

    @Test(arguments: RealS3Server.allCases)
    func aMissingBucketIsAPermanentErrorNamingIt(on server: RealS3Server) async throws {
        let running = try await server.running()
        let store = try S3Store(url: "s3://no-such-bucket-here/p?endpoint=\(running.endpoint)&region=\(running.region)&credentials=\(running.credentialsFile)",
                                environment: [:])
        do {
            _ = try await store.get("a")
            Issue.record("\(running.version) did not report a missing bucket")
        } catch let error as StoreError {
            #expect(error.code == .permanent && "\(error)".contains("no-such-bucket-here"), "\(error)")
        }
    }
}
