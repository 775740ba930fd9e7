/// Turns a cloud-share URL into the store that serves it.
///
/// `file:///absolute/path` is the embedded default. Each backend adds its scheme here, so that
/// swapping backends is a change of URL and nothing else.
public enum StoreLocator {
    /// The store for `url`; throws a ``StoreError`` with code `permanent` naming the URL and the problem.
    public static func open(_ url: String) throws -> any ObjectStore {
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

    /// `url` with the values of any secret-looking query parameters replaced by `***`.
    public static func redacted(_ url: String) -> String {
        guard let query = url.firstIndex(of: "?") else { return url }
        let parts = url[url.index(after: query)...].split(separator: "&").map { item -> String in
            let pair = item.split(separator: "=", maxSplits: 1)
            let name = pair.first.map(String.init) ?? ""
            let secret = ["sig", "secret", "key", "token", "password", "sas"].contains { name.lowercased().contains($0) }
            return secret && pair.count == 2 ? name + "=***" : String(item)
        }
        return url[...query] + parts.joined(separator: "&")
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
