import Foundation
import Glibc

/// An AWS access key: id, secret, and an optional session token for temporary credentials.
///
/// The secret and the token never leave this value except into a signature: `description`,
/// `debugDescription` and reflection show only the key id, so printing, logging or `dump`ing
/// credentials (or a store holding them) cannot leak them.
public struct S3Credentials: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// The access key id (`AKIA…`); not a secret, it names the key.
    public var accessKeyId: String
    /// The secret access key.
    let secretAccessKey: String
    /// The session token of temporary (STS) credentials.
    let sessionToken: String?

    /// Credentials from their parts.
    public init(accessKeyId: String, secretAccessKey: String, sessionToken: String? = nil) {
        self.accessKeyId = accessKeyId
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken.flatMap { $0.isEmpty ? nil : $0 }
    }

    /// True when these are temporary credentials with a session token.
    public var hasSessionToken: Bool { sessionToken != nil }

    public var description: String {
        "S3Credentials(accessKeyId: \(accessKeyId), secret: <redacted>\(sessionToken == nil ? "" : ", session token: <redacted>"))"
    }

    public var debugDescription: String { description }

    public var customMirror: Mirror { Mirror(self, children: ["accessKeyId": accessKeyId], displayStyle: .struct) }

    /// Where credentials were looked for, for error messages (never their values).
    public static let sources = "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY in the environment, or a credentials file (AWS_SHARED_CREDENTIALS_FILE, default ~/.aws/credentials, mode 0600)"

    /// Credentials from the environment, else from the shared credentials file.
    ///
    /// Environment: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, optional `AWS_SESSION_TOKEN`.
    /// File: `file`, else `AWS_SHARED_CREDENTIALS_FILE`, else `~/.aws/credentials`, section `profile`
    /// (else `AWS_PROFILE`, else `default`). A file that group or others may read or write is refused,
    /// as is one owned by another user. Throws ``StoreError`` `unauthorized` naming what is missing.
    public static func load(environment: [String: String] = ProcessInfo.processInfo.environment,
                            file: String? = nil, profile: String? = nil, store: String) throws -> S3Credentials {
        if file == nil, let id = environment["AWS_ACCESS_KEY_ID"], !id.isEmpty {
            guard let secret = environment["AWS_SECRET_ACCESS_KEY"], !secret.isEmpty else {
                throw StoreError(.unauthorized, store: store, operation: "open", key: "",
                                 cause: "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not")
            }
            return S3Credentials(accessKeyId: id, secretAccessKey: secret, sessionToken: environment["AWS_SESSION_TOKEN"])
        }
        let explicit = file ?? environment["AWS_SHARED_CREDENTIALS_FILE"]
        let path = explicit ?? (environment["HOME"].map { $0 + "/.aws/credentials" } ?? "")
        guard !path.isEmpty, access(path, F_OK) == 0 else {
            throw StoreError(.unauthorized, store: store, operation: "open", key: "",
                             cause: "no S3 credentials found; set \(sources)"
                                + (explicit.map { " (the credentials file '\($0)' does not exist)" } ?? ""))
        }
        return try fromFile(path, profile: profile ?? environment["AWS_PROFILE"] ?? "default", store: store)
    }

    /// Credentials from one profile of an AWS credentials file, which must be private to its owner.
    public static func fromFile(_ path: String, profile: String, store: String) throws -> S3Credentials {
        func fail(_ why: String) -> StoreError {
            StoreError(.unauthorized, store: store, operation: "open", key: "", cause: "credentials file '\(path)': \(why)")
        }
        let text = try SecretFile.read(path, store: store, limit: 1 << 20)
        var section: String? = nil
        var values: [String: String] = [:]
        for rawLine in text.split(whereSeparator: \.isNewline) {
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("[") && line.hasSuffix("]") {
                section = line.dropFirst().dropLast().trimmingCharacters(in: .whitespaces)
                continue
            }
            guard section == profile, let equals = line.firstIndex(of: "=") else { continue }
            values[line[..<equals].trimmingCharacters(in: .whitespaces).lowercased()] =
                line[line.index(after: equals)...].trimmingCharacters(in: .whitespaces)
        }
        guard let id = values["aws_access_key_id"], !id.isEmpty,
              let secret = values["aws_secret_access_key"], !secret.isEmpty else {
            throw fail("profile '\(profile)' has no aws_access_key_id and aws_secret_access_key")
        }
        return S3Credentials(accessKeyId: id, secretAccessKey: secret, sessionToken: values["aws_session_token"])
    }
}
