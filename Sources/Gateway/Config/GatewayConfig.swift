import Backends
import Foundation
import Glibc
import Synchronization

/// How a new endpoint's existing local files meet a non-empty share on its first sync.
public enum InitialUploadMode: String, Codable, Sendable, CaseIterable {
    /// Local and cloud items are merged; the same path with different content becomes a conflict.
    case merge
    /// The local tree is the truth: cloud items missing locally are deleted, differing ones overwritten.
    case authoritative
}

/// One server endpoint: a local directory kept in sync with a cloud share.
public struct EndpointConfig: Codable, Sendable, Equatable {
    /// The endpoint's id on this server (the key prefix of its local state).
    public var id: UInt32
    /// The absolute, canonical path of the endpoint's root directory.
    public var path: String
    /// The cloud share: its URL, or `store:NAME/prefix` for a prefix in a store defined by name (see
    /// ``GatewayConfig/stores``; ``GatewayConfig/shareURL(_:)`` resolves it).
    public var share: String {
        didSet { resolvedShareURL = nil }
    }
    /// The id of the share the endpoint syncs with (`share.json`'s `shareID`): a store holding another
    /// share is refused. Nil only in configurations written before it was recorded (taken at next use).
    public var shareID: String?
    /// How the first sync treats existing local files.
    public var initialUpload: InitialUploadMode
    /// Cloud tiering settings; nil when tiering is off for this endpoint.
    public var tiering: TieringConfig?
    /// Where `tiergate serve` mounts this endpoint through FUSE, if anywhere.
    public var mountPoint: String?
    /// The URL `share` stands for, resolved from the named stores when the configuration is loaded.
    var resolvedShareURL: String?

    /// The share's URL: `share`, or the prefix of the named store it refers to. Everything that opens
    /// the share uses this.
    public var shareURL: String { resolvedShareURL ?? share }

    private enum CodingKeys: String, CodingKey {
        case id, path, share, shareID, initialUpload, tiering, mountPoint
    }

    /// An endpoint.
    public init(id: UInt32, path: String, share: String, shareID: String? = nil, initialUpload: InitialUploadMode,
                tiering: TieringConfig? = nil, mountPoint: String? = nil) {
        self.id = id
        self.path = path
        self.share = share
        self.shareID = shareID
        self.initialUpload = initialUpload
        self.tiering = tiering
        self.mountPoint = mountPoint
    }
}

/// The human-editable configuration of a registered server: `<state dir>/config.json`.
public struct GatewayConfig: Codable, Sendable, Equatable {
    /// The registered server's stable id.
    public var serverID: String
    /// The server's name, used in conflict file names.
    public var serverName: String
    /// The server endpoints.
    public var endpoints: [EndpointConfig]
    /// The id the next endpoint gets.
    public var nextEndpointID: UInt32
    /// The loopback address (`127.0.0.1:9464`) where `serve` offers Prometheus metrics and the status
    /// page; nil: none (unless `serve --metrics` names one).
    public var metrics: String?
    /// When and how much the server's transfers are limited (empty: never).
    public var networkLimits: NetworkLimitSchedule
    /// Stores defined once by name (`tiergate store set NAME URL`), by name: an endpoint whose share is
    /// `store:NAME/prefix` uses that prefix of the store, so pointing every share of a store elsewhere is
    /// one edit, which a running daemon applies at its next pass.
    public var stores: [String: String] = [:]
    /// When `serve` runs the garbage collector of its shares (nil: every 6 hours; see ``CollectionSchedule``).
    public var gc: CollectionSchedule?

    /// A new configuration for a server called `name`.
    public init(serverName: String) {
        serverID = UUID().uuidString.lowercased()
        self.serverName = serverName
        endpoints = []
        nextEndpointID = 1
        networkLimits = NetworkLimitSchedule()
    }

    private enum CodingKeys: String, CodingKey {
        case serverID, serverName, endpoints, nextEndpointID, metrics, networkLimits, stores, gc
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        serverID = try container.decode(String.self, forKey: .serverID)
        serverName = try container.decode(String.self, forKey: .serverName)
        endpoints = try container.decode([EndpointConfig].self, forKey: .endpoints)
        nextEndpointID = try container.decode(UInt32.self, forKey: .nextEndpointID)
        metrics = try container.decodeIfPresent(String.self, forKey: .metrics)
        // Configurations written before the schedule existed have none: no limit.
        networkLimits = try container.decodeIfPresent(NetworkLimitSchedule.self, forKey: .networkLimits) ?? NetworkLimitSchedule()
        stores = try container.decodeIfPresent([String: String].self, forKey: .stores) ?? [:]
        gc = try container.decodeIfPresent(CollectionSchedule.self, forKey: .gc)
        resolveStores()
    }

    /// Resolves every endpoint's share through the named stores (one that names an undefined store keeps
    /// its reference, which ``Gateway/checkConfiguration()`` reports).
    public mutating func resolveStores() {
        for index in endpoints.indices {
            endpoints[index].resolvedShareURL = try? shareURL(endpoints[index].share)
        }
    }

    /// The prefix that names a store in an endpoint's share.
    public static let storePrefix = "store:"

    /// The URL a share reference (a URL, or `store:NAME/prefix`) stands for.
    public func shareURL(_ reference: String) throws -> String {
        guard reference.hasPrefix(Self.storePrefix) else { return reference }
        let rest = reference.dropFirst(Self.storePrefix.count)
        let name = String(rest.prefix { $0 != "/" })
        let prefix = rest.dropFirst(name.count).drop { $0 == "/" }
        guard let url = stores[name] else {
            throw GatewayError("the share '\(reference)' names the store '\(name)', which is not defined (define it with `tiergate store set \(name) URL`)")
        }
        guard !prefix.isEmpty else { return url }
        let query = url.firstIndex(of: "?")
        var base = String(query.map { url[..<$0] } ?? url[...])
        while base.hasSuffix("/") && !base.hasSuffix("://") { base.removeLast() }
        return base + "/" + prefix + (query.map { String(url[$0...]) } ?? "")
    }
}

/// Where a registered server keeps its configuration and database.
public struct StateDirectory: Sendable {
    /// The directory.
    public let path: String

    /// The state directory at `path`.
    public init(path: String) {
        var path = path
        while path.count > 1 && path.hasSuffix("/") { path.removeLast() }
        self.path = path
    }

    /// `$TIERGATE_STATE_DIR`, else `/var/lib/tiergate` for root, else `~/.local/state/tiergate`.
    public static var standard: StateDirectory {
        if let path = ProcessInfo.processInfo.environment["TIERGATE_STATE_DIR"], !path.isEmpty { return StateDirectory(path: path) }
        if geteuid() == 0 { return StateDirectory(path: "/var/lib/tiergate") }
        return StateDirectory(path: NSHomeDirectory() + "/.local/state/tiergate")
    }

    var configPath: String { path + "/config.json" }
    var databasePath: String { path + "/db" }

    /// The configuration, or nil when the server is not registered yet.
    public func loadConfig() throws -> GatewayConfig? {
        guard FileManager.default.fileExists(atPath: configPath) else { return nil }
        let data = try Data(contentsOf: URL(fileURLWithPath: configPath))
        do {
            return try JSONDecoder().decode(GatewayConfig.self, from: data)
        } catch {
            throw GatewayError("\(configPath) is not a valid configuration: \(error)")
        }
    }

    /// Writes the configuration atomically (temporary file, fsync, rename).
    public func saveConfig(_ config: GatewayConfig) throws {
        try Posix.makeDirectories(path, mode: 0o700)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let bytes = Array(try encoder.encode(config)) + [10]
        let temporary = configPath + ".tmp"
        let fd = try Posix.open(temporary, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        defer { close(fd) }
        try bytes.withUnsafeBytes { try Posix.writeAll(fd, $0, path: temporary) }
        try Posix.fsync(fd, path: temporary)
        try Posix.call("rename", path: configPath) { rename(temporary, configPath) }
        try Posix.fsyncDirectory(path)
    }
}

/// config.json as it is now, for a running daemon: read again only when the file's identity, size or
/// mtime changed. A file that cannot be read or decoded (an edit in progress) leaves the last one read
/// in force (nil before any).
final class ConfigFile: Sendable {
    let path: String
    private let cache = Mutex<(stamp: [Int64], config: GatewayConfig?)>(([], nil))

    init(path: String) { self.path = path }

    func current() -> GatewayConfig? {
        var info = stat()
        guard stat(path, &info) == 0 else { return cache.withLock { $0.config } }
        let stamp = [Int64(info.st_ino), Int64(info.st_size), Int64(info.st_mtim.tv_sec), Int64(info.st_mtim.tv_nsec)]
        if let cached = cache.withLock({ $0.stamp == stamp ? $0.config : nil }) { return cached }
        guard let data = FileManager.default.contents(atPath: path),
              let config = try? JSONDecoder().decode(GatewayConfig.self, from: data) else { return cache.withLock { $0.config } }
        cache.withLock { $0 = (stamp, config) }
        return config
    }
}

/// An error in using the gateway: bad arguments, configuration, state. The message names the item.
public struct GatewayError: Error, CustomStringConvertible, Sendable {
    /// The sentence describing the problem.
    public var description: String
    /// An error with a message.
    public init(_ description: String) { self.description = description }
}
