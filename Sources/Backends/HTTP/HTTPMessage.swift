import Foundation
import Glibc

/// Header fields of a request or response, in order, with case-insensitive lookup.
///
/// Order and duplicates are kept because signatures (SigV4, SharedKey) depend on both.
public struct HTTPHeaders: Sendable, Sequence, ExpressibleByDictionaryLiteral {
    /// The fields as sent or received.
    public private(set) var fields: [(name: String, value: String)]

    /// Headers from `(name, value)` pairs, in order.
    public init(_ fields: [(String, String)] = []) {
        self.fields = fields.map { (name: $0.0, value: $0.1) }
    }

    /// Headers from a literal; order is the literal's order.
    public init(dictionaryLiteral elements: (String, String)...) {
        self.init(elements)
    }

    /// The first value of `name` (case-insensitive), or nil.
    public subscript(name: String) -> String? {
        let lowered = name.lowercased()
        return fields.first { $0.name.lowercased() == lowered }?.value
    }

    /// Every value of `name` (case-insensitive), in order.
    public func values(_ name: String) -> [String] {
        let lowered = name.lowercased()
        return fields.filter { $0.name.lowercased() == lowered }.map(\.value)
    }

    /// Appends a field, keeping any earlier ones with the same name.
    public mutating func add(_ name: String, _ value: String) {
        fields.append((name: name, value: value))
    }

    /// Replaces every field named `name` by one with `value`.
    public mutating func replace(_ name: String, _ value: String) {
        remove(name)
        add(name, value)
    }

    /// Removes every field named `name`.
    public mutating func remove(_ name: String) {
        let lowered = name.lowercased()
        fields.removeAll { $0.name.lowercased() == lowered }
    }

    /// True when a field named `name` exists.
    public func contains(_ name: String) -> Bool { self[name] != nil }

    public func makeIterator() -> IndexingIterator<[(name: String, value: String)]> {
        fields.makeIterator()
    }
}

/// Bytes an upload reads on demand, so a request body never has to be copied into one buffer.
///
/// `read` may be called again from offset 0 when the transfer is resent, so it must be repeatable.
/// It runs on a transfer thread, not in the Swift concurrency pool, and may block (e.g. `pread`).
public protocol HTTPBodySource: Sendable {
    /// The exact number of bytes the source yields (sent as `Content-Length`).
    var count: Int64 { get }
    /// Copies bytes starting at `offset` into `buffer`; returns how many (0 only at the end).
    func read(at offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws -> Int
}

/// The body of a request.
public enum HTTPRequestBody: Sendable {
    /// No body.
    case empty
    /// Bytes held in memory; a slice shares the array's storage, so uploading part of a large
    /// buffer copies nothing.
    case bytes(ArraySlice<UInt8>)
    /// Bytes produced on demand.
    case source(any HTTPBodySource)

    /// The body's length in bytes.
    public var count: Int64 {
        switch self {
        case .empty: 0
        case .bytes(let bytes): Int64(bytes.count)
        case .source(let source): source.count
        }
    }
}

/// Receives a response body as it arrives instead of having it collected in memory.
///
/// Both methods run on the transfer thread, in order. `accept` runs once per response received (again
/// if curl transparently resends the request), so a sink starts over from empty there.
public protocol HTTPResponseSink: AnyObject, Sendable {
    /// Called when status and headers are known; return false to have this body collected into
    /// ``HTTPResponse/body`` instead (for error responses, whose XML the caller wants to read).
    func accept(status: Int, headers: HTTPHeaders) -> Bool
    /// Called with each piece of the body, in order; throwing aborts the transfer with that error.
    func write(_ bytes: UnsafeRawBufferPointer) throws
}

/// One HTTP request.
public struct HTTPRequest: Sendable {
    /// The method (`GET`, `PUT`, `HEAD`, `POST`, `DELETE`, …).
    public var method: String
    /// The absolute `http://` or `https://` URL, already percent-encoded.
    public var url: String
    /// Header fields to send. `Host` and `Content-Length` are added by the transport when absent.
    public var headers: HTTPHeaders
    /// The body to send.
    public var body: HTTPRequestBody
    /// A limit on the whole transfer, overriding the client's ``HTTPClient/Configuration/requestTimeout``.
    public var timeout: Duration?
    /// Where the response body goes; nil collects it into ``HTTPResponse/body``.
    public var sink: (any HTTPResponseSink)?

    /// A request; the body defaults to none.
    public init(method: String, url: String, headers: HTTPHeaders = [:], body: HTTPRequestBody = .empty,
                timeout: Duration? = nil, sink: (any HTTPResponseSink)? = nil) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.timeout = timeout
        self.sink = sink
    }
}

/// A complete response.
public struct HTTPResponse: Sendable {
    /// The status code (200, 404, …).
    public var status: Int
    /// The response's header fields.
    public var headers: HTTPHeaders
    /// The body, unless a sink took it (then empty).
    public var body: [UInt8]
    /// How many body bytes arrived, whether collected or given to a sink.
    public var bodyBytesReceived: Int64
    /// True when curl sent the request more than once: a reused connection died before any answer,
    /// and curl resent the request on a new one. The first copy may have reached the server, so for a
    /// request that is not idempotent this answer may be to a repeat (a 412 after our own write).
    public var requestWasResent: Bool

    /// A response.
    public init(status: Int, headers: HTTPHeaders, body: [UInt8], bodyBytesReceived: Int64? = nil, requestWasResent: Bool = false) {
        self.status = status
        self.headers = headers
        self.body = body
        self.bodyBytesReceived = bodyBytesReceived ?? Int64(body.count)
        self.requestWasResent = requestWasResent
    }
}

extension HTTPResponse {
    /// The `Date` header (RFC 9110's IMF-fixdate, `Tue, 25 Nov 2026 17:32:42 GMT`): the server's clock
    /// when it answered; nil when absent or in another form.
    public var date: Date? { headers["Date"].flatMap(Self.parseDate) }

    /// The `Last-Modified` header, in the same form.
    public var lastModified: Date? { headers["Last-Modified"].flatMap(Self.parseDate) }

    /// An IMF-fixdate; nil in another form.
    static func parseDate(_ value: String) -> Date? {
        let fields = value.split(separator: " ")
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        guard fields.count == 6, fields[5] == "GMT", let day = Int32(fields[1]), let year = Int32(fields[3]),
              let month = months.firstIndex(of: String(fields[2])) else { return nil }
        let time = fields[4].split(separator: ":").compactMap { Int32($0) }
        guard time.count == 3 else { return nil }
        var parts = tm()
        parts.tm_year = year - 1900
        parts.tm_mon = Int32(month)
        parts.tm_mday = day
        parts.tm_hour = time[0]
        parts.tm_min = time[1]
        parts.tm_sec = time[2]
        return Date(timeIntervalSince1970: TimeInterval(timegm(&parts)))
    }
}
