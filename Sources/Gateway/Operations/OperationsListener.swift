import Foundation
import Hummingbird
import Logging
import ServiceLifecycle

/// The daemon's loopback listener: `/metrics` (Prometheus text format), `/` (the status page) and
/// `/status.json` (what `tiergate status --json` prints). It binds to a loopback address only: nothing
/// it serves is meant for the network, and it has no authentication.
public struct OperationsListener: Service {
    /// Where it listens.
    public let host: String
    public let port: Int
    let config: GatewayConfig
    let state: LocalState
    let networkLimit: NetworkLimit
    let logger: Logger

    /// A listener on `address` (`127.0.0.1:9464`, `[::1]:9464`, `localhost:9464`); throws a sentence
    /// when the address is malformed or not a loopback address.
    public init(address: String, gateway: Gateway, logger: Logger) throws {
        (host, port) = try Self.parse(address)
        config = gateway.config
        state = gateway.state
        networkLimit = gateway.networkLimit
        self.logger = logger
    }

    /// Splits and checks `HOST:PORT`.
    public static func parse(_ address: String) throws -> (host: String, port: Int) {
        guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]), (1...65535).contains(port) else {
            throw GatewayError("metrics address '\(address)' is not HOST:PORT with a port from 1 to 65535 (e.g. 127.0.0.1:9464)")
        }
        var host = String(address[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        let loopback = host == "localhost" || host == "::1" || (host.hasPrefix("127.") && host.split(separator: ".").count == 4
            && host.split(separator: ".").allSatisfy { UInt8($0) != nil })
        guard loopback else {
            throw GatewayError("metrics address '\(address)' is not a loopback address: the listener has no authentication, so it binds only to 127.0.0.0/8, ::1 or localhost (publish it through a reverse proxy if needed)")
        }
        return (host == "localhost" ? "127.0.0.1" : host, port)
    }

    /// Serves until the daemon shuts down. A listener that cannot bind (the port is taken) is logged as
    /// an error and the daemon carries on syncing: metrics are never a reason to stop syncing.
    public func run() async throws {
        let router = Router()
        let (config, state, networkLimit) = (config, state, networkLimit)
        router.get("metrics") { _, _ in
            DaemonMetrics.recordNetworkLimit(networkLimit.current()?.bytesPerSecond)
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                     body: .init(byteBuffer: ByteBuffer(bytes: DaemonMetrics.exposition())))
        }
        router.get("status.json") { _, _ in
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            let bytes = try encoder.encode(await Gateway.printableStatus(config: config, state: state, networkLimit: networkLimit))
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
        }
        router.get("/") { _, _ in
            let html = StatusPage.render(server: config.serverName, serverID: config.serverID,
                                         status: await Gateway.printableStatus(config: config, state: state, networkLimit: networkLimit), now: Date())
            return Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8"],
                            body: .init(byteBuffer: ByteBuffer(string: html)))
        }
        var quiet = logger
        quiet.logLevel = .warning
        let address = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        let application = Application(router: router, configuration: .init(address: .hostname(host, port: port), serverName: "tiergate"),
                                      onServerRunning: { [logger] _ in logger.info("metrics and status page on http://\(address)/") },
                                      logger: quiet)
        do {
            try await application.run()
        } catch {
            logger.error("the metrics listener on \(address) failed: \(error); syncing carries on without it")
            try? await gracefulShutdown()
        }
    }
}
