import Backends
import CloudShare
import FUSE
import Foundation

extension Gateway {
    /// Mounts `endpoint` at `mountpoint` through FUSE: full files pass through, stubs recall on read,
    /// writes land in the endpoint. A stale mount left by a crashed daemon is detached first.
    public func mount(_ endpoint: EndpointConfig, at mountpoint: String) async throws -> MountSession {
        try await Self.mount(endpoint, at: mountpoint, state: state)
    }

    static func mount(_ endpoint: EndpointConfig, at mountpoint: String, state: LocalState, recaller: RecallEngine? = nil) async throws -> MountSession {
        do {
            _ = try MountPoint.recoverIfStale(mountpoint)
        } catch {
            throw GatewayError("cannot recover the stale mount at '\(mountpoint)': \(error)")
        }
        let engine: RecallEngine
        if let recaller {
            engine = recaller
        } else {
            engine = RecallEngine(share: try await CloudShare.open(StoreLocator.open(endpoint.shareURL)), state: state, endpoint: endpoint)
        }
        let hooks = MountRecallHooks(endpoint: endpoint, state: state, recaller: engine)
        let core: PassthroughCore
        do {
            core = try PassthroughCore(endpoint: endpoint.path, hooks: hooks)
        } catch {
            throw GatewayError("cannot serve endpoint '\(endpoint.path)' through FUSE: \(error)")
        }
        do {
            return try MountSession.mount(core, at: mountpoint)
        } catch {
            throw GatewayError("cannot mount endpoint \(endpoint.id) at '\(mountpoint)': \(error)")
        }
    }

    /// Records (or clears) where `tiergate serve` mounts an endpoint.
    public func setMountPoint(_ selector: String, _ mountpoint: String?) throws -> EndpointConfig {
        var endpoint = try endpoint(selector)
        endpoint.mountPoint = mountpoint
        if let index = config.endpoints.firstIndex(where: { $0.id == endpoint.id }) {
            config.endpoints[index] = endpoint
            try directory.saveConfig(config)
        }
        return endpoint
    }
}
