import Foundation
import Glibc

/// How a FileREST store authorizes its requests: the account key (SharedKey) or a shared access signature.
public enum FileRESTCredentials: Sendable, CustomStringConvertible {
    /// Sign every request with the account key.
    case sharedKey(SharedKeySigner)
    /// Append a SAS to every request.
    case sas(SharedAccessSignature)

    public var description: String {
        switch self {
        case .sharedKey(let signer): "shared key for \(signer.account)"
        case .sas(let sas): sas.description
        }
    }

    /// Where credentials are looked for, for error messages (never their values).
    public static let sources = "AZURE_STORAGE_KEY or AZURE_STORAGE_SAS_TOKEN in the environment, or a file named by "
        + "AZURE_STORAGE_KEY_FILE or AZURE_STORAGE_SAS_TOKEN_FILE (mode 0600)"

    /// Credentials for `account` from the environment: the key (base64) or a SAS token, given directly or in a
    /// file only its owner can read. Throws ``StoreError`` `unauthorized` naming what is missing or wrong.
    public static func load(account: String, environment: [String: String] = ProcessInfo.processInfo.environment,
                            store: String) throws -> FileRESTCredentials {
        func fail(_ why: String) -> StoreError {
            StoreError(.unauthorized, store: store, operation: "open", key: "", cause: why)
        }
        func value(_ name: String) throws -> String? {
            if let direct = environment[name], !direct.isEmpty { return direct }
            guard let path = environment[name + "_FILE"], !path.isEmpty else { return nil }
            return try SecretFile.read(path, store: store, limit: 64 << 10).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        if let key = try value("AZURE_STORAGE_KEY") {
            guard let signer = SharedKeySigner(account: account, base64Key: key) else {
                throw fail("the account key in AZURE_STORAGE_KEY is not base64")
            }
            return .sharedKey(signer)
        }
        if let token = try value("AZURE_STORAGE_SAS_TOKEN") {
            guard let sas = SharedAccessSignature(token: token) else {
                throw fail("AZURE_STORAGE_SAS_TOKEN is not a SAS token (a query string with sig=…)")
            }
            return .sas(sas)
        }
        throw fail("no FileREST credentials found; set \(sources)")
    }
}
