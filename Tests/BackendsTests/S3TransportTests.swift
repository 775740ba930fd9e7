import Backends
import Foundation
import Synchronization
import Testing

/// The HTTP transport under the S3 store: TLS verification, streaming bodies, cancellation.
@Suite struct S3TransportTests {
    @Test func tlsPeersAreVerifiedByDefault() async throws {
        let certificate = try await TestServers.selfSignedCertificate()
        defer { try? FileManager.default.removeItem(atPath: certificate.directory) }
        let proxy = try await TestServers.faultProxy([], tls: certificate)
        let store = try await motoStore(url: proxy.url())
        do {
            try await store.put("k", bytes: [1])
            Issue.record("a self-signed server was trusted without being configured")
        } catch let error as StoreError {
            #expect(error.code == .permanent && "\(error)".contains("TLS"), "\(error)")
        }
        #expect(store.client.requestCount == 1, "a certificate failure must not be retried")
    }

    @Test func aConfiguredCABundleIsTrusted() async throws {
        let certificate = try await TestServers.selfSignedCertificate()
        defer { try? FileManager.default.removeItem(atPath: certificate.directory) }
        let proxy = try await TestServers.faultProxy([], tls: certificate)
        let store = try await motoStore(url: proxy.url() + "&ca=" + certificate.certificatePath)
        try await store.put("over-tls", bytes: [1, 2, 3])
        #expect(try await store.get("over-tls") == [1, 2, 3])
        #expect(store.displayName.hasPrefix("s3://") && store.displayName.contains("https://127.0.0.1"))
    }

    @Test func anUnreadableCABundleIsRefusedUpFront() {
        var configuration = HTTPClient.Configuration()
        configuration.caBundlePath = "/nonexistent/ca.pem"
        #expect(throws: HTTPError.self) { _ = try HTTPClient(configuration: configuration) }
    }

    @Test func aRefusedConnectionIsTransientAndNeverReachedTheServer() async throws {
        let client = try HTTPClient()
        do {
            _ = try await client.execute(HTTPRequest(method: "GET", url: "http://127.0.0.1:1/"))
            Issue.record("connected to port 1")
        } catch let error as HTTPError {
            #expect(error.kind == .connect && error.isTransient && !error.mayHaveReachedServer, "\(error)")
        }
    }

    /// Collects a streamed body and records how it arrived.
    final class CollectingSink: HTTPResponseSink {
        let state = Mutex<(bytes: [UInt8], chunks: Int, accepted: Int)>(([], 0, 0))
        func accept(status: Int, headers: HTTPHeaders) -> Bool {
            state.withLock { $0.bytes = []; $0.accepted += 1 }
            return status == 200
        }
        func write(_ bytes: UnsafeRawBufferPointer) throws {
            state.withLock { $0.bytes += bytes; $0.chunks += 1 }
        }
    }

    /// Produces bytes on demand, so an upload never holds its body in one buffer.
    struct GeneratedBody: HTTPBodySource {
        let count: Int64
        func read(at offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
            let n = Int(min(Int64(buffer.count), count - offset))
            for index in 0..<n { buffer[index] = UInt8(truncatingIfNeeded: (offset + Int64(index)) &* 7) }
            return n
        }
    }

    @Test func bodiesStreamFromASourceAndIntoASink() async throws {
        let moto = try await TestServers.moto()
        let store = try await motoStore()
        let count: Int64 = 3 << 20
        var expected = [UInt8](repeating: 0, count: Int(count))
        _ = try expected.withUnsafeMutableBytes { try GeneratedBody(count: count).read(at: 0, into: $0) }

        // An upload whose body is produced on demand, signed as S3 allows for streams.
        var upload = signedRequest(store: store, moto: moto, method: "PUT", key: "streamed", payloadHash: SigV4Signer.unsignedPayload)
        upload.body = .source(GeneratedBody(count: count))
        #expect(try await store.client.execute(upload).status == 200)
        #expect(try await store.get("streamed") == expected)

        // A download handed to a sink piece by piece instead of being collected.
        let sink = CollectingSink()
        var download = signedRequest(store: store, moto: moto, method: "GET", key: "streamed")
        download.sink = sink
        let response = try await store.client.execute(download)
        #expect(response.status == 200 && response.body.isEmpty && response.bodyBytesReceived == count)
        let collected = sink.state.withLock { $0 }
        #expect(collected.bytes == expected && collected.chunks > 1 && collected.accepted == 1)

        // An error answer is not given to the sink: the caller reads its S3 error document.
        let errorSink = CollectingSink()
        var missing = signedRequest(store: store, moto: moto, method: "GET", key: "missing")
        missing.sink = errorSink
        let notFound = try await store.client.execute(missing)
        #expect(notFound.status == 404 && String(decoding: notFound.body, as: UTF8.self).contains("NoSuchKey"))
        #expect(errorSink.state.withLock { $0.chunks } == 0)
    }

    @Test func cancellingATaskAbortsItsTransfer() async throws {
        let proxy = try await TestServers.faultProxy(["--rate", "1", "--kinds", "stall", "--stall-seconds", "90"])
        let store = try await motoStore(url: proxy.url())
        let start = ContinuousClock.now
        let task = Task { try await store.get("k") }
        try await Task.sleep(for: .milliseconds(300))
        task.cancel()
        let result = await task.result
        #expect(throws: CancellationError.self) { try result.get() }
        // Far less than the 90 s stall; loose because parallel tests share the CPU.
        #expect(ContinuousClock.now - start < .seconds(45))
    }
}

/// A request signed the way the store signs it, for driving the transport directly.
func signedRequest(store: S3Store, moto: TestServers.Moto, method: String, key: String,
                   payloadHash: String = SigV4Signer.emptyPayloadHash) -> HTTPRequest {
    let location = store.location
    var headers = HTTPHeaders()
    headers.add("Host", location.hostHeader)
    let signed = SigV4Signer.s3(credentials: moto.credentials, region: location.region)
        .sign(.init(method: method, path: location.path(objectKey: location.objectKey(key)), headers: headers, payloadHash: payloadHash), at: Date())
    return HTTPRequest(method: method, url: location.url(encodedPath: signed.encodedPath, encodedQuery: signed.encodedQuery), headers: signed.headers)
}
