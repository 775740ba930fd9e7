import Backends

/// Stores defined once by name in config.json (`tiergate store`). Only config.json changes, so these work
/// beside a running daemon, which opens an endpoint's share at its store's new URL at its next tick.
extension StateDirectory {
    /// The named stores, by name (none when the server is not registered).
    public func stores() throws -> [String: String] {
        try loadConfig()?.stores ?? [:]
    }

    /// Defines (or redefines) the store `name` as `url` (registering the server when it is new). An
    /// endpoint whose share is `store:NAME/…` uses the new URL from its next pass; where that store holds
    /// another share, the endpoint refuses it and keeps syncing where it was.
    public func setStore(_ name: String, url: String) throws {
        guard !name.isEmpty, name.allSatisfy({ $0.isLetter || $0.isNumber || "-_.".contains($0) }) else {
            throw GatewayError("'\(name)' cannot name a store: use letters, digits, '-', '_' and '.'")
        }
        guard !url.hasPrefix(GatewayConfig.storePrefix) else {
            throw GatewayError("a store is defined by a URL, not by another store ('\(url)')")
        }
        _ = try StoreLocator.open(url)
        var config = try loadConfig() ?? GatewayConfig(serverName: Gateway.hostName())
        config.stores[name] = url
        config.resolveStores()
        try saveConfig(config)
    }

    /// Removes the store `name`; refused while an endpoint uses it.
    public func removeStore(_ name: String) throws {
        guard var config = try loadConfig(), config.stores[name] != nil else {
            throw GatewayError("no store is named '\(name)' (see `tiergate store list`)")
        }
        let reference = GatewayConfig.storePrefix + name
        if let user = config.endpoints.first(where: { $0.share == reference || $0.share.hasPrefix(reference + "/") }) {
            throw GatewayError("the store '\(name)' is used by endpoint \(user.id) at '\(user.path)' (\(user.share)); remove that endpoint first")
        }
        config.stores[name] = nil
        try saveConfig(config)
    }
}
