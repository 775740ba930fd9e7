/// Where a FileREST cloud share lives: the storage account, the Azure file share, a directory prefix in it,
/// and the endpoint that serves the account.
///
/// URL form: `filerest://<account>/<share>[/<prefix>…][?endpoint=<http(s) URL>]`. The endpoint defaults to
/// `https://<account>.file.core.windows.net`; an endpoint with a path (an emulator's
/// `http://127.0.0.1:10002/<account>`) keeps it in front of every request path.
public struct FileRESTLocation: Sendable, Hashable, CustomStringConvertible {
    /// The storage account name.
    public var account: String
    /// The Azure file share.
    public var share: String
    /// The key prefix inside the share (`a/b`), or empty for the share's root.
    public var prefix: String
    /// `scheme://host[:port][/path]`, without a trailing slash.
    public var endpoint: String

    /// A location from its parts; throws ``StoreError`` `permanent` when a part is malformed.
    public init(account: String, share: String, prefix: String = "", endpoint: String? = nil) throws {
        self.account = account
        self.share = share
        self.prefix = prefix
        self.endpoint = endpoint ?? "https://\(account).file.core.windows.net"
        while self.endpoint.hasSuffix("/") { self.endpoint.removeLast() }
        try validate()
    }

    /// The location a `filerest://` URL names.
    public init(url: String) throws {
        try StoreLocator.refuseCredentials(in: url)
        guard url.lowercased().hasPrefix("filerest://") else { throw Self.malformed(url, "it does not start with filerest://") }
        var rest = Substring(url.dropFirst("filerest://".count))
        var endpoint: String? = nil
        if let question = rest.firstIndex(of: "?") {
            for item in rest[rest.index(after: question)...].split(separator: "&") {
                let pair = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                guard pair.count == 2, pair[0] == "endpoint", let value = FileRESTPath.decode(pair[1]) else {
                    throw Self.malformed(url, "unknown query parameter '\(pair[0])'; the only one is endpoint=<URL>"
                                         + " (credentials come from the environment)")
                }
                endpoint = value
            }
            rest = rest[..<question]
        }
        let parts = rest.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count >= 2, !parts[0].isEmpty, !parts[1].isEmpty else {
            throw Self.malformed(url, "it needs an account and a share: filerest://account/share[/prefix]")
        }
        var prefixParts = parts.dropFirst(2)
        if prefixParts.last == "" { prefixParts = prefixParts.dropLast() } // a trailing slash
        var components: [String] = []
        for part in prefixParts {
            guard let component = FileRESTPath.decode(part) else { throw Self.malformed(url, "the prefix has a malformed %-escape") }
            components.append(component)
        }
        do {
            try self.init(account: String(parts[0]), share: String(parts[1]), prefix: components.joined(separator: "/"),
                          endpoint: endpoint)
        } catch let error as StoreError {
            throw Self.malformed(url, error.cause)
        }
    }

    private func validate() throws {
        let shown = description
        func fail(_ why: String) -> StoreError { Self.malformed(shown, why) }
        let lowerDigits = Set("abcdefghijklmnopqrstuvwxyz0123456789".utf8)
        guard (3...24).contains(account.utf8.count), account.utf8.allSatisfy(lowerDigits.contains) else {
            throw fail("the account name must be 3 to 24 lower-case letters and digits")
        }
        guard (3...63).contains(share.utf8.count), share.utf8.allSatisfy({ lowerDigits.contains($0) || $0 == UInt8(ascii: "-") }),
              !share.hasPrefix("-"), !share.hasSuffix("-"), !share.contains("--") else {
            throw fail("the share name must be 3 to 63 lower-case letters, digits and single hyphens")
        }
        if !prefix.isEmpty {
            do {
                try ObjectKey.validate(prefix, store: shown, operation: "open")
            } catch let error as StoreError {
                throw fail("the prefix: \(error.cause)")
            }
        }
        guard !endpointAuthority.contains("@") else {
            throw fail("the endpoint takes no user or password; set \(FileRESTCredentials.sources)")
        }
        let scheme = endpoint.prefix { $0 != ":" }.lowercased()
        guard scheme == "http" || scheme == "https", endpoint.dropFirst(scheme.count).hasPrefix("://"),
              !endpointAuthority.isEmpty, !endpoint.contains("?"), !endpoint.contains("#") else {
            throw fail("the endpoint must be an http:// or https:// URL without query")
        }
    }

    /// `host[:port]` of the endpoint.
    var endpointAuthority: Substring {
        let afterScheme = endpoint[endpoint.range(of: "://")!.upperBound...]
        return afterScheme.prefix { $0 != "/" }
    }

    /// The endpoint's path (`/account` for emulators, empty for the service), which starts every request path.
    var endpointPath: String {
        let afterScheme = endpoint[endpoint.range(of: "://")!.upperBound...]
        return String(afterScheme.drop { $0 != "/" })
    }

    /// The URL of this location, as a store names itself (holds no secrets: credentials are never in it).
    public var description: String {
        let defaultEndpoint = "https://\(account).file.core.windows.net"
        return "filerest://\(account)/\(share)" + (prefix.isEmpty ? "" : "/" + prefix)
            + (endpoint == defaultEndpoint ? "" : "?endpoint=" + endpoint)
    }

    static func malformed(_ url: String, _ why: String) -> StoreError { StoreLocator.malformed(url, why) }
}
