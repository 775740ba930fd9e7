import CCurl
import Glibc
import Synchronization

/// One request on its way through curl: the request, the response being assembled, and the C
/// callbacks that connect the two.
///
/// `@unchecked Sendable`: it is created by the caller, then handed to exactly one transfer thread
/// (through the queue's lock, which orders the hand-over); from then on only that thread touches the
/// mutable state, except `cancelled`, which is atomic.
final class CurlTransfer: @unchecked Sendable {
    let request: HTTPRequest
    let configuration: HTTPClient.Configuration
    let counters: Counters
    var continuation: CheckedContinuation<HTTPResponse, any Error>?
    private let cancelled = Atomic<Bool>(false)

    // State of the response being received, reset when curl starts over on a new response.
    private var status = 0
    private var headers = HTTPHeaders()
    private var body: [UInt8] = []
    private var received: Int64 = 0
    private var sinkAccepted = false
    private var failure: HTTPError?
    private var uploadOffset: Int64 = 0
    private var requestLinesSent = 0

    /// Error bodies given back instead of to a sink are kept only up to this size.
    private static let errorBodyLimit = 1 << 20

    init(request: HTTPRequest, configuration: HTTPClient.Configuration, counters: Counters) {
        self.request = request
        self.configuration = configuration
        self.counters = counters
    }

    func cancel() {
        cancelled.store(true, ordering: .relaxed)
    }

    /// Runs the transfer on `handle`; the caller then hands the outcome over with ``finish(with:)``.
    func perform(on handle: UnsafeMutableRawPointer, share: UnsafeMutableRawPointer, errorBuffer: UnsafeMutablePointer<CChar>) -> Result<HTTPResponse, HTTPError> {
        if cancelled.load(ordering: .relaxed) {
            return .failure(HTTPError(.cancelled, "cancelled before it started", isTransient: false, mayHaveReachedServer: false))
        }
        curl_easy_reset(handle)
        errorBuffer[0] = 0
        var headerList: UnsafeMutablePointer<curl_slist>? = nil
        defer {
            // Clear every option again (callbacks, their data pointers to this transfer, the header
            // list) before either goes away: curl may call back later, for instance when it closes a
            // cached connection during cleanup. Open connections survive the reset.
            curl_easy_reset(handle)
            curl_slist_free_all(headerList)
        }
        do {
            headerList = try configure(handle, share: share, errorBuffer: errorBuffer)
            counters.requests.add(1, ordering: .relaxed)
            let code = curl_easy_perform(handle)
            var connects = 0
            _ = CCurl_getinfo_long(handle, CURLINFO_NUM_CONNECTS, &connects)
            counters.connections.add(connects, ordering: .relaxed)
            return outcome(handle, code: code, errorBuffer: errorBuffer)
        } catch let error as HTTPError {
            return .failure(error)
        } catch {
            return .failure(HTTPError(.invalidRequest, "\(error)", isTransient: false, mayHaveReachedServer: false))
        }
    }

    /// Resumes the waiting caller.
    func finish(with outcome: Result<HTTPResponse, HTTPError>) {
        let continuation = self.continuation
        self.continuation = nil
        continuation?.resume(with: outcome)
    }

    private func check(_ code: CURLcode, _ what: String) throws {
        guard code == CURLE_OK else {
            throw HTTPError(.invalidRequest, "cannot set \(what): \(String(cString: curl_easy_strerror(code)))",
                            curlCode: Int(code.rawValue), isTransient: false, mayHaveReachedServer: false)
        }
    }

    private static func milliseconds(_ duration: Duration) -> Int {
        let (seconds, attoseconds) = duration.components
        return max(1, Int(seconds) * 1000 + Int(attoseconds / 1_000_000_000_000_000))
    }

    /// Sets every option of this transfer; returns the header list, which must outlive the transfer.
    private func configure(_ handle: UnsafeMutableRawPointer, share: UnsafeMutableRawPointer,
                           errorBuffer: UnsafeMutablePointer<CChar>) throws -> UnsafeMutablePointer<curl_slist>? {
        let me = Unmanaged.passUnretained(self).toOpaque()
        try check(CCurl_setopt_string(handle, CURLOPT_URL, request.url), "the URL")
        // Only HTTP(S), never redirects: a store answering with a redirect is misconfigured, and
        // following it could send signed requests to another host.
        try check(CCurl_setopt_string(handle, CURLOPT_PROTOCOLS_STR, "http,https"), "protocols")
        try check(CCurl_setopt_long(handle, CURLOPT_FOLLOWLOCATION, 0), "redirects")
        try check(CCurl_setopt_long(handle, CURLOPT_NOSIGNAL, 1), "no signals")
        try check(CCurl_setopt_ptr(handle, CURLOPT_SHARE, share), "share")
        try check(CCurl_setopt_ptr(handle, CURLOPT_ERRORBUFFER, errorBuffer), "error buffer")
        try check(CCurl_setopt_long(handle, CURLOPT_HTTP_VERSION, Int(CURL_HTTP_VERSION_1_1)), "HTTP/1.1")
        try check(CCurl_setopt_long(handle, CURLOPT_TCP_KEEPALIVE, 1), "keepalive")
        try check(CCurl_setopt_string(handle, CURLOPT_USERAGENT, configuration.userAgent), "user agent")
        try check(CCurl_setopt_long(handle, CURLOPT_BUFFERSIZE, 256 << 10), "buffer size")
        try check(CCurl_setopt_long(handle, CURLOPT_UPLOAD_BUFFERSIZE, 512 << 10), "upload buffer size")

        // TLS verification is always on; a custom bundle replaces the system store, nothing else.
        try check(CCurl_setopt_long(handle, CURLOPT_SSL_VERIFYPEER, 1), "TLS peer verification")
        try check(CCurl_setopt_long(handle, CURLOPT_SSL_VERIFYHOST, 2), "TLS host verification")
        if let bundle = configuration.caBundlePath {
            try check(CCurl_setopt_string(handle, CURLOPT_CAINFO, bundle), "the CA bundle")
        }

        try check(CCurl_setopt_long(handle, CURLOPT_CONNECTTIMEOUT_MS, Self.milliseconds(configuration.connectTimeout)), "connect timeout")
        let stallSeconds = max(1, Int(configuration.stallTimeout.components.seconds))
        try check(CCurl_setopt_long(handle, CURLOPT_LOW_SPEED_LIMIT, 1), "stall limit")
        try check(CCurl_setopt_long(handle, CURLOPT_LOW_SPEED_TIME, stallSeconds), "stall time")
        if let timeout = request.timeout ?? configuration.requestTimeout {
            try check(CCurl_setopt_long(handle, CURLOPT_TIMEOUT_MS, Self.milliseconds(timeout)), "timeout")
        }

        try check(CCurl_setopt_header(handle) { data, size, count, user in
            Unmanaged<CurlTransfer>.fromOpaque(user!).takeUnretainedValue()
                .receiveHeader(UnsafeRawBufferPointer(start: data, count: size * count))
        }, "header callback")
        try check(CCurl_setopt_ptr(handle, CURLOPT_HEADERDATA, me), "header data")
        try check(CCurl_setopt_write(handle) { data, size, count, user in
            Unmanaged<CurlTransfer>.fromOpaque(user!).takeUnretainedValue()
                .receiveBody(UnsafeRawBufferPointer(start: data, count: size * count))
        }, "write callback")
        try check(CCurl_setopt_ptr(handle, CURLOPT_WRITEDATA, me), "write data")
        try check(CCurl_setopt_xferinfo(handle) { user, _, _, _, _ in
            Unmanaged<CurlTransfer>.fromOpaque(user!).takeUnretainedValue().cancelled.load(ordering: .relaxed) ? 1 : 0
        }, "progress callback")
        try check(CCurl_setopt_ptr(handle, CURLOPT_XFERINFODATA, me), "progress data")
        try check(CCurl_setopt_long(handle, CURLOPT_NOPROGRESS, 0), "progress")
        // The debug callback sees each request line curl sends; more than one means curl silently
        // resent the request (after a reused connection died with no answer), which a caller of a
        // non-idempotent request must know about. Nothing is logged.
        try check(CCurl_setopt_debug(handle) { _, type, data, size, user in
            if type == CURLINFO_HEADER_OUT, let data {
                Unmanaged<CurlTransfer>.fromOpaque(user!).takeUnretainedValue()
                    .noteHeaderOut(UnsafeRawBufferPointer(start: data, count: size))
            }
            return 0
        }, "debug callback")
        try check(CCurl_setopt_ptr(handle, CURLOPT_DEBUGDATA, me), "debug data")
        try check(CCurl_setopt_long(handle, CURLOPT_VERBOSE, 1), "verbose")

        let method = request.method.uppercased()
        let bodyCount = request.body.count
        if method == "HEAD" {
            try check(CCurl_setopt_long(handle, CURLOPT_NOBODY, 1), "HEAD")
        } else if bodyCount > 0 || method == "PUT" || method == "POST" {
            // An upload with a known size, so curl sends Content-Length (S3 refuses chunked PUTs).
            try check(CCurl_setopt_long(handle, CURLOPT_UPLOAD, 1), "upload")
            try check(CCurl_setopt_off(handle, CURLOPT_INFILESIZE_LARGE, curl_off_t(bodyCount)), "upload size")
            try check(CCurl_setopt_read(handle) { data, size, count, user in
                Unmanaged<CurlTransfer>.fromOpaque(user!).takeUnretainedValue()
                    .sendBody(UnsafeMutableRawBufferPointer(start: data, count: size * count))
            }, "read callback")
            try check(CCurl_setopt_ptr(handle, CURLOPT_READDATA, me), "read data")
            try check(CCurl_setopt_seek(handle) { user, offset, origin in
                Unmanaged<CurlTransfer>.fromOpaque(user!).takeUnretainedValue().seek(to: offset, origin: origin)
            }, "seek callback")
            try check(CCurl_setopt_ptr(handle, CURLOPT_SEEKDATA, me), "seek data")
            if method != "PUT" {
                try check(CCurl_setopt_string(handle, CURLOPT_CUSTOMREQUEST, method), "method")
            }
        } else if method != "GET" {
            try check(CCurl_setopt_string(handle, CURLOPT_CUSTOMREQUEST, method), "method")
        }

        var list: UnsafeMutablePointer<curl_slist>? = nil
        func append(_ line: String) throws {
            guard let next = curl_slist_append(list, line) else {
                curl_slist_free_all(list)
                throw HTTPError(.invalidRequest, "out of memory for headers", isTransient: false, mayHaveReachedServer: false)
            }
            list = next
        }
        for field in request.headers {
            guard !field.name.utf8.contains(where: { $0 == 10 || $0 == 13 || $0 == 58 }),
                  !field.value.utf8.contains(where: { $0 == 10 || $0 == 13 }) else {
                curl_slist_free_all(list)
                throw HTTPError(.invalidRequest, "header '\(field.name)' contains a line break or colon", isTransient: false, mayHaveReachedServer: false)
            }
            // "Name;" is curl's way to send a header with an empty value.
            try append(field.value.isEmpty ? field.name + ";" : field.name + ": " + field.value)
        }
        // Turn off curl's defaults that the caller did not ask for: 100-continue round trips, and the
        // form content type curl adds to POSTs.
        if !request.headers.contains("Expect") { try append("Expect:") }
        if !request.headers.contains("Content-Type") && method == "POST" { try append("Content-Type:") }
        if !request.headers.contains("Accept") { try append("Accept:") }
        try check(CCurl_setopt_slist(handle, CURLOPT_HTTPHEADER, list), "headers")
        return list
    }

    // MARK: callbacks (transfer thread)

    private func receiveHeader(_ line: UnsafeRawBufferPointer) -> Int {
        // Strip CR and LF as bytes: in Swift "\r\n" is one Character, which "\r" never equals.
        var end = line.count
        while end > 0, line[end - 1] == 13 || line[end - 1] == 10 { end -= 1 }
        let text = Substring(decoding: UnsafeRawBufferPointer(rebasing: line[..<end]), as: UTF8.self)
        if text.hasPrefix("HTTP/") {
            // A new response starts (after 100 Continue, or when curl resent the request).
            let parts = text.split(separator: " ", maxSplits: 2)
            status = parts.count > 1 ? Int(parts[1]) ?? 0 : 0
            headers = HTTPHeaders()
            body.removeAll(keepingCapacity: true)
            received = 0
            sinkAccepted = false
        } else if text.isEmpty {
            guard status >= 200 else { return line.count }
            if let sink = request.sink {
                sinkAccepted = sink.accept(status: status, headers: headers)
            }
            if !sinkAccepted, request.method.uppercased() != "HEAD",
               let length = headers["Content-Length"].flatMap({ Int($0.trimmingSpaces) }), length > 0 {
                body.reserveCapacity(min(length, 1 << 30))
            }
        } else if text.first == " " || text.first == "\t" {
            if var last = headers.fields.last {
                headers.remove(last.name)
                last.value += " " + text.trimmingSpaces
                headers.add(last.name, last.value)
            }
        } else if let colon = text.firstIndex(of: ":") {
            headers.add(String(text[..<colon]), String(text[text.index(after: colon)...]).trimmingSpaces)
        }
        return line.count
    }

    private func noteHeaderOut(_ bytes: UnsafeRawBufferPointer) {
        let method = request.method.uppercased().utf8
        if bytes.count > method.count, bytes.starts(with: method), bytes[method.count] == UInt8(ascii: " ") {
            requestLinesSent += 1
        }
    }

    private func receiveBody(_ bytes: UnsafeRawBufferPointer) -> Int {
        received += Int64(bytes.count)
        if sinkAccepted, let sink = request.sink {
            do {
                try sink.write(bytes)
            } catch {
                failure = HTTPError(.body, "the response sink failed: \(error)", isTransient: false)
                return Int(CURL_WRITEFUNC_ERROR)
            }
        } else if request.sink != nil && body.count + bytes.count > Self.errorBodyLimit {
            // An error body for a sink caller: keep the head, which holds the error code.
        } else {
            body.append(contentsOf: bytes)
        }
        return bytes.count
    }

    private func sendBody(_ buffer: UnsafeMutableRawBufferPointer) -> Int {
        let total = request.body.count
        let wanted = Int(min(Int64(buffer.count), total - uploadOffset))
        guard wanted > 0 else { return 0 }
        switch request.body {
        case .empty:
            return 0
        case .bytes(let bytes):
            bytes.withUnsafeBytes { source in
                buffer.baseAddress!.copyMemory(from: source.baseAddress! + Int(uploadOffset), byteCount: wanted)
            }
            uploadOffset += Int64(wanted)
            return wanted
        case .source(let source):
            do {
                let count = try source.read(at: uploadOffset, into: UnsafeMutableRawBufferPointer(rebasing: buffer[..<wanted]))
                guard count > 0 else {
                    failure = HTTPError(.body, "the body source ended at \(uploadOffset) of \(total) bytes", isTransient: false)
                    return Int(CURL_READFUNC_ABORT)
                }
                uploadOffset += Int64(count)
                return count
            } catch {
                failure = HTTPError(.body, "the body source failed: \(error)", isTransient: false)
                return Int(CURL_READFUNC_ABORT)
            }
        }
    }

    private func seek(to offset: curl_off_t, origin: Int32) -> Int32 {
        guard origin == SEEK_SET, offset >= 0, Int64(offset) <= request.body.count else { return 2 } // CURL_SEEKFUNC_CANTSEEK
        uploadOffset = Int64(offset)
        return 0 // CURL_SEEKFUNC_OK
    }

    // MARK: outcome

    private func outcome(_ handle: UnsafeMutableRawPointer, code: CURLcode, errorBuffer: UnsafeMutablePointer<CChar>) -> Result<HTTPResponse, HTTPError> {
        counters.bytesSent.add(uploadOffset, ordering: .relaxed)
        counters.bytesReceived.add(received, ordering: .relaxed)
        if let failure { return .failure(failure) }
        guard code == CURLE_OK else {
            let detail = errorBuffer[0] != 0 ? String(cString: errorBuffer) : String(cString: curl_easy_strerror(code))
            return .failure(Self.error(for: code, detail: detail, cancelled: cancelled.load(ordering: .relaxed)))
        }
        var responseCode = 0
        _ = CCurl_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &responseCode)
        if responseCode != 0 { status = responseCode }
        // curl already fails short bodies with CURLE_PARTIAL_FILE; this guards the cases it lets
        // through, because a short body must never be mistaken for data.
        let hasBody = request.method.uppercased() != "HEAD" && status != 204 && status != 304
        if hasBody, let length = headers["Content-Length"].flatMap({ Int64($0.trimmingSpaces) }), length != received {
            return .failure(HTTPError(.truncated, "received \(received) of \(length) body bytes", isTransient: true))
        }
        return .success(HTTPResponse(status: status, headers: headers, body: body, bodyBytesReceived: received, requestWasResent: requestLinesSent > 1))
    }

    /// Classifies a curl failure: what it was, and whether trying again can help.
    static func error(for code: CURLcode, detail: String, cancelled: Bool) -> HTTPError {
        let raw = Int(code.rawValue)
        switch code {
        case CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY, CURLE_COULDNT_CONNECT:
            return HTTPError(.connect, detail, curlCode: raw, isTransient: true, mayHaveReachedServer: false)
        case CURLE_OPERATION_TIMEDOUT:
            return HTTPError(.timeout, detail, curlCode: raw, isTransient: true)
        case CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CACERT_BADFILE, CURLE_SSL_CERTPROBLEM, CURLE_SSL_CIPHER,
             CURLE_SSL_ENGINE_NOTFOUND, CURLE_SSL_ENGINE_SETFAILED, CURLE_SSL_PINNEDPUBKEYNOTMATCH,
             CURLE_SSL_INVALIDCERTSTATUS, CURLE_SSL_ISSUER_ERROR, CURLE_SSL_CRL_BADFILE:
            return HTTPError(.tls, detail, curlCode: raw, isTransient: false, mayHaveReachedServer: false)
        case CURLE_SSL_CONNECT_ERROR:
            // A handshake cut short (often an overloaded or restarting server), not a bad certificate.
            return HTTPError(.tls, detail, curlCode: raw, isTransient: true, mayHaveReachedServer: false)
        case CURLE_PARTIAL_FILE:
            return HTTPError(.truncated, detail, curlCode: raw, isTransient: true)
        case CURLE_SEND_ERROR, CURLE_RECV_ERROR, CURLE_GOT_NOTHING, CURLE_SEND_FAIL_REWIND, CURLE_WEIRD_SERVER_REPLY,
             CURLE_HTTP2, CURLE_HTTP2_STREAM, CURLE_AGAIN:
            return HTTPError(.connectionLost, detail, curlCode: raw, isTransient: true)
        case CURLE_ABORTED_BY_CALLBACK where cancelled:
            return HTTPError(.cancelled, "cancelled", curlCode: raw, isTransient: false)
        case CURLE_URL_MALFORMAT, CURLE_UNSUPPORTED_PROTOCOL, CURLE_BAD_FUNCTION_ARGUMENT:
            return HTTPError(.invalidRequest, detail, curlCode: raw, isTransient: false, mayHaveReachedServer: false)
        default:
            return HTTPError(.other, detail, curlCode: raw, isTransient: false)
        }
    }
}

extension StringProtocol {
    /// The text without leading and trailing spaces and tabs.
    var trimmingSpaces: String {
        let utf8 = Array(self.utf8)
        var start = 0, end = utf8.count
        while start < end, utf8[start] == 32 || utf8[start] == 9 { start += 1 }
        while end > start, utf8[end - 1] == 32 || utf8[end - 1] == 9 { end -= 1 }
        return String(decoding: utf8[start..<end], as: UTF8.self)
    }
}
