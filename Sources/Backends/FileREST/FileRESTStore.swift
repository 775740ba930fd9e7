import Foundation
import Glibc
import Synchronization

/// The `filerest://` backend: objects as files in an Azure file share, over the Azure Files REST API.
///
/// - A key maps to a path under the location's prefix; each component is escaped by ``FileRESTPath`` so
///   any valid key is a valid Azure Files name, and parent directories are created on demand.
/// - `put` creates a temporary file (`.tg-tmp-…`) of the final size in the key's directory, writes it with
///   Put Range calls of at most 4 MiB sent in parallel, then renames it onto the key with
///   `x-ms-file-rename-replace-if-exists: true`: a reader sees the old file or the new one, never a
///   partial one.
/// - `putIfAbsent` does the same but renames with `replace-if-exists: false`, which the service refuses
///   with 409 `ResourceAlreadyExists` when the key exists. The rename is one atomic namespace operation,
///   so of racing writers exactly one wins. (Azure Files has no conditional create; a lease cannot
///   guard a name that does not exist yet.)
/// - `list` walks the directories depth first in key byte order, so pages come out sorted and a page
///   after `startAfter` skips whole subtrees that sort before it.
/// - Each request is retried with backoff and jitter on 5xx, 408, 429, `ServerBusy` and transport
///   timeouts; authentication and authorization failures are never retried.
///
/// Azure Files names are case-insensitive: keys that differ only in case name the same file. The cloud
/// share format never produces such keys. Empty directories left by `delete` are not removed (that would
/// race with writers creating files in them); listings ignore them.
public final class FileRESTStore: ObjectStore {
    /// The FileREST API version every request names (`x-ms-version`).
    public static let serviceVersion = "2025-11-05"
    /// The largest Put Range the service accepts.
    public static let maxRangeBytes = 4 << 20

    /// The account, share, prefix and endpoint.
    public let location: FileRESTLocation
    public var displayName: String { location.description }
    private let credentials: FileRESTCredentials
    private let client: HTTPClient
    private let retry: RetryPolicy
    private let rangeConcurrency: Int
    private let listPageSize: Int
    private let prefixNames: [String]

    /// A store at `location` authorized by `credentials`.
    ///
    /// - Parameters:
    ///   - client: the HTTP client to share; by default the store makes its own.
    ///   - retry: the retry policy of each request.
    ///   - rangeConcurrency: how many Put Range requests of one `put` run at once.
    ///   - listPageSize: `maxresults` of each List Directories and Files request (at most 5000).
    public init(location: FileRESTLocation, credentials: FileRESTCredentials, client: HTTPClient? = nil,
                retry: RetryPolicy = RetryPolicy(), rangeConcurrency: Int = 8, listPageSize: Int = 5000) throws {
        precondition(rangeConcurrency > 0 && (1...5000).contains(listPageSize))
        self.location = location
        self.credentials = credentials
        self.client = try client ?? HTTPClient()
        self.retry = retry
        self.rangeConcurrency = rangeConcurrency
        self.listPageSize = listPageSize
        prefixNames = location.prefix.isEmpty ? [] : location.prefix.split(separator: "/").map { FileRESTPath.escapeName($0) }
    }

    /// A store for a `filerest://` URL, with credentials from the environment (see ``FileRESTCredentials/load``).
    public convenience init(url: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        let location = try FileRESTLocation(url: url)
        try self.init(location: location,
                      credentials: FileRESTCredentials.load(account: location.account, environment: environment,
                                                            store: location.description))
    }

    /// Creates the Azure file share itself; succeeds when it already exists. Stores never create shares on
    /// their own (a typo in a URL should fail, not make a new share), so this is an explicit step.
    public func createShare() async throws {
        try await mapping("createShare", "") {
            do {
                _ = try await perform(Call("Create Share", "PUT", [], query: [("restype", "share")]))
            } catch let failure as FileRESTFailure where failure.code == "ShareAlreadyExists" {
                // Nothing to do.
            }
        }
    }

    // MARK: ObjectStore

    public func get(_ key: String, range: Range<Int64>?) async throws -> [UInt8] {
        let names = try names(for: key, "get")
        return try await mapping("get", key) {
            guard let range else { return try await perform(Call("Get File", "GET", names)).body }
            if range.isEmpty { // no bytes wanted, but a missing file must still be notFound
                _ = try await fileProperties(names)
                return []
            }
            let lower = max(range.lowerBound, 0)
            let call = Call("Get File", "GET", names, headers: [("x-ms-range", "bytes=\(lower)-\(range.upperBound - 1)")])
            let response: HTTPResponse
            do {
                response = try await perform(call)
            } catch let failure as FileRESTFailure where failure.status == 416 {
                return [] // the file exists but the range starts at or past its end
            }
            if response.status == 200 { // the whole file: slice it here
                let count = Int64(response.body.count)
                return Array(response.body[Int(min(lower, count))..<Int(min(range.upperBound, count))])
            }
            try checkContentRange(response, lower: lower, upper: range.upperBound, call: call)
            return response.body
        }
    }

    public func head(_ key: String) async throws -> ObjectInfo {
        let names = try names(for: key, "head")
        return try await mapping("head", key) {
            ObjectInfo(key: key, size: try await fileProperties(names))
        }
    }

    public func put(_ key: String, bytes: [UInt8]) async throws {
        let names = try names(for: key, "put")
        try await mapping("put", key) { try await upload(names, bytes, replace: true) }
    }

    public func putIfAbsent(_ key: String, bytes: [UInt8]) async throws {
        let names = try names(for: key, "putIfAbsent")
        try await mapping("putIfAbsent", key) { try await upload(names, bytes, replace: false) }
    }

    public func delete(_ key: String) async throws {
        let names = try names(for: key, "delete")
        try await mapping("delete", key) {
            do {
                _ = try await perform(Call("Delete File", "DELETE", names))
            } catch let failure as FileRESTFailure where failure.status == 404 || failure.code == "ResourceTypeMismatch" {
                // Already gone (or never a file): deletes are idempotent.
            }
        }
    }

    public func list(prefix: String, startAfter: String?, limit: Int) async throws -> ListPage {
        precondition(limit > 0, "limit must be positive")
        return try await mapping("list", prefix) {
            let slash = prefix.utf8.lastIndex(of: UInt8(ascii: "/"))
            let directoryKey = slash.map { String(prefix[...$0]) } ?? ""
            let namePrefix = slash.map { String(prefix[prefix.index(after: $0)...]) } ?? prefix
            let components = directoryKey.split(separator: "/", omittingEmptySubsequences: false).dropLast()
            if components.contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }) {
                return ListPage(objects: [], isTruncated: false) // no valid key has this prefix
            }
            var walk = Walk(limit: limit, startAfter: startAfter)
            try await self.walk(prefixNames + components.map { FileRESTPath.escapeName($0) }, key: directoryKey,
                                namePrefix: namePrefix, into: &walk)
            let truncated = walk.found.count > limit
            return ListPage(objects: Array(walk.found.prefix(limit)), isTruncated: truncated)
        }
    }

    /// The temporary files of writers stopped mid-write, by a walk of the whole prefix; a temporary
    /// file's age is the time its name carries, else its Last-Modified time.
    public func removeAbandonedWrites(olderThan age: Double) async throws -> Int {
        try await mapping("removeAbandonedWrites", "") {
            let before = Date().timeIntervalSince1970 - age
            var removed = 0
            func walk(_ names: [String]) async throws {
                let entries: [FileRESTXML.Entry]
                do {
                    entries = try await listDirectory(names, serverPrefix: "")
                } catch let failure as FileRESTFailure where failure.status == 404 || failure.code == "ResourceTypeMismatch" {
                    return
                }
                for entry in entries {
                    if entry.isDirectory {
                        try await walk(names + [entry.name])
                        continue
                    }
                    let name = FileRESTPath.unescapeName(entry.name)
                    guard name.hasPrefix(LocalStore.temporaryPrefix) else { continue }
                    // `<seconds>-<uuid>`: six fields; an older name is the uuid alone.
                    let fields = name.dropFirst(LocalStore.temporaryPrefix.count).split(separator: "-")
                    var created = fields.count == 6 ? Double(fields[0]) : nil
                    if created == nil {
                        // A name without its time: the service's Last-Modified says.
                        created = try await perform(Call("Get File Properties", "HEAD", names + [entry.name])).lastModified?.timeIntervalSince1970
                    }
                    guard let created, created < before else { continue }
                    do {
                        _ = try await perform(Call("Delete File", "DELETE", names + [entry.name]))
                        removed += 1
                    } catch let failure as FileRESTFailure where failure.status == 404 {
                        // Renamed into place or removed meanwhile.
                    }
                }
            }
            try await walk(prefixNames)
            return removed
        }
    }

    /// The `Date` of a Get Share Properties request: any answer carries one, even a refusal (a clock
    /// far off is exactly what makes the service refuse a SharedKey signature).
    public func serverTime() async throws -> Date? {
        do {
            return try await client.execute(request(Call("Get Share Properties", "HEAD", [], query: [("restype", "share")]))).date
        } catch let error as HTTPError {
            throw StoreError(error.isTransient ? .transient : .permanent, store: displayName, operation: "serverTime", key: "", cause: "\(error)")
        }
    }

    // MARK: Keys and names

    /// The share path (escaped names, prefix included) of a valid key.
    private func names(for key: String, _ operation: String) throws -> [String] {
        try ObjectKey.validate(key, store: displayName, operation: operation)
        let components = key.split(separator: "/")
        if components.last!.hasPrefix(LocalStore.temporaryPrefix) {
            throw StoreError(.invalidKey, store: displayName, operation: operation, key: key,
                             cause: "names starting with '\(LocalStore.temporaryPrefix)' are reserved")
        }
        return prefixNames + components.map { FileRESTPath.escapeName($0) }
    }

    // MARK: Operations

    /// The size of the file at `names`; `notFound` for a missing file or a directory.
    private func fileProperties(_ names: [String]) async throws -> Int64 {
        let response = try await perform(Call("Get File Properties", "HEAD", names))
        guard response.headers["x-ms-type"].map({ $0.lowercased() == "file" }) ?? true,
              let length = response.headers["Content-Length"].flatMap({ Int64($0) }) else {
            throw FileRESTFailure(operation: "Get File Properties", path: sharePath(names), status: 404, code: "ResourceTypeMismatch",
                                  message: "not a file", isTransient: false)
        }
        return length
    }

    private func upload(_ names: [String], _ bytes: [UInt8], replace: Bool) async throws {
        // The name carries its time of creation, so that one left by a writer stopped mid-write can be
        // told from one in flight (``removeAbandonedWrites(olderThan:)``).
        let temporary = names.dropLast() + [LocalStore.temporaryPrefix + "\(Int(Date().timeIntervalSince1970))-" + UUID().uuidString.lowercased()]
        try await createFile(Array(temporary), size: bytes.count)
        do {
            try await putRanges(Array(temporary), bytes)
            try await rename(Array(temporary), to: names, replace: replace)
        } catch {
            // Leave nothing behind; if even this fails, listings still never show temporary files.
            _ = try? await perform(Call("Delete File", "DELETE", Array(temporary)), retrying: false)
            throw error
        }
    }

    /// Creates (or truncates) a file of `size` zero bytes, creating its parent directories when missing.
    private func createFile(_ names: [String], size: Int) async throws {
        let call = Call("Create File", "PUT", names, headers: [("x-ms-type", "file"), ("x-ms-content-length", String(size))])
        do {
            _ = try await perform(call)
        } catch let failure as FileRESTFailure where failure.code == "ParentNotFound" {
            try await createDirectories(Array(names.dropLast()))
            _ = try await perform(call)
        }
    }

    /// Creates each directory along `names` that does not exist yet.
    private func createDirectories(_ names: [String]) async throws {
        for depth in names.indices {
            do {
                _ = try await perform(Call("Create Directory", "PUT", Array(names[...depth]), query: [("restype", "directory")]))
            } catch let failure as FileRESTFailure where failure.code == "ResourceAlreadyExists" {
                // Made by an earlier write or a concurrent writer: fine.
            }
        }
    }

    /// Throws (transiently) unless a 206 answer holds exactly the requested bytes, clamped to the file's end:
    /// a proxy or a confused server must never turn into a silently short or shifted read.
    private func checkContentRange(_ response: HTTPResponse, lower: Int64, upper: Int64, call: Call) throws {
        let header = response.headers["Content-Range"] ?? ""
        let numbers = header.dropFirst("bytes ".count).split(whereSeparator: { $0 == "-" || $0 == "/" }).compactMap { Int64($0) }
        guard header.hasPrefix("bytes "), numbers.count == 3, numbers[0] == lower,
              numbers[1] == min(upper, numbers[2]) - 1, Int64(response.body.count) == numbers[1] - numbers[0] + 1 else {
            throw FileRESTFailure(operation: call.operation, path: sharePath(call.names), status: response.status,
                                  code: "InconsistentResponse",
                                  message: "Content-Range '\(header)' with \(response.body.count) bytes does not answer bytes \(lower)-\(upper - 1)",
                                  isTransient: true)
        }
    }

    /// Writes `bytes` into the file at `names` in ranges of at most 4 MiB, `rangeConcurrency` at a time.
    private func putRanges(_ names: [String], _ bytes: [UInt8]) async throws {
        let starts = Array(stride(from: 0, to: bytes.count, by: Self.maxRangeBytes))
        try await withThrowingTaskGroup(of: Void.self) { group in
            var next = 0
            func addNext() {
                let start = starts[next]
                let end = min(start + Self.maxRangeBytes, bytes.count)
                next += 1
                group.addTask {
                    let call = Call("Put Range", "PUT", names, query: [("comp", "range")],
                                    headers: [("x-ms-range", "bytes=\(start)-\(end - 1)"), ("x-ms-write", "update")],
                                    body: bytes[start..<end])
                    _ = try await self.perform(call)
                }
            }
            while next < starts.count && next < rangeConcurrency { addNext() }
            while try await group.next() != nil {
                if next < starts.count { addNext() }
            }
        }
    }

    /// Renames the file at `source` onto `target`.
    ///
    /// The rename is not idempotent, so when an attempt failed in a way that may have reached the service
    /// (its answer lost, or a 5xx), the outcome of a retry is checked against the temporary source, which
    /// only this writer knows: a missing source means an earlier attempt already renamed it.
    private func rename(_ source: [String], to target: [String], replace: Bool) async throws {
        let ambiguity = Ambiguity()
        let call = Call("Rename File", "PUT", target, query: [("comp", "rename")],
                        headers: [("x-ms-file-rename-source", url(source, query: authorizationQuery)),
                                  ("x-ms-file-rename-replace-if-exists", replace ? "true" : "false")])
        do {
            _ = try await perform(call, ambiguity: ambiguity)
        } catch let failure as FileRESTFailure where failure.code == "ResourceAlreadyExists" || failure.status == 404 {
            if ambiguity.seen {
                do {
                    _ = try await fileProperties(source)
                } catch let check as FileRESTFailure where check.status == 404 {
                    return // the source is gone: an earlier attempt renamed it
                }
            }
            if failure.code == "ResourceAlreadyExists" {
                throw FileRESTFailure(operation: failure.operation, path: failure.path, status: failure.status,
                                      code: failure.code, message: failure.message, isTransient: false, alreadyExists: true)
            }
            throw failure
        }
    }

    // MARK: Listing

    /// The state of one `list` walk: what was found so far, and where the page starts.
    private struct Walk {
        let limit: Int
        let startAfter: String?
        var found: [ObjectInfo] = []
        var isFull: Bool { found.count > limit }
    }

    /// Appends the keys under the directory `names` (whose keys start with `key`) in byte order.
    private func walk(_ names: [String], key: String, namePrefix: String, into walk: inout Walk) async throws {
        let entries: [FileRESTXML.Entry]
        do {
            entries = try await listDirectory(names, serverPrefix: namePrefix)
        } catch let failure as FileRESTFailure where failure.status == 404 || failure.code == "ResourceTypeMismatch" {
            return // the directory does not exist (or vanished): no keys under it
        }
        var children: [(sortKey: String, entry: FileRESTXML.Entry)] = []
        for entry in entries {
            let component = FileRESTPath.unescapeName(entry.name)
            guard !component.isEmpty, component.utf8.starts(with: namePrefix.utf8) else { continue }
            if !entry.isDirectory && component.hasPrefix(LocalStore.temporaryPrefix) { continue } // an upload in flight
            // A directory sorts as its name plus '/', which is where all of its keys sort.
            children.append((key + component + (entry.isDirectory ? "/" : ""), entry))
        }
        children.sort { $0.sortKey.utf8.lexicographicallyPrecedes($1.sortKey.utf8) }
        for (sortKey, entry) in children {
            if walk.isFull { return }
            if let startAfter = walk.startAfter, !startAfter.utf8.lexicographicallyPrecedes(sortKey.utf8) {
                // The entry sorts at or before startAfter: a file is skipped, and a directory is entered only
                // when startAfter lies inside it (otherwise all of its keys sort before startAfter).
                if !entry.isDirectory || !startAfter.utf8.starts(with: sortKey.utf8) { continue }
            }
            if entry.isDirectory {
                try await self.walk(names + [entry.name], key: sortKey, namePrefix: "", into: &walk)
            } else {
                walk.found.append(ObjectInfo(key: sortKey, size: entry.size))
            }
        }
    }

    /// Every entry of one directory, following the service's markers to the last page.
    private func listDirectory(_ names: [String], serverPrefix: String) async throws -> [FileRESTXML.Entry] {
        var query: [(String, String)] = [("restype", "directory"), ("comp", "list"), ("maxresults", String(listPageSize))]
        // The service matches escaped names; a trailing dot or space of a partial name may be escaped in the
        // full name, so it is left to the exact filter above.
        var trimmed = Substring(serverPrefix)
        while trimmed.last == "." || trimmed.last == " " { trimmed = trimmed.dropLast() }
        if !trimmed.isEmpty { query.append(("prefix", FileRESTPath.escapeName(trimmed, partial: true))) }
        var entries: [FileRESTXML.Entry] = []
        var marker = ""
        repeat {
            let call = Call("List Directories and Files", "GET", names, query: query + (marker.isEmpty ? [] : [("marker", marker)]))
            let response = try await perform(call)
            guard let page = FileRESTXML.listingPage(response.body) else {
                throw FileRESTFailure(operation: call.operation, path: sharePath(names), status: response.status,
                                      code: "InvalidXml", message: "the listing is not valid XML", isTransient: false)
            }
            entries += page.entries
            marker = page.nextMarker
        } while !marker.isEmpty
        return entries
    }

    // MARK: Requests

    /// One FileREST request: operation name, method, share path (escaped names), query, headers and body.
    struct Call: Sendable {
        var operation: String
        var method: String
        var names: [String]
        var query: [(String, String)]
        var headers: [(String, String)]
        var body: ArraySlice<UInt8>

        init(_ operation: String, _ method: String, _ names: [String], query: [(String, String)] = [],
             headers: [(String, String)] = [], body: ArraySlice<UInt8> = []) {
            self.operation = operation
            self.method = method
            self.names = names
            self.query = query
            self.headers = headers
            self.body = body
        }
    }

    /// The query parameters that authorize a request: the SAS, or none when requests are signed.
    private var authorizationQuery: [(String, String)] {
        if case .sas(let sas) = credentials { return sas.parameters.map { ($0.name, $0.value) } }
        return []
    }

    /// The share and path of `names`, for error messages.
    private func sharePath(_ names: [String]) -> String {
        "/" + ([location.share] + names).joined(separator: "/")
    }

    /// The encoded URL path of `names`, the endpoint's own path first.
    private func encodedPath(_ names: [String]) -> String {
        location.endpointPath + "/" + ([location.share] + names).map { FileRESTPath.encode($0) }.joined(separator: "/")
    }

    /// The full URL of `names` with `query` (decoded pairs).
    private func url(_ names: [String], query: [(String, String)]) -> String {
        let scheme = location.endpoint.prefix { $0 != ":" }
        var url = scheme + "://" + location.endpointAuthority + encodedPath(names)
        if !query.isEmpty {
            url += "?" + query.map { FileRESTPath.encode($0.0) + "=" + FileRESTPath.encode($0.1) }.joined(separator: "&")
        }
        return url
    }

    /// The HTTP request for one attempt of `call`, dated and authorized now.
    func request(_ call: Call, date: Date = Date()) -> HTTPRequest {
        var headers: [(name: String, value: String)] = [("x-ms-version", Self.serviceVersion), ("x-ms-date", Self.httpDate(date))]
        headers += call.headers.map { (name: $0.0, value: $0.1) }
        if call.method == "PUT" {
            // Sent even when zero: the service requires a length on every PUT, and curl adds none without a body.
            headers.append(("Content-Length", String(call.body.count)))
        }
        if case .sharedKey(let signer) = credentials {
            let authorization = signer.authorization(method: call.method, path: encodedPath(call.names),
                                                     query: call.query.map { (name: $0.0, value: $0.1) }, headers: headers)
            headers.append(("Authorization", authorization))
        }
        return HTTPRequest(method: call.method, url: url(call.names, query: call.query + authorizationQuery),
                           headers: HTTPHeaders(headers.map { ($0.name, $0.value) }),
                           body: call.body.isEmpty ? .empty : .bytes(call.body))
    }

    /// Sends `call`, retrying transient failures; returns a 2xx response or throws ``FileRESTFailure``.
    private func perform(_ call: Call, ambiguity: Ambiguity? = nil, retrying: Bool = true) async throws -> HTTPResponse {
        let policy = retrying ? retry : .never
        return try await policy.run(isRetryable: { ($0 as? FileRESTFailure)?.isTransient == true }) { _ in
            let response: HTTPResponse
            do {
                response = try await client.execute(request(call))
            } catch let error as HTTPError {
                if error.kind == .cancelled { throw CancellationError() }
                if error.mayHaveReachedServer { ambiguity?.mark() }
                throw FileRESTFailure(operation: call.operation, path: sharePath(call.names), status: nil, code: "\(error.kind)",
                                      message: error.message, isTransient: error.isTransient)
            }
            // curl resends a request whose reused connection died unanswered; the first copy may have acted.
            if response.requestWasResent { ambiguity?.mark() }
            if (200..<300).contains(response.status) { return response }
            if response.status >= 500 { ambiguity?.mark() }
            throw FileRESTFailure(operation: call.operation, path: sharePath(call.names), response: response)
        }
    }

    /// Runs `body`, turning FileREST failures into ``StoreError``s that name `operation` and `key`.
    private func mapping<T>(_ operation: String, _ key: String, _ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let failure as FileRESTFailure {
            throw failure.storeError(store: displayName, operation: operation, key: key)
        }
    }

    private static let weekdays = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    private static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    /// `date` in RFC 1123 form (`Tue, 25 Nov 2026 17:32:42 GMT`), independent of the process locale.
    static func httpDate(_ date: Date) -> String {
        var seconds = time_t(date.timeIntervalSince1970.rounded(.down))
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(weekdays[Int(parts.tm_wday)]), \(two(parts.tm_mday)) \(months[Int(parts.tm_mon)]) \(parts.tm_year + 1900) "
            + "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)) GMT"
    }
}

/// Whether some attempt of a non-idempotent request may have taken effect without its answer arriving.
private final class Ambiguity: Sendable {
    private let flag = Atomic<Bool>(false)
    func mark() { flag.store(true, ordering: .relaxed) }
    var seen: Bool { flag.load(ordering: .relaxed) }
}

/// A FileREST request that failed: the operation, the share path, and the service's status and error code
/// (or the transport's failure).
struct FileRESTFailure: Error, CustomStringConvertible {
    var operation: String
    var path: String
    /// The HTTP status, or nil when no response arrived.
    var status: Int?
    /// The service's error code (`x-ms-error-code`), or the transport failure's kind.
    var code: String
    var message: String
    var isTransient: Bool
    /// True for a putIfAbsent that lost.
    var alreadyExists = false

    init(operation: String, path: String, status: Int?, code: String, message: String, isTransient: Bool, alreadyExists: Bool = false) {
        self.operation = operation
        self.path = path
        self.status = status
        self.code = code
        self.message = message
        self.isTransient = isTransient
        self.alreadyExists = alreadyExists
    }

    /// Codes the service uses for overload and internal trouble, which pass.
    static let transientCodes: Set<String> = ["ServerBusy", "InternalError", "OperationTimedOut"]

    init(operation: String, path: String, response: HTTPResponse) {
        let body = FileRESTXML.error(response.body)
        let code = response.headers["x-ms-error-code"] ?? body?.code ?? "HTTP\(response.status)"
        let message = (body?.message ?? "").split(separator: "\n").first.map(String.init) ?? ""
        let status = response.status
        // Authentication and authorization failures never pass with time, so they are never retried.
        let transient = status != 401 && status != 403
            && (status >= 500 || status == 408 || status == 429 || Self.transientCodes.contains(code))
        self.init(operation: operation, path: path, status: status, code: code, message: message, isTransient: transient)
    }

    var description: String {
        "\(operation) \(path): " + (status.map { "HTTP \($0) \(code)" } ?? code) + (message.isEmpty ? "" : " (\(message))")
    }

    func storeError(store: String, operation storeOperation: String, key: String) -> StoreError {
        let kind: StoreError.Code
        var cause = description
        if alreadyExists {
            kind = .alreadyExists
        } else if status == 401 || status == 403 {
            kind = .unauthorized
            cause += " (check the account key or SAS token, its permissions and expiry, and the clock)"
        } else if isTransient {
            kind = .transient
        } else if (storeOperation == "get" || storeOperation == "head")
                    && ((status == 404 && code != "ShareNotFound") || code == "ResourceTypeMismatch") {
            // A directory where a key's file would be is, for reading, no object at all. (Writes that meet a
            // 404, such as a file where a parent directory should be, are permanent failures.)
            kind = .notFound
        } else {
            kind = .permanent
        }
        return StoreError(kind, store: store, operation: storeOperation, key: key, cause: cause)
    }
}
