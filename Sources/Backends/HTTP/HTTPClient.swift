import Synchronization

/// The one HTTP transport of Tiergate's network stores (S3 now, FileREST later), built on libcurl.
///
/// Each transfer runs the blocking `curl_easy_perform` on one of a few dedicated threads (never on the
/// Swift cooperative pool), and the caller awaits it through a continuation; so up to
/// ``Configuration/maxConcurrentTransfers`` requests are in flight and the rest wait in order. Every
/// thread keeps its easy handle, and with it its open connections, between transfers, so consecutive
/// requests to one endpoint reuse warm TCP/TLS connections; DNS answers and TLS sessions are shared
/// between the threads.
///
/// TLS peers are always verified, against the system CA store or a configured bundle; there is no
/// option to turn verification off, so a misconfigured endpoint fails loudly instead of silently
/// going insecure.
public final class HTTPClient: Sendable {
    /// Limits and TLS settings of a client.
    public struct Configuration: Sendable {
        /// How many transfers run at once (one thread and one connection each).
        public var maxConcurrentTransfers: Int = 16
        /// The limit for establishing a connection, including the TLS handshake.
        public var connectTimeout: Duration = .seconds(10)
        /// A transfer that moves no bytes for this long is abandoned as timed out.
        public var stallTimeout: Duration = .seconds(30)
        /// A limit on each whole transfer; nil means none (large objects take as long as they take).
        public var requestTimeout: Duration? = nil
        /// A PEM file of CA certificates to trust instead of the system store.
        public var caBundlePath: String? = nil
        /// The `User-Agent` header.
        public var userAgent: String = "tiergate"

        /// The defaults: 16 transfers, 10 s connect, 30 s stall, system CAs.
        public init() {}
    }

    /// The client's settings.
    public let configuration: Configuration
    private let threads: TransferThreads
    private let counters = Counters()

    /// A client with its transfer threads started.
    ///
    /// Throws ``HTTPError`` of kind `tls` when a CA bundle is configured but cannot be read, rather than
    /// falling back to anything else.
    public init(configuration: Configuration = .init()) throws {
        if let path = configuration.caBundlePath, !TransferThreads.isReadableFile(path) {
            throw HTTPError(.tls, "the CA bundle '\(path)' cannot be read", isTransient: false, mayHaveReachedServer: false)
        }
        precondition(configuration.maxConcurrentTransfers > 0, "maxConcurrentTransfers must be positive")
        self.configuration = configuration
        threads = TransferThreads(count: configuration.maxConcurrentTransfers)
    }

    deinit {
        threads.stop()
    }

    /// Sends `request` and returns the response, whatever its status.
    ///
    /// Throws ``HTTPError`` when no complete response arrived: connection, TLS or timeout failures, a
    /// body shorter than its `Content-Length`, a failing body source or sink, or cancellation.
    public func execute(_ request: HTTPRequest) async throws -> HTTPResponse {
        let transfer = CurlTransfer(request: request, configuration: configuration, counters: counters)
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                transfer.continuation = continuation
                threads.submit(transfer)
            }
        } onCancel: {
            transfer.cancel()
        }
    }

    /// How many HTTP requests this client has sent (each attempt counts), for benchmarks and tests.
    public var requestCount: Int { counters.requests.load(ordering: .relaxed) }
    /// Request body bytes sent.
    public var bytesSent: Int64 { counters.bytesSent.load(ordering: .relaxed) }
    /// Response body bytes received.
    public var bytesReceived: Int64 { counters.bytesReceived.load(ordering: .relaxed) }
    /// How many new connections were opened (the rest of the requests reused one).
    public var connectionsOpened: Int { counters.connections.load(ordering: .relaxed) }
}

/// Totals shared by a client and its transfers.
final class Counters: Sendable {
    let requests = Atomic<Int>(0)
    let bytesSent = Atomic<Int64>(0)
    let bytesReceived = Atomic<Int64>(0)
    let connections = Atomic<Int>(0)
}
