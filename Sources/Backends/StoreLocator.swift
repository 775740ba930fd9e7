/// Turns a cloud-share URL into the store that serves it.
///
/// `file:///absolute/path` is the embedded default. Each backend adds its scheme here, so that
/// swapping backends is a change of URL and nothing else.
public enum StoreLocator {
    /// The store for `url` (measured: see ``MeteredStore``); throws a ``StoreError`` with code
    /// `permanent` naming the URL and the problem.
    public static func open(_ url: String) throws -> any ObjectStore {
        MeteredStore(try openUnmetered(url))
    }

    private static func openUnmetered(_ url: String) throws -> any ObjectStore {
        try refuseCredentials(in: url)
        guard let schemeEnd = url.range(of: "://") else {
            throw malformed(url, "it has no scheme; use file:///path, s3://bucket/prefix or filerest://account/share")
        }
        let scheme = url[..<schemeEnd.lowerBound].lowercased()
        let rest = String(url[schemeEnd.upperBound...])
        switch scheme {
        case "file":
            guard rest.hasPrefix("/") else {
                throw malformed(url, "a file:// URL needs an absolute path (file:///srv/share)")
            }
            guard !rest.contains("?"), !rest.contains("#") else {
                throw malformed(url, "a file:// URL takes no query or fragment")
            }
            let path = rest.removingPercentEncodingIfValid
            guard !path.split(separator: "/").contains("..") else {
                throw malformed(url, "the path contains '..'")
            }
            return LocalStore(root: path)
        case "s3":
            // Credentials come from the environment or a 0600 credentials file, never from the URL.
            return try S3Store(url: url)
        case "filerest":
            // Credentials never travel in the URL: they come from the environment (FileRESTCredentials.load).
            return try FileRESTStore(url: url)
        default:
            throw malformed(url, "unknown scheme '\(scheme)'; supported: file, s3, filerest")
        }
    }

    static func malformed(_ url: String, _ why: String) -> StoreError {
        StoreError(.permanent, store: redacted(url), operation: "open", key: "", cause: "malformed URL: \(why)")
    }

    /// `url` safe to print or log: a user/password part becomes `***`, and so do the values of
    /// secret-looking query parameters (`sig`, `token`, `key`, …), also inside a URL given as a parameter
    /// (`endpoint=https://user:pass@host`). Every URL Tiergate prints or logs goes through here.
    public static func redacted(_ url: String) -> String {
        let (base, query) = splitQuery(url)
        var shown: String
        if let authority = authorityRange(base) {
            let at = base[authority].lastIndex(of: "@")
            shown = at.map { base[..<authority.lowerBound] + "***" + base[$0...] } ?? String(base)
        } else {
            // No `scheme://`: a malformed URL; mask anything before an '@' in any segment.
            shown = base.split(separator: "/", omittingEmptySubsequences: false)
                .map { segment in segment.lastIndex(of: "@").map { "***" + segment[$0...] } ?? String(segment) }
                .joined(separator: "/")
        }
        guard let query else { return shown }
        let items = query.split(separator: "&", omittingEmptySubsequences: false).map { item -> String in
            let pair = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard pair.count == 2 else { return String(item) }
            if isSecretParameter(String(pair[0])) { return pair[0] + "=***" }
            let value = String(pair[1]).removingPercentEncodingIfValid
            return value.contains("://") && redacted(value) != value ? pair[0] + "=" + redacted(value) : String(item)
        }
        return shown + "?" + items.joined(separator: "&")
    }

    /// Refuses a URL that carries credentials: a user or password part, a secret-looking query parameter
    /// (a SAS `sig=`, a presigned `X-Amz-Signature=`, `token=`, `key=`, …), or a parameter that is itself
    /// such a URL. A URL is printed, logged and stored in `config.json`; credentials come from the
    /// environment or from a file only their owner can read. Throws ``StoreError`` `permanent` saying where
    /// they belong for the URL's scheme.
    public static func refuseCredentials(in url: String) throws {
        guard let found = credentialsPart(of: url) else { return }
        let scheme = url.range(of: "://").map { url[..<$0.lowerBound].lowercased() } ?? ""
        let instead = switch scheme {
        case "s3": "set " + S3Credentials.sources
        case "filerest": "set " + FileRESTCredentials.sources
        default: "a \(scheme.isEmpty ? "share" : scheme + "://") URL takes no credentials"
        }
        throw malformed(url, "credentials do not belong in the URL (\(found)), where they would show in output, logs and "
                        + "config.json; remove them and \(instead)")
    }

    /// Which part of `url` holds credentials, in words, or nil when none does.
    static func credentialsPart(of url: String) -> String? {
        let (base, query) = splitQuery(url)
        // Without `scheme://` (a malformed URL) any '@' before the query is taken for a user part.
        if authorityRange(base).map({ base[$0].contains("@") }) ?? base.contains("@") { return "a user or password before '@'" }
        for item in (query ?? "").split(separator: "&") {
            let pair = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = String(pair[0]).removingPercentEncodingIfValid
            if isSecretParameter(name) { return "the parameter '\(name)'" }
            if pair.count == 2 {
                let value = String(pair[1]).removingPercentEncodingIfValid
                if value.contains("://"), let inner = credentialsPart(of: value) { return "\(inner) in the parameter '\(name)'" }
            }
        }
        return nil
    }

    /// Query parameter names that carry secrets (SAS signatures, presigned-URL signatures and tokens,
    /// keys, passwords). No supported parameter matches.
    static func isSecretParameter(_ name: String) -> Bool {
        let lowered = name.lowercased()
        return ["sig", "secret", "key", "token", "password", "passwd", "sas", "auth"].contains { lowered.contains($0) }
    }

    /// `url` before its `?`, and the query after it (nil when there is none); a fragment stays in the query.
    private static func splitQuery(_ url: String) -> (base: Substring, query: Substring?) {
        guard let question = url.firstIndex(of: "?") else { return (url[...], nil) }
        return (url[..<question], url[url.index(after: question)...])
    }

    /// The authority (`user:password@host:port`) of `scheme://authority/path`, or nil without `://`.
    private static func authorityRange(_ base: Substring) -> Range<Substring.Index>? {
        guard let schemeEnd = base.range(of: "://") else { return nil }
        let end = base[schemeEnd.upperBound...].firstIndex { $0 == "/" || $0 == "#" } ?? base.endIndex
        return schemeEnd.upperBound..<end
    }

    /// The local folder of a `file://` URL, or nil for any other scheme.
    public static func localPath(of url: String) -> String? {
        guard url.lowercased().hasPrefix("file://") else { return nil }
        let path = String(url.dropFirst("file://".count)).removingPercentEncodingIfValid
        return path.hasPrefix("/") ? path : nil
    }
}

extension String {
    /// The string with %XX escapes decoded; unchanged when it has a malformed escape.
    var removingPercentEncodingIfValid: String {
        var bytes: [UInt8] = []
        var iterator = utf8.makeIterator()
        while let byte = iterator.next() {
            if byte == UInt8(ascii: "%") {
                guard let high = iterator.next(), let low = iterator.next(),
                      let value = UInt8(String(decoding: [high, low], as: UTF8.self), radix: 16) else { return self }
                bytes.append(value)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
