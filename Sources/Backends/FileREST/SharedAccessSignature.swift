import Foundation

/// A shared access signature (SAS): query parameters that authorize FileREST requests without the account key.
///
/// A store given a SAS appends its parameters to every request and sends no `Authorization` header.
/// The signature (`sig`) is a secret: `description` shows the other parameters only.
public struct SharedAccessSignature: Sendable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// The token's parameters, decoded, in the order they appear.
    let parameters: [(name: String, value: String)]
    /// What was signed, when this value generated the token (for tests; empty for parsed tokens).
    public let stringToSign: String

    /// A SAS from its token as the portal, the CLI or the SDKs print it (`sv=…&sig=…`, a leading `?` allowed).
    /// Nil when it is not a query string or has no `sig`.
    public init?(token: String) {
        var text = Substring(token.trimmingCharacters(in: .whitespacesAndNewlines))
        if text.hasPrefix("?") { text = text.dropFirst() }
        var parameters: [(name: String, value: String)] = []
        for item in text.split(separator: "&") where !item.isEmpty {
            let pair = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let name = String(pair[0]).removingPercentEncoding, !name.isEmpty,
                  let value = (pair.count == 2 ? String(pair[1]) : "").removingPercentEncoding else { return nil }
            parameters.append((name: name, value: value))
        }
        guard parameters.contains(where: { $0.name == "sig" && !$0.value.isEmpty }) else { return nil }
        self.init(parameters: parameters, stringToSign: "")
    }

    init(parameters: [(name: String, value: String)], stringToSign: String) {
        self.parameters = parameters
        self.stringToSign = stringToSign
    }

    /// The value of parameter `name`, if present.
    public subscript(name: String) -> String? {
        parameters.first { $0.name == name }?.value
    }

    /// The token as a query string, values encoded the way the Azure SDKs encode them.
    public var token: String {
        parameters.map { $0.name + "=" + FileRESTPath.encode($0.value, keeping: "/") }.joined(separator: "&")
    }

    public var description: String {
        "SharedAccessSignature(" + parameters.filter { $0.name != "sig" }.map { "\($0.name)=\($0.value)" }.joined(separator: "&")
            + "&sig=<redacted>)"
    }

    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: ["parameters": description], displayStyle: .struct) }
}

/// The validity window and restrictions every SAS carries.
public struct SASConstraints: Sendable {
    /// Permission letters, in the order the service documents (`rcwdl` for shares, `rwdlc` for accounts).
    public var permissions: String
    /// When the SAS stops working, ISO 8601 UTC (`2030-01-01T00:00:00Z`).
    public var expiry: String
    /// When it starts working; nil means at once.
    public var start: String? = nil
    /// An IP address or range it is limited to.
    public var ip: String? = nil
    /// `https` or `https,http`; nil allows both.
    public var `protocol`: String? = nil
    /// The storage service version the signature follows.
    public var version: String = FileRESTStore.serviceVersion

    /// Constraints with the required parts.
    public init(permissions: String, expiry: String, start: String? = nil, ip: String? = nil,
                protocol: String? = nil, version: String = FileRESTStore.serviceVersion) {
        self.permissions = permissions
        self.expiry = expiry
        self.start = start
        self.ip = ip
        self.protocol = `protocol`
        self.version = version
    }
}

extension SharedKeySigner {
    /// Versions from this one on sign the encryption scope (`ses`) in an account SAS.
    static let encryptionScopeVersion = "2020-12-06"

    /// An account SAS for the file service: `resourceTypes` is any of `s` (service), `c` (share), `o` (object).
    public func accountSAS(_ constraints: SASConstraints, resourceTypes: String, services: String = "f") -> SharedAccessSignature {
        var fields = [account, constraints.permissions, services, resourceTypes, constraints.start ?? "", constraints.expiry,
                      constraints.ip ?? "", constraints.protocol ?? "", constraints.version]
        if constraints.version >= Self.encryptionScopeVersion { fields.append("") } // no encryption scope
        let stringToSign = fields.joined(separator: "\n") + "\n"
        var parameters = Self.baseParameters(constraints)
        parameters += [(name: "ss", value: services), (name: "srt", value: resourceTypes)]
        parameters.append((name: "sig", value: signature(of: stringToSign)))
        return SharedAccessSignature(parameters: parameters, stringToSign: stringToSign)
    }

    /// A service SAS for a whole share.
    public func shareSAS(share: String, _ constraints: SASConstraints, policyId: String? = nil) -> SharedAccessSignature {
        serviceSAS(resource: "s", path: "/" + share, constraints, policyId: policyId)
    }

    /// A service SAS for one file; `path` is the file's path in the share (`dir/sub/file`).
    public func fileSAS(share: String, path: String, _ constraints: SASConstraints, policyId: String? = nil) -> SharedAccessSignature {
        serviceSAS(resource: "f", path: "/" + share + "/" + path, constraints, policyId: policyId)
    }

    private func serviceSAS(resource: String, path: String, _ constraints: SASConstraints, policyId: String?) -> SharedAccessSignature {
        // The five response-header overrides (rscc, rscd, rsce, rscl, rsct) are signed too; Tiergate sets none.
        let fields = [constraints.permissions, constraints.start ?? "", constraints.expiry, "/file/" + account + path,
                      policyId ?? "", constraints.ip ?? "", constraints.protocol ?? "", constraints.version, "", "", "", "", ""]
        let stringToSign = fields.joined(separator: "\n")
        var parameters = Self.baseParameters(constraints)
        if let policyId, !policyId.isEmpty { parameters.append((name: "si", value: policyId)) }
        parameters.append((name: "sr", value: resource))
        parameters.append((name: "sig", value: signature(of: stringToSign)))
        return SharedAccessSignature(parameters: parameters, stringToSign: stringToSign)
    }

    /// The parameters every SAS starts with, in the order the Azure SDKs write them.
    private static func baseParameters(_ constraints: SASConstraints) -> [(name: String, value: String)] {
        let candidates: [(String, String?)] = [("st", constraints.start), ("se", constraints.expiry),
                                               ("sp", constraints.permissions), ("sip", constraints.ip),
                                               ("spr", constraints.protocol), ("sv", constraints.version)]
        return candidates.compactMap { name, value in
            guard let value, !value.isEmpty else { return nil }
            return (name: name, value: value)
        }
    }
}
