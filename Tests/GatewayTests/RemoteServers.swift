import Backends
import Foundation
import Glibc
import ObjectStoreServers

/// The object-store servers the remote sync tests run against, each started once per test process on a
/// free loopback port: moto with IAM signature checking (`Tests/support/s3_moto_server.py`) and the
/// FileREST emulator (`Tests/FileRESTEmulator/filerest_emulator.py`). The real S3 stores (SeaweedFS, Ceph
/// RGW) are ``RealS3Server``s, shared with the backend tests.
///
/// The stores read their credentials from the environment, as `tiergate` does, so each server's keys are
/// exported with `setenv` once, before any store of that kind is opened. A missing `python3` or Python
/// package makes the first test that needs the server fail with the remedy; nothing is skipped.
enum RemoteServers {
    /// The repository's `Tests` directory.
    static let testsDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().path

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// An `s3://` URL of a fresh prefix in moto's test bucket.
    static func freshS3URL() async throws -> String {
        let moto = try await sharedMoto.value
        return "s3://\(moto.bucket)/sync-\(UUID().uuidString.prefix(8).lowercased())?endpoint=\(moto.endpoint)&region=\(moto.region)"
    }

    /// The requests moto has served for the share at `url` (a URL from ``freshS3URL()``), by method and
    /// kind of object: `"GET packs"`, `"PUT log"`, … (see `Tests/support/s3_moto_server.py`).
    static func s3RequestCounts(_ url: String) async throws -> [String: Int] {
        let moto = try await sharedMoto.value
        let share = url.dropFirst("s3://".count).prefix { $0 != "?" }
        let response = try await HTTPClient().execute(HTTPRequest(method: "GET", url: "\(moto.endpoint)/__requests?prefix=\(share)"))
        guard response.status == 200, let counts = try? JSONDecoder().decode([String: Int].self, from: Data(response.body)) else {
            throw Failure(description: "moto's request counter answered HTTP \(response.status)")
        }
        return counts
    }

    /// A `filerest://` URL of a fresh, existing file share on the emulator.
    static func freshFileRESTURL() async throws -> String {
        let endpoint = try await sharedEmulator.value
        let url = "filerest://\(emulatorAccount)/sync-\(UUID().uuidString.prefix(8).lowercased())/cloud?endpoint=\(endpoint)"
        try await FileRESTStore(url: url).createShare()
        return url
    }

    private struct Moto: Sendable {
        var endpoint: String
        var region: String
        var bucket: String
    }

    private static let sharedMoto = Task<Moto, any Error> {
        let line = try await ServerProcess.start(["python3", "-u", testsDirectory + "/support/s3_moto_server.py"], name: "moto (s3_moto_server.py)",
                                                 remedy: pythonRemedy)
        guard let json = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
              let endpoint = json["endpoint"] as? String, let region = json["region"] as? String, let bucket = json["bucket"] as? String,
              let keyID = json["accessKeyId"] as? String, let secret = json["secretAccessKey"] as? String else {
            throw Failure(description: "the moto helper printed '\(line)' instead of its endpoint and keys")
        }
        // The IAM user's keys, exactly as a user of `tiergate` would export them.
        setenv("AWS_ACCESS_KEY_ID", keyID, 1)
        setenv("AWS_SECRET_ACCESS_KEY", secret, 1)
        unsetenv("AWS_SESSION_TOKEN")
        return Moto(endpoint: endpoint, region: region, bucket: bucket)
    }

    private static let emulatorAccount = "tiergatesync"

    private static let pythonRemedy = "install Python 3 and run scripts/setup (it installs python3's moto[server], botocore and werkzeug)"

    private static let sharedEmulator = Task<String, any Error> {
        let key = Data((0..<64).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
        let line = try await ServerProcess.start(["python3", "-u", testsDirectory + "/FileRESTEmulator/filerest_emulator.py", "--port", "0",
                                                  "--account", emulatorAccount, "--key", key, "--exit-with-stdin"],
                                                 name: "the FileREST emulator", remedy: pythonRemedy)
        let prefix = "FileREST emulator listening on "
        guard line.hasPrefix(prefix) else { throw Failure(description: "the FileREST emulator printed '\(line)' instead of its address") }
        setenv("AZURE_STORAGE_KEY", key, 1)
        return String(line.dropFirst(prefix.count))
    }
}
