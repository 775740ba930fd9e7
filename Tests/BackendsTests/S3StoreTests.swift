import Backends
import Foundation
import Testing

/// An S3 store on a fresh prefix of the test bucket, with the IAM user's keys.
func motoStore(credentials: S3Credentials? = nil, url: String? = nil, configuration: S3Store.Configuration = .init()) async throws -> S3Store {
    let moto = try await TestServers.moto()
    return try S3Store(location: S3Location(url: url ?? moto.url(), environment: [:]),
                       credentials: credentials ?? moto.credentials, configuration: configuration)
}

/// Deterministic pseudo-random bytes (a word at a time: debug builds are slow per byte).
func pseudoRandomBytes(_ count: Int, seed: UInt64) -> [UInt8] {
    var state = seed | 1
    var words = [UInt64](repeating: 0, count: (count + 7) / 8)
    for index in words.indices {
        state ^= state << 13; state ^= state >> 7; state ^= state << 17
        words[index] = state
    }
    return words.withUnsafeBytes { Array($0.prefix(count)) }
}

@Suite struct S3StoreTests {
    @Test func passesTheConformanceSuite() async throws {
        let store = try await motoStore()
        try await StoreConformance.run(on: store)
        #expect(try await store.incompleteUploads().isEmpty)
    }

    @Test func passesTheConformanceSuiteWithSessionTokenCredentials() async throws {
        let moto = try await TestServers.moto()
        try await StoreConformance.run(on: try await motoStore(credentials: moto.sessionCredentials))
    }

    @Test func theServerHonoursIfNoneMatch() async throws {
        let store = try await motoStore()
        try await store.putIfAbsent("log/0001", bytes: [1])
        do {
            try await store.putIfAbsent("log/0001", bytes: [2])
            Issue.record("The S3 server ignored 'If-None-Match: *' and overwrote an object: it cannot host a commit log. Upgrade moto (5.x supports conditional writes).")
        } catch let error as StoreError {
            #expect(error.code == .alreadyExists, "\(error)")
        }
        #expect(try await store.get("log/0001") == [1])
    }

    @Test func aWrongSecretFailsOnceClearlyAndNamesTheStore() async throws {
        let moto = try await TestServers.moto()
        let wrong = S3Credentials(accessKeyId: moto.credentials.accessKeyId, secretAccessKey: "not-the-secret-0123456789")
        let store = try await motoStore(credentials: wrong)
        do {
            try await store.put("a", bytes: [1])
            Issue.record("a request signed with a wrong secret was accepted: signature checking is off")
        } catch let error as StoreError {
            #expect(error.code == .unauthorized)
            let text = "\(error)"
            #expect(text.contains(store.displayName))
            #expect(text.contains("SignatureDoesNotMatch"), "\(text)")
            #expect(text.contains("put 'a'"))
            #expect(!text.contains("not-the-secret") && !text.contains(moto.credentials.accessKeyId.isEmpty ? "-" : "Authorization"))
        }
        #expect(store.client.requestCount == 1, "an authorization failure must not be retried")
    }

    @Test func anUnknownAccessKeyIsUnauthorized() async throws {
        let store = try await motoStore(credentials: S3Credentials(accessKeyId: "AKIAUNKNOWNKEY000000", secretAccessKey: "x"))
        await StoreConformance.expectCode(.unauthorized) { _ = try await store.get("a") }
        await StoreConformance.expectCode(.unauthorized) { _ = try await store.head("a") }
        #expect(store.client.requestCount == 2)
    }

    @Test func keysStayUnderTheURLPrefix() async throws {
        let moto = try await TestServers.moto()
        let prefix = "under-" + UUID().uuidString.prefix(8).lowercased() + "/nested"
        let store = try await motoStore(url: moto.url(prefix: prefix))
        try await store.put("x/y", bytes: [1])
        try await store.putIfAbsent("log/1", bytes: [2])
        try await store.put("big", bytes: pseudoRandomBytes(9 << 20, seed: 3))
        let root = try await motoStore(url: "s3://\(moto.bucket)?endpoint=\(moto.endpoint)&region=\(moto.region)")
        let keys = try await root.listAll(prefix: prefix.components(separatedBy: "/")[0]).map(\.key)
        #expect(keys == ["\(prefix)/big", "\(prefix)/log/1", "\(prefix)/x/y"])
        #expect(try await store.listAll(prefix: "").map(\.key) == ["big", "log/1", "x/y"])
    }

    @Test func largeObjectsAreUploadedInPartsAndLeaveNoUploadBehind() async throws {
        var configuration = S3Store.Configuration()
        configuration.multipartThreshold = 5 << 20
        configuration.partSize = 5 << 20
        let store = try await motoStore(configuration: configuration)
        let bytes = pseudoRandomBytes((16 << 20) + 12345, seed: 7)
        try await store.put("packs/ab/pack", bytes: bytes)
        // Initiate, four parts, complete (more only if the busy test server asked for a retry).
        #expect(store.client.requestCount >= 6)
        let moto = try await TestServers.moto()
        let head = try await store.client.execute(signedRequest(store: store, moto: moto, method: "HEAD", key: "packs/ab/pack"))
        #expect(head.headers["ETag"]?.hasSuffix("-4\"") == true, "not a four-part object: ETag \(head.headers["ETag"] ?? "none")")
        #expect(try await store.get("packs/ab/pack") == bytes)
        #expect(try await store.get("packs/ab/pack", range: 5_242_000..<5_243_000) == Array(bytes[5_242_000..<5_243_000]))
        #expect(try await store.incompleteUploads().isEmpty)
    }

    @Test func partsStayWithinS3Limits() {
        let parts = S3Store.partRanges(count: 100 << 30, partSize: 8 << 20)
        #expect(parts.count <= 10_000)
        #expect(parts.dropLast().allSatisfy { $0.count >= 5 << 20 })
        #expect(parts.last?.upperBound == 100 << 30)
        #expect(S3Store.partRanges(count: 12 << 20, partSize: 1 << 20).map(\.count) == [5 << 20, 5 << 20, 2 << 20])
    }

    @Test func aFailedMultipartUploadIsAborted() async throws {
        let proxy = try await TestServers.faultProxy(["--fail-query", "partNumber=2", "--fail-status", "400", "--fail-code", "InvalidArgument"])
        var configuration = S3Store.Configuration()
        configuration.multipartThreshold = 5 << 20
        configuration.partSize = 5 << 20
        let url = proxy.url()
        let store = try await motoStore(url: url, configuration: configuration)
        await StoreConformance.expectCode(.permanent) { try await store.put("pack", bytes: pseudoRandomBytes(11 << 20, seed: 1)) }
        let direct = try await motoStore(url: proxy.directURL(url))
        #expect(try await direct.incompleteUploads().isEmpty, "the failed upload was not aborted")
        await StoreConformance.expectCode(.notFound) { _ = try await direct.head("pack") }
    }

    @Test func aCancelledMultipartUploadIsAborted() async throws {
        var configuration = S3Store.Configuration()
        configuration.multipartThreshold = 5 << 20
        configuration.partSize = 5 << 20
        configuration.maxConcurrentParts = 1
        let store = try await motoStore(configuration: configuration)
        let upload = Task { try await store.put("pack", bytes: pseudoRandomBytes(25 << 20, seed: 2)) }
        while store.client.requestCount < 2 { try await Task.sleep(for: .milliseconds(5)) }
        upload.cancel()
        _ = await upload.result
        #expect(try await store.incompleteUploads().isEmpty, "the cancelled upload was not aborted")
        await StoreConformance.expectCode(.notFound) { _ = try await store.head("pack") }
    }

    @Test func connectionsAreReusedAcrossRequests() async throws {
        let store = try await motoStore()
        try await store.put("small", bytes: [1, 2, 3])
        for _ in 0..<50 { _ = try await store.get("small", range: 1..<2) }
        #expect(store.client.requestCount >= 51)
        #expect(store.client.connectionsOpened <= 2, "\(store.client.connectionsOpened) connections for 51 sequential requests")
    }

    @Test func manyTransfersRunAtOnce() async throws {
        let store = try await motoStore()
        let objects = (0..<64).map { pseudoRandomBytes(50_000 + $0, seed: UInt64($0 + 1)) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (index, bytes) in objects.enumerated() { group.addTask { try await store.put("many/\(index)", bytes: bytes) } }
            try await group.waitForAll()
        }
        let back = try await withThrowingTaskGroup(of: (Int, [UInt8]).self) { group in
            for index in objects.indices { group.addTask { (index, try await store.get("many/\(index)")) } }
            var back = [[UInt8]](repeating: [], count: objects.count)
            for try await (index, bytes) in group { back[index] = bytes }
            return back
        }
        #expect(back == objects)
        // One warm connection per transfer thread, give or take one the server closed.
        #expect(store.client.connectionsOpened <= 2 * store.client.configuration.maxConcurrentTransfers,
                "\(store.client.connectionsOpened) connections for \(store.client.requestCount) requests")
    }

    @Test func aRangeStartingPastTheEndIsEmpty() async throws {
        let store = try await motoStore()
        try await store.put("r", bytes: [1, 2, 3])
        #expect(try await store.get("r", range: 3..<10) == [])
        #expect(try await store.get("r", range: 50..<60) == [])
        #expect(try await store.get("r", range: 1..<1) == [])
        await StoreConformance.expectCode(.notFound) { _ = try await store.get("missing", range: 1..<1) }
        try await store.put("empty", bytes: [])
        #expect(try await store.get("empty", range: 0..<10) == [])
    }

    @Test func aMissingBucketIsAPermanentErrorNamingIt() async throws {
        let moto = try await TestServers.moto()
        let store = try await motoStore(url: "s3://no-such-bucket-here/p?endpoint=\(moto.endpoint)&region=\(moto.region)")
        do {
            _ = try await store.get("a")
            Issue.record("a missing bucket was not reported")
        } catch let error as StoreError {
            #expect(error.code == .permanent && "\(error)".contains("no-such-bucket-here"), "\(error)")
        }
    }

    @Test func theLocatorOpensS3URLsWithEnvironmentCredentials() async throws {
        let moto = try await TestServers.moto()
        // The environment is the test process's: what other suites exported is put back afterwards.
        let saved: [(name: String, value: String?)] = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"].map { name in
            (name, getenv(name).map { String(cString: $0) })
        }
        setenv("AWS_ACCESS_KEY_ID", moto.credentials.accessKeyId, 1)
        setenv("AWS_SECRET_ACCESS_KEY", moto.secretAccessKey, 1)
        defer {
            for (name, value) in saved {
                if let value { setenv(name, value, 1) } else { unsetenv(name) }
            }
        }
        let store = try StoreLocator.open(moto.url())
        #expect((store as? MeteredStore)?.base is S3Store, "the locator measures every store it opens")
        try await store.put("via-locator", bytes: [9])
        #expect(try await store.get("via-locator") == [9])
    }
}
