/// A transfer that produced no HTTP response: the connection, TLS, a timeout or the body failed.
///
/// HTTP error statuses are not `HTTPError`s; they are responses, and the protocol above decides what
/// they mean. Messages come from curl and never contain request headers (so never credentials).
public struct HTTPError: Error, Sendable, CustomStringConvertible {
    /// What went wrong.
    public struct Kind: Hashable, Sendable, CustomStringConvertible {
        private let name: String
        private init(_ name: String) { self.name = name }
        public var description: String { name }

        /// No connection could be made (DNS, refused, unreachable).
        public static let connect = Kind("connection failed")
        /// The connect, stall or whole-transfer timeout expired.
        public static let timeout = Kind("timed out")
        /// TLS failed: the certificate did not verify, or the CA bundle is unusable.
        public static let tls = Kind("TLS failure")
        /// The connection broke while sending or receiving.
        public static let connectionLost = Kind("connection lost")
        /// The body ended before `Content-Length` bytes arrived.
        public static let truncated = Kind("truncated response")
        /// The task was cancelled.
        public static let cancelled = Kind("cancelled")
        /// The request itself is unusable (bad URL, unsupported scheme).
        public static let invalidRequest = Kind("invalid request")
        /// The request body source or the response sink threw.
        public static let body = Kind("body failed")
        /// Anything else curl reported.
        public static let other = Kind("transfer failed")
    }

    /// What went wrong.
    public var kind: Kind
    /// curl's explanation (or ours), safe to log.
    public var message: String
    /// The curl result code, when curl reported the failure.
    public var curlCode: Int?
    /// True when trying again may succeed.
    public var isTransient: Bool
    /// False only when the request certainly never reached the server (it could not connect), so a
    /// non-idempotent request may be resent without ambiguity.
    public var mayHaveReachedServer: Bool

    /// An error of `kind`.
    public init(_ kind: Kind, _ message: String, curlCode: Int? = nil, isTransient: Bool, mayHaveReachedServer: Bool = true) {
        self.kind = kind
        self.message = message
        self.curlCode = curlCode
        self.isTransient = isTransient
        self.mayHaveReachedServer = mayHaveReachedServer
    }

    public var description: String {
        "\(kind): \(message)" + (curlCode.map { " (curl \($0))" } ?? "")
    }
}
