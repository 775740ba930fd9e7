import Foundation
import Glibc
import Hashing

/// AWS Signature Version 4 (header and presigned-query forms), as S3 and other AWS services check it.
///
/// The request's path and query are given unencoded; the signer encodes them with AWS's rules
/// (everything but `A–Z a–z 0–9 - _ . ~` as `%XX`, and `/` kept in paths), and callers must send the
/// same encoding (``encodePath(_:)``, ``canonicalQuery(_:)``) so that what is signed is what is sent.
/// For S3, paths are not normalized: `a//b` and `./x` are distinct keys and are signed as they are.
public struct SigV4Signer: Sendable {
    /// The payload hash that tells S3 the body is not part of the signature.
    public static let unsignedPayload = "UNSIGNED-PAYLOAD"
    /// The SHA-256 of no bytes.
    public static let emptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    /// Headers never signed because proxies may change them (the same list botocore keeps).
    static let unsignedHeaders: Set<String> = ["connection", "expect", "keep-alive", "proxy-authenticate", "proxy-authorization",
                                               "te", "trailer", "transfer-encoding", "upgrade", "user-agent", "x-amzn-trace-id"]

    /// The key that signs.
    public var credentials: S3Credentials
    /// The region of the credential scope (`us-east-1`).
    public var region: String
    /// The service of the credential scope (`s3`).
    public var service: String
    /// Removes `.`/`..` segments and empty segments before encoding; S3 must not (keys are literal).
    public var normalizesPath: Bool
    /// Sends and signs `x-amz-content-sha256`, which S3 requires on every request.
    public var signsContentHashHeader: Bool
    /// When false, the session token is added after signing instead of being signed (a few services
    /// want it that way); S3 signs it.
    public var signsSessionToken: Bool

    /// A signer for any service.
    public init(credentials: S3Credentials, region: String, service: String, normalizesPath: Bool = true,
                signsContentHashHeader: Bool = false, signsSessionToken: Bool = true) {
        self.credentials = credentials
        self.region = region
        self.service = service
        self.normalizesPath = normalizesPath
        self.signsContentHashHeader = signsContentHashHeader
        self.signsSessionToken = signsSessionToken
    }

    /// The signer S3 wants: no path normalization, `x-amz-content-sha256` signed, session token signed.
    public static func s3(credentials: S3Credentials, region: String) -> SigV4Signer {
        SigV4Signer(credentials: credentials, region: region, service: "s3", normalizesPath: false, signsContentHashHeader: true)
    }

    /// A request to sign.
    public struct Request: Sendable {
        /// The method, upper case.
        public var method: String
        /// The path, unencoded, starting with `/`.
        public var path: String
        /// Query parameters, unencoded, in any order; a parameter without value has value "".
        public var query: [(name: String, value: String)]
        /// The headers to send, including `Host`.
        public var headers: HTTPHeaders
        /// The hex SHA-256 of the body, or ``SigV4Signer/unsignedPayload``.
        public var payloadHash: String

        /// A request to sign.
        public init(method: String, path: String, query: [(name: String, value: String)] = [], headers: HTTPHeaders,
                    payloadHash: String = SigV4Signer.emptyPayloadHash) {
            self.method = method
            self.path = path
            self.query = query
            self.headers = headers
            self.payloadHash = payloadHash
        }
    }

    /// A signed request and the intermediate forms, which tests compare with reference signers.
    public struct Signed: Sendable {
        /// The canonical request that was hashed.
        public var canonicalRequest: String
        /// The string whose HMAC is the signature.
        public var stringToSign: String
        /// The signature, 64 hex digits.
        public var signature: String
        /// The headers to send: the request's plus `X-Amz-Date`, the content hash, the session token and
        /// `Authorization` (for presigned requests, only the request's own).
        public var headers: HTTPHeaders
        /// The query parameters to send, unencoded (for presigned requests, with the `X-Amz-*` ones).
        public var query: [(name: String, value: String)]
        /// The encoded path to send.
        public var encodedPath: String
        /// The encoded query string to send (without `?`), in canonical order.
        public var encodedQuery: String { SigV4Signer.canonicalQuery(query) }
    }

    /// Signs `request` at `date` with an `Authorization` header.
    public func sign(_ request: Request, at date: Date) -> Signed {
        let (stamp, day) = Self.timestamps(date)
        var headers = request.headers
        headers.replace("X-Amz-Date", stamp)
        if signsContentHashHeader { headers.replace("x-amz-content-sha256", request.payloadHash) }
        if let token = credentials.sessionToken, signsSessionToken { headers.replace("X-Amz-Security-Token", token) }
        let (canonicalHeaders, signedHeaders) = Self.canonicalHeaders(headers)
        let encodedPath = canonicalPath(request.path)
        let canonical = [request.method.uppercased(), encodedPath, Self.canonicalQuery(request.query),
                         canonicalHeaders, signedHeaders, request.payloadHash].joined(separator: "\n")
        let scope = "\(day)/\(region)/\(service)/aws4_request"
        let stringToSign = stringToSign(stamp: stamp, scope: scope, canonicalRequest: canonical)
        let signature = signature(day: day, stringToSign: stringToSign)
        if let token = credentials.sessionToken, !signsSessionToken { headers.replace("X-Amz-Security-Token", token) }
        headers.replace("Authorization", "AWS4-HMAC-SHA256 Credential=\(credentials.accessKeyId)/\(scope), SignedHeaders=\(signedHeaders), Signature=\(signature)")
        return Signed(canonicalRequest: canonical, stringToSign: stringToSign, signature: signature,
                      headers: headers, query: request.query, encodedPath: encodedPath)
    }

    /// Signs `request` at `date` in its query string, valid for `expires` seconds (a presigned URL).
    public func presign(_ request: Request, at date: Date, expires: Int) -> Signed {
        let (stamp, day) = Self.timestamps(date)
        let scope = "\(day)/\(region)/\(service)/aws4_request"
        let (canonicalHeaders, signedHeaders) = Self.canonicalHeaders(request.headers)
        var query = request.query
        query += [("X-Amz-Algorithm", "AWS4-HMAC-SHA256"), ("X-Amz-Credential", "\(credentials.accessKeyId)/\(scope)"),
                  ("X-Amz-Date", stamp), ("X-Amz-Expires", String(expires)), ("X-Amz-SignedHeaders", signedHeaders)]
        if let token = credentials.sessionToken, signsSessionToken { query.append(("X-Amz-Security-Token", token)) }
        let encodedPath = canonicalPath(request.path)
        let canonical = [request.method.uppercased(), encodedPath, Self.canonicalQuery(query),
                         canonicalHeaders, signedHeaders, request.payloadHash].joined(separator: "\n")
        let stringToSign = stringToSign(stamp: stamp, scope: scope, canonicalRequest: canonical)
        let signature = signature(day: day, stringToSign: stringToSign)
        if let token = credentials.sessionToken, !signsSessionToken { query.append(("X-Amz-Security-Token", token)) }
        query.append(("X-Amz-Signature", signature))
        return Signed(canonicalRequest: canonical, stringToSign: stringToSign, signature: signature,
                      headers: request.headers, query: query, encodedPath: encodedPath)
    }

    // MARK: pieces

    private func stringToSign(stamp: String, scope: String, canonicalRequest: String) -> String {
        "AWS4-HMAC-SHA256\n\(stamp)\n\(scope)\n" + SHA256.hash(Array(canonicalRequest.utf8)).hex
    }

    private func signature(day: String, stringToSign: String) -> String {
        var key = HMACSHA256.mac(key: Array(("AWS4" + credentials.secretAccessKey).utf8), string: day).array
        for part in [region, service, "aws4_request"] { key = HMACSHA256.mac(key: key, string: part).array }
        return HMACSHA256.mac(key: key, string: stringToSign).hex
    }

    private func canonicalPath(_ path: String) -> String {
        Self.encodePath(normalizesPath ? Self.removeDotSegments(path) : path)
    }

    /// `X-Amz-Date` (`20150830T123600Z`) and the scope's day (`20150830`) of `date`, in UTC.
    static func timestamps(_ date: Date) -> (String, String) {
        var seconds = time_t(date.timeIntervalSince1970.rounded(.down))
        var parts = tm()
        gmtime_r(&seconds, &parts)
        let day = String(format: "%04d%02d%02d", parts.tm_year + 1900, parts.tm_mon + 1, parts.tm_mday)
        return (day + String(format: "T%02d%02d%02dZ", parts.tm_hour, parts.tm_min, parts.tm_sec), day)
    }

    /// The canonical header block (with its trailing empty line) and the signed-headers list.
    static func canonicalHeaders(_ headers: HTTPHeaders) -> (String, String) {
        var grouped: [String: [String]] = [:]
        var names: [String] = []
        for field in headers {
            let name = field.name.lowercased()
            if unsignedHeaders.contains(name) || name == "authorization" { continue }
            if grouped[name] == nil { names.append(name) }
            grouped[name, default: []].append(trimAll(field.value))
        }
        names.sort { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        let block = names.map { "\($0):\(grouped[$0]!.joined(separator: ","))\n" }.joined()
        return (block, names.joined(separator: ";"))
    }

    /// The value without leading or trailing whitespace and with each inner run of it made one space.
    static func trimAll(_ value: String) -> String {
        value.utf8.split(whereSeparator: { $0 == 32 || (9...13).contains($0) })
            .map { String(decoding: $0, as: UTF8.self) }.joined(separator: " ")
    }

    /// The path with `.` and `..` segments resolved and empty segments dropped (RFC 3986 §5.2.4 plus
    /// AWS's slash collapsing); a trailing slash is kept.
    static func removeDotSegments(_ path: String) -> String {
        var output: [Substring] = []
        for segment in path.split(separator: "/", omittingEmptySubsequences: true) {
            if segment == "." { continue }
            if segment == ".." { _ = output.popLast(); continue }
            output.append(segment)
        }
        var result = "/" + output.joined(separator: "/")
        if path.hasSuffix("/") && !output.isEmpty { result += "/" }
        return result
    }

    /// `text` percent-encoded with AWS's rules: unreserved characters stay, every other UTF-8 byte
    /// becomes `%XX` (upper-case hex); `/` stays too when `keepingSlash`.
    public static func encode(_ text: String, keepingSlash: Bool = false) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count)
        let hex = Array("0123456789ABCDEF".utf8)
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "~"):
                out.append(byte)
            case UInt8(ascii: "/") where keepingSlash:
                out.append(byte)
            default:
                out += [UInt8(ascii: "%"), hex[Int(byte >> 4)], hex[Int(byte & 15)]]
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// A path encoded for both the request line and the canonical request.
    public static func encodePath(_ path: String) -> String { encode(path, keepingSlash: true) }

    /// The canonical query string: each name and value encoded, pairs sorted by name then value.
    /// It is also a valid query string to send.
    public static func canonicalQuery(_ items: [(name: String, value: String)]) -> String {
        items.map { (encode($0.name), encode($0.value)) }
            .sorted { $0.0 == $1.0 ? $0.1.utf8.lexicographicallyPrecedes($1.1.utf8) : $0.0.utf8.lexicographicallyPrecedes($1.0.utf8) }
            .map { "\($0.0)=\($0.1)" }.joined(separator: "&")
    }

    /// The hex SHA-256 of a body, for ``Request/payloadHash``.
    public static func payloadHash<Bytes: ContiguousBytes>(_ bytes: Bytes) -> String {
        SHA256.hash(bytes).hex
    }
}
