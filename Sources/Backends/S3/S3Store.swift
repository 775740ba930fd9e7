import Foundation

/// The `s3://` backend: a cloud share under a prefix of an S3 bucket (AWS or any compatible server).
///
/// Requests go through one ``HTTPClient`` (warm connections, many transfers in flight) and are signed
/// with SigV4. Each request is retried on its own under ``Configuration/retry`` when it fails
/// transiently (5xx, `SlowDown`, `RequestTimeout`, a 409 conflict, dropped or stalled connections, a
/// short body), so one flaky part of a multipart upload costs one part, not the upload; every other
/// failure is reported at once. Objects of ``Configuration/multipartThreshold`` bytes or more are
/// uploaded in parts, in parallel, and an upload that fails is aborted so that no parts stay behind.
///
/// `putIfAbsent` is a `PUT` with `If-None-Match: *`: S3 answers 412 when the key exists, which is
/// the commit log's atomic append.
public final class S3Store: ObjectStore {
    /// Tuning of an S3 store.
    public struct Configuration: Sendable {
        /// Objects at least this large are uploaded in parts: above the 16 MiB pack size, so that a pack is one
        /// PUT (a multipart upload costs at least three requests).
        public var multipartThreshold: Int = 64 << 20
        /// The size of each part but the last (raised as needed to stay within 10,000 parts; at least 5 MiB).
        public var partSize: Int = 8 << 20
        /// Parts of one upload sent at once.
        public var maxConcurrentParts: Int = 4
        /// Retries of each request.
        public var retry = RetryPolicy()
        /// The transport's limits (a `ca` URL parameter sets its CA bundle).
        public var http = HTTPClient.Configuration()

        /// The defaults: 8 MiB parts from 8 MiB on, 4 parts at once, 6 attempts per request.
        public init() {}
    }

    /// S3's bounds on multipart uploads.
    public static let minimumPartSize = 5 << 20
    /// At most this many parts make one object.
    public static let maximumParts = 10_000
    /// The largest object one PUT may create.
    public static let maximumSinglePut: Int64 = 5 << 30

    /// Where the share is.
    public let location: S3Location
    /// The store's tuning.
    public let configuration: Configuration
    /// The transport; its counters show requests and connections made.
    public let client: HTTPClient
    let signer: SigV4Signer
    public var displayName: String { location.displayName }

    /// A store for `location`, signing with `credentials`.
    public init(location: S3Location, credentials: S3Credentials, configuration: Configuration = .init()) throws {
        self.location = location
        self.configuration = configuration
        signer = .s3(credentials: credentials, region: location.region)
        var http = configuration.http
        if let bundle = location.caBundlePath { http.caBundlePath = bundle }
        do {
            client = try HTTPClient(configuration: http)
        } catch {
            throw StoreError(.permanent, store: location.displayName, operation: "open", key: "", cause: "\(error)")
        }
    }

    /// A store for an `s3://` URL, with credentials from the environment or the credentials file
    /// (see ``S3Credentials/load(environment:file:profile:store:)``).
    public convenience init(url: String, environment: [String: String] = ProcessInfo.processInfo.environment,
                            configuration: Configuration = .init()) throws {
        let location = try S3Location(url: url, environment: environment)
        let credentials = try S3Credentials.load(environment: environment, file: location.credentialsFile,
                                                 profile: location.profile, store: location.displayName)
        try self.init(location: location, credentials: credentials, configuration: configuration)
    }

    // MARK: ObjectStore

    public func get(_ key: String, range: Range<Int64>?) async throws -> [UInt8] {
        try ObjectKey.validate(key, store: displayName, operation: "get")
        if let range, range.isEmpty || range.lowerBound < 0 {
            _ = try await head(key) // still "not found" for a missing key
            return []
        }
        var headers: HTTPHeaders = [:]
        if let range { headers.add("Range", "bytes=\(range.lowerBound)-\(range.upperBound - 1)") }
        return try await retrying { _ in
            let response = try await self.exchange("get", key, method: "GET", objectKey: self.location.objectKey(key), headers: headers)
            switch response.status {
            case 200:
                guard let range else { return response.body }
                // The server sent the whole object (allowed when the range covers it); cut it here.
                let lower = Int(min(range.lowerBound, Int64(response.body.count)))
                let upper = Int(min(range.upperBound, Int64(response.body.count)))
                return Array(response.body[lower..<upper])
            case 206:
                guard let range else { throw self.inconsistent("get", key, "206 Partial Content for a whole-object GET") }
                try self.checkContentRange(response, requested: range, key: key)
                return response.body
            case 416:
                return [] // the range starts at or after the end: clamped to nothing
            default:
                throw self.failure(response, "get", key)
            }
        }
    }

    public func put(_ key: String, bytes: [UInt8]) async throws {
        try ObjectKey.validate(key, store: displayName, operation: "put")
        if bytes.count >= configuration.multipartThreshold {
            try await putMultipart(key, bytes: bytes)
            return
        }
        let payloadHash = payloadHash(bytes[...])
        let response = try await send("put", key, method: "PUT", objectKey: location.objectKey(key), body: .bytes(bytes[...]), payloadHash: payloadHash)
        guard response.status == 200 else { throw failure(response, "put", key) }
    }

    public func putIfAbsent(_ key: String, bytes: [UInt8]) async throws {
        try ObjectKey.validate(key, store: displayName, operation: "putIfAbsent")
        guard Int64(bytes.count) <= Self.maximumSinglePut else {
            throw StoreError(.permanent, store: displayName, operation: "putIfAbsent", key: key, cause: "objects over 5 GiB cannot be written conditionally")
        }
        let payloadHash = payloadHash(bytes[...])
        var ambiguous = false
        do {
            try await retrying { _ in
                let response = try await self.exchange("putIfAbsent", key, method: "PUT", objectKey: self.location.objectKey(key),
                                                       headers: ["If-None-Match": "*"], body: .bytes(bytes[...]),
                                                       payloadHash: payloadHash, noteAmbiguous: { ambiguous = true })
                switch response.status {
                case 200: return
                case 412: throw StoreError(.alreadyExists, store: self.displayName, operation: "putIfAbsent", key: key,
                                           cause: "HTTP 412 PreconditionFailed: the object exists")
                default: throw self.failure(response, "putIfAbsent", key)
                }
            }
        } catch let error as StoreError where error.code == .alreadyExists && ambiguous {
            // An earlier attempt may have written the object and lost only its answer; then the object
            // holds exactly our bytes and the append is ours (commit records name their author, so
            // another writer's never matches byte for byte).
            guard let stored = try? await get(key), stored == bytes else { throw error }
        }
    }

    public func head(_ key: String) async throws -> ObjectInfo {
        try ObjectKey.validate(key, store: displayName, operation: "head")
        let response = try await send("head", key, method: "HEAD", objectKey: location.objectKey(key))
        guard response.status == 200 else { throw failure(response, "head", key) }
        guard let size = response.headers["Content-Length"].flatMap({ Int64($0) }) else {
            throw inconsistent("head", key, "the HEAD response has no Content-Length")
        }
        return ObjectInfo(key: key, size: size)
    }

    public func list(prefix: String, startAfter: String?, limit: Int) async throws -> ListPage {
        var query: [(name: String, value: String)] = [("list-type", "2"), ("max-keys", String(max(1, min(limit, 1000))))]
        let fullPrefix = location.objectKey(prefix)
        if !fullPrefix.isEmpty { query.append(("prefix", fullPrefix)) }
        if let startAfter { query.append(("start-after", location.objectKey(startAfter))) }
        let response = try await send("list", prefix, method: "GET", objectKey: nil, query: query)
        guard response.status == 200 else { throw failure(response, "list", prefix) }
        let xml = Substring(decoding: response.body, as: UTF8.self)
        guard S3XML.elements("ListBucketResult", in: xml).count == 1 else {
            throw inconsistent("list", prefix, "the response is not a ListBucketResult")
        }
        var objects: [ObjectInfo] = []
        for entry in S3XML.elements("Contents", in: xml) {
            guard let objectKey = S3XML.value("Key", in: entry), let size = S3XML.value("Size", in: entry).flatMap({ Int64($0) }) else {
                throw inconsistent("list", prefix, "a listing entry lacks Key or Size")
            }
            let modified = S3XML.value("LastModified", in: entry).flatMap(S3XML.date)
            if let key = location.shareKey(objectKey) { objects.append(ObjectInfo(key: key, size: size, modified: modified)) }
        }
        return ListPage(objects: objects, isTruncated: S3XML.value("IsTruncated", in: xml) == "true")
    }

    public func delete(_ key: String) async throws {
        try ObjectKey.validate(key, store: displayName, operation: "delete")
        let response = try await send("delete", key, method: "DELETE", objectKey: location.objectKey(key))
        guard response.status == 204 || response.status == 200 || response.status == 404 else { throw failure(response, "delete", key) }
    }

    /// The `Date` of a `HEAD` of the bucket: any answer carries one, even a refusal (a clock far off is
    /// exactly what makes S3 refuse).
    public func serverTime() async throws -> Date? {
        try await send("serverTime", "", method: "HEAD", objectKey: nil).date
    }

    // MARK: requests

    func payloadHash(_ bytes: ArraySlice<UInt8>) -> String {
        guard location.signsPayload else { return SigV4Signer.unsignedPayload }
        return bytes.isEmpty ? SigV4Signer.emptyPayloadHash : SigV4Signer.payloadHash(bytes)
    }

    /// A signed request for `objectKey` (nil: the bucket).
    func request(method: String, objectKey: String?, query: [(name: String, value: String)], headers: HTTPHeaders,
                 body: HTTPRequestBody, payloadHash: String) -> HTTPRequest {
        var headers = headers
        headers.replace("Host", location.hostHeader)
        let signed = signer.sign(SigV4Signer.Request(method: method, path: location.path(objectKey: objectKey), query: query,
                                                     headers: headers, payloadHash: payloadHash), at: Date())
        return HTTPRequest(method: method, url: location.url(encodedPath: signed.encodedPath, encodedQuery: signed.encodedQuery),
                           headers: signed.headers, body: body)
    }

    /// Runs `body` under the retry policy, retrying transient ``StoreError``s.
    func retrying<T>(_ body: (Int) async throws -> T) async throws -> T {
        try await configuration.retry.run(isRetryable: { ($0 as? StoreError)?.isTransient == true }, body)
    }

    /// One request with retries; returns the first response that is not a transient failure.
    func send(_ operation: String, _ key: String, method: String, objectKey: String?, query: [(name: String, value: String)] = [],
              headers: HTTPHeaders = [:], body: HTTPRequestBody = .empty, payloadHash: String = SigV4Signer.emptyPayloadHash) async throws -> HTTPResponse {
        try await retrying { _ in
            try await self.exchange(operation, key, method: method, objectKey: objectKey, query: query, headers: headers, body: body, payloadHash: payloadHash)
        }
    }

    /// One attempt: signs (afresh, so retries carry a current date), sends, and turns transport failures
    /// and retryable statuses into transient ``StoreError``s. `noteAmbiguous` is called when the
    /// request may have taken effect although it failed.
    func exchange(_ operation: String, _ key: String, method: String, objectKey: String?, query: [(name: String, value: String)] = [],
                  headers: HTTPHeaders = [:], body: HTTPRequestBody = .empty, payloadHash: String = SigV4Signer.emptyPayloadHash,
                  noteAmbiguous: () -> Void = {}) async throws -> HTTPResponse {
        let request = request(method: method, objectKey: objectKey, query: query, headers: headers, body: body, payloadHash: payloadHash)
        let response: HTTPResponse
        do {
            response = try await client.execute(request)
        } catch let error as HTTPError {
            if error.mayHaveReachedServer { noteAmbiguous() }
            if error.kind == .cancelled { throw CancellationError() }
            throw StoreError(error.isTransient ? .transient : .permanent, store: displayName, operation: operation, key: key, cause: "\(error)")
        }
        if response.requestWasResent { noteAmbiguous() }
        if let reason = Self.retryableReason(response) {
            noteAmbiguous()
            throw StoreError(.transient, store: displayName, operation: operation, key: key, cause: reason)
        }
        return response
    }

    /// Why a response should be retried, or nil when it is an answer.
    static func retryableReason(_ response: HTTPResponse) -> String? {
        let code = S3XML.error(response.body)?.code
        switch (response.status, code) {
        case (500, _), (502, _), (503, _), (504, _), (429, _), (_, "SlowDown"), (_, "RequestTimeout"), (_, "InternalError"),
             (409, "ConditionalRequestConflict"), (409, "OperationAborted"):
            return describe(response)
        default:
            return nil
        }
    }

    /// `HTTP 503 SlowDown: Please reduce your request rate.`
    static func describe(_ response: HTTPResponse) -> String {
        if let (code, message) = S3XML.error(response.body) {
            return "HTTP \(response.status) \(code)" + (message.map { ": \($0)" } ?? "")
        }
        return "HTTP \(response.status)" + (response.body.isEmpty ? "" : " (no S3 error document)")
    }

    /// The ``StoreError`` for a response that is not the expected success.
    func failure(_ response: HTTPResponse, _ operation: String, _ key: String) -> StoreError {
        let s3Code = S3XML.error(response.body)?.code
        var cause = Self.describe(response)
        let code: StoreError.Code
        switch (response.status, s3Code) {
        case (_, "NoSuchBucket"):
            code = .permanent
            cause += " (the bucket '\(location.bucket)' does not exist)"
        case (404, _), (_, "NoSuchKey"):
            code = .notFound
        case (412, _):
            code = .alreadyExists
        case (403, _), (401, _), (_, "InvalidAccessKeyId"), (_, "SignatureDoesNotMatch"), (_, "AccessDenied"),
             (_, "InvalidToken"), (_, "ExpiredToken"), (_, "TokenRefreshRequired"):
            code = .unauthorized
            cause += " (access key \(signer.credentials.accessKeyId); check the secret key, session token and clock)"
        case (500..., _), (429, _), (_, "SlowDown"), (_, "RequestTimeout"), (_, "InternalError"):
            code = .transient
        default:
            code = .permanent
        }
        return StoreError(code, store: displayName, operation: operation, key: key, cause: cause)
    }

    func inconsistent(_ operation: String, _ key: String, _ why: String) -> StoreError {
        StoreError(.transient, store: displayName, operation: operation, key: key, cause: "inconsistent response: \(why)")
    }

    /// Throws (transiently) unless a 206 response holds exactly the requested bytes, clamped to the end.
    func checkContentRange(_ response: HTTPResponse, requested: Range<Int64>, key: String) throws {
        guard let header = response.headers["Content-Range"], header.hasPrefix("bytes "),
              let dash = header.firstIndex(of: "-"), let slash = header.firstIndex(of: "/"),
              let first = Int64(header[header.index(header.startIndex, offsetBy: 6)..<dash]),
              let last = Int64(header[header.index(after: dash)..<slash]),
              let total = Int64(header[header.index(after: slash)...]) else {
            throw inconsistent("get", key, "a 206 response without a usable Content-Range")
        }
        let expectedLast = min(requested.upperBound, total) - 1
        guard first == requested.lowerBound, last == expectedLast, Int64(response.body.count) == last - first + 1 else {
            throw inconsistent("get", key, "asked for bytes \(requested.lowerBound)-\(requested.upperBound - 1), got '\(header)' with \(response.body.count) bytes")
        }
    }
}
