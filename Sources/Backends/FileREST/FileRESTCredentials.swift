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
            return try readPrivateFile(path, store: store).trimmingCharacters(in: .whitespacesAndNewlines)
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

    /// The contents of a secret file, which must be a regular file of the current user that nobody else can read.
    static func readPrivateFile(_ path: String, store: String) throws -> String {
        func fail(_ why: String) -> StoreError {
            StoreError(.unauthorized, store: store, operation: "open", key: "", cause: "credentials file '\(path)': \(why)")
        }
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw fail("cannot open: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        // Check the descriptor that is read, not the path, so the file cannot be swapped in between.
        var info = Glibc.stat()
        guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { throw fail("not a regular file") }
        if info.st_mode & 0o077 != 0 {
            throw fail(String(format: "mode %03o lets other users read it; run chmod 600 on it", info.st_mode & 0o777))
        }
        if info.st_uid != geteuid() { throw fail("it belongs to another user (uid \(info.st_uid))") }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw fail("cannot read: \(String(cString: strerror(errno)))")
            }
            if count == 0 { break }
            bytes += buffer[..<count]
            if bytes.count > 64 << 10 { throw fail("larger than 64 KiB") }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
