import Foundation

/// Where a cloud share lives in S3, parsed from
/// `s3://bucket/prefix?endpoint=…&region=…&style=path|virtual`.
///
/// Parameters: `endpoint` (`https://host[:port]` or `http://…`; default AWS's regional endpoint),
/// `region` (default `AWS_REGION`, `AWS_DEFAULT_REGION`, then `us-east-1`), `style` (default
/// `virtual` on AWS, `path` for a custom endpoint or a bucket name with dots), `ca` (a PEM CA bundle
/// to trust instead of the system store), `credentials` and `profile` (a credentials file and its
/// section), `payload` (`signed`, the default, or `unsigned`). Anything else is refused, so a typo
/// fails at once instead of being ignored; secrets never belong in the URL.
public struct S3Location: Sendable, Hashable {
    /// Virtual-hosted (`bucket.host/key`) or path-style (`host/bucket/key`) addressing.
    public enum Style: String, Sendable {
        /// `https://bucket.s3.region.amazonaws.com/key`
        case virtual
        /// `https://host/bucket/key`
        case path
    }

    /// The bucket.
    public var bucket: String
    /// The key prefix of the share, without leading or trailing `/`; empty for the bucket's root.
    public var prefix: String
    /// `http` or `https`.
    public var scheme: String
    /// The endpoint's host name, lower case (without the bucket for virtual style).
    public var host: String
    /// The endpoint's port, when not the scheme's default.
    public var port: Int?
    /// The signing region.
    public var region: String
    /// The addressing style.
    public var style: Style
    /// A PEM file of CAs to trust instead of the system store.
    public var caBundlePath: String?
    /// A credentials file to read instead of the environment.
    public var credentialsFile: String?
    /// The section of the credentials file.
    public var profile: String?
    /// Whether request bodies are hashed into the signature (S3 then verifies them on arrival).
    public var signsPayload: Bool

    /// Parses an `s3://` URL; throws a ``StoreError`` (`permanent`) saying what is wrong.
    public init(url: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        func fail(_ why: String) -> StoreError { StoreLocator.malformed(url, why) }
        try StoreLocator.refuseCredentials(in: url)
        guard url.lowercased().hasPrefix("s3://") else { throw fail("an S3 URL starts with s3://") }
        var rest = Substring(url.dropFirst(5))
        var parameters: [String: String] = [:]
        if let question = rest.firstIndex(of: "?") {
            for item in rest[rest.index(after: question)...].split(separator: "&") {
                let pair = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                let name = String(pair[0]).removingPercentEncodingIfValid
                guard ["endpoint", "region", "style", "ca", "credentials", "profile", "payload"].contains(name) else {
                    throw fail("unknown parameter '\(name)'; known: endpoint, region, style, ca, credentials, profile, payload")
                }
                guard parameters[name] == nil else { throw fail("parameter '\(name)' is given twice") }
                parameters[name] = pair.count > 1 ? String(pair[1]).removingPercentEncodingIfValid : ""
            }
            rest = rest[..<question]
        }
        if rest.contains("#") { throw fail("an S3 URL takes no fragment") }
        let slash = rest.firstIndex(of: "/") ?? rest.endIndex
        bucket = String(rest[..<slash])
        guard Self.isValidBucket(bucket) else {
            throw fail("'\(bucket)' is not a valid bucket name (3–63 lower-case letters, digits, '.', '-')")
        }
        var prefix = String(rest[slash...]).removingPercentEncodingIfValid
        while prefix.hasPrefix("/") { prefix.removeFirst() }
        while prefix.hasSuffix("/") { prefix.removeLast() }
        if !prefix.isEmpty {
            do {
                try ObjectKey.validate(prefix, store: StoreLocator.redacted(url), operation: "open")
            } catch let error as StoreError {
                throw fail("the prefix is not usable: \(error.cause)")
            }
        }
        self.prefix = prefix

        region = parameters["region"].flatMap { $0.isEmpty ? nil : $0 }
            ?? environment["AWS_REGION"].flatMap { $0.isEmpty ? nil : $0 }
            ?? environment["AWS_DEFAULT_REGION"].flatMap { $0.isEmpty ? nil : $0 } ?? "us-east-1"
        guard region.utf8.allSatisfy({ ($0 >= 97 && $0 <= 122) || ($0 >= 48 && $0 <= 57) || $0 == 45 }) else {
            throw fail("'\(region)' is not a region name")
        }
        if let endpoint = parameters["endpoint"], !endpoint.isEmpty {
            let withScheme = endpoint.contains("://") ? endpoint : "https://" + endpoint
            guard let components = URLComponents(string: withScheme), let scheme = components.scheme?.lowercased(),
                  scheme == "http" || scheme == "https", let host = components.host, !host.isEmpty,
                  components.path.isEmpty || components.path == "/", components.query == nil, components.user == nil else {
                throw fail("endpoint '\(endpoint)' must be http(s)://host[:port] with no path, query or user")
            }
            self.scheme = scheme
            self.host = host.lowercased().trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
            port = components.port.flatMap { $0 == (scheme == "https" ? 443 : 80) ? nil : $0 }
        } else {
            scheme = "https"
            host = "s3.\(region).amazonaws.com"
            port = nil
        }
        switch parameters["style"] {
        case nil, "":
            // Dotted bucket names do not match the TLS wildcard certificate of virtual hosts.
            style = parameters["endpoint"] == nil && !bucket.contains(".") ? .virtual : .path
        case let value?:
            guard let style = Style(rawValue: value) else { throw fail("style must be 'path' or 'virtual', not '\(value)'") }
            self.style = style
        }
        // A virtual host is `bucket.host`: a DNS name. With an IP address it is no host at all, and curl
        // would only fail later with an unrelated error.
        if style == .virtual && Self.isIPAddress(host) {
            throw fail("virtual-hosted style needs a DNS name for the endpoint, not the IP address \(host); use style=path")
        }
        caBundlePath = parameters["ca"].flatMap { $0.isEmpty ? nil : $0 }
        credentialsFile = parameters["credentials"].flatMap { $0.isEmpty ? nil : $0 }
        profile = parameters["profile"].flatMap { $0.isEmpty ? nil : $0 }
        switch parameters["payload"] {
        case nil, "", "signed": signsPayload = true
        case "unsigned": signsPayload = false
        case let value?: throw fail("payload must be 'signed' or 'unsigned', not '\(value)'")
        }
    }

    /// True for an IPv4 or IPv6 address literal (without brackets).
    static func isIPAddress(_ host: String) -> Bool {
        var address = in6_addr()
        return inet_pton(AF_INET, host, &address) == 1 || inet_pton(AF_INET6, host, &address) == 1
    }

    /// True for a name S3 accepts for new buckets.
    public static func isValidBucket(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard (3...63).contains(bytes.count) else { return false }
        let allowed = bytes.allSatisfy { ($0 >= 97 && $0 <= 122) || ($0 >= 48 && $0 <= 57) || $0 == 46 || $0 == 45 }
        let alnum: (UInt8) -> Bool = { ($0 >= 97 && $0 <= 122) || ($0 >= 48 && $0 <= 57) }
        return allowed && alnum(bytes.first!) && alnum(bytes.last!) && !name.contains("..")
    }

    /// The URL that names this share, safe to print (it never holds secrets).
    public var displayName: String {
        var text = "s3://\(bucket)" + (prefix.isEmpty ? "" : "/\(prefix)")
        text += "?endpoint=\(scheme)://\(authority)&region=\(region)&style=\(style.rawValue)"
        return text
    }

    /// `host[:port]` of the endpoint (an IPv6 address in brackets).
    var authority: String {
        let name = host.contains(":") ? "[\(host)]" : host
        return port.map { "\(name):\($0)" } ?? name
    }

    /// The `Host` header: the endpoint, with the bucket in front for virtual style.
    public var hostHeader: String { style == .virtual ? "\(bucket).\(authority)" : authority }

    /// The full S3 key of a share key: the prefix, `/`, the key.
    public func objectKey(_ key: String) -> String { prefix.isEmpty ? key : prefix + "/" + key }

    /// The share key of a full S3 key (nil when it is not under the prefix).
    public func shareKey(_ objectKey: String) -> String? {
        if prefix.isEmpty { return objectKey }
        guard objectKey.hasPrefix(prefix + "/") else { return nil }
        return String(objectKey.dropFirst(prefix.utf8.count + 1))
    }

    /// The unencoded request path of an S3 key (nil: the bucket itself).
    public func path(objectKey: String?) -> String {
        let bucketPath = style == .path ? "/" + bucket : ""
        guard let objectKey else { return style == .path ? bucketPath : "/" }
        return bucketPath + "/" + objectKey
    }

    /// The URL to send, from an encoded path and query.
    public func url(encodedPath: String, encodedQuery: String) -> String {
        "\(scheme)://\(hostHeader)\(encodedPath)" + (encodedQuery.isEmpty ? "" : "?" + encodedQuery)
    }
}
