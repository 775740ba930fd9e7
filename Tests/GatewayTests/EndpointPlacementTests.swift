import Backends
import CloudShare
import Foundation
@testable import Gateway
import Testing

/// `endpoint add` refuses placements that cannot work, each with a sentence saying what to do; `serve`
/// and `sync` check a hand-edited config.json the same way before they touch a file.
@Suite struct EndpointPlacementTests {
    /// scratch/ holds state/ (the state directory), share/ (a file:// share) and data/ (a fine endpoint).
    final class Layout {
        let scratch = Scratch()
        var state: String { scratch.path + "/state" }
        var shareFolder: String { scratch.path + "/share" }
        var share: String { "file://" + shareFolder }
        var data: String { scratch.path + "/data" }

        init() async throws {
            for directory in [data, shareFolder + "/inner", scratch.path + "/outer"] {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            }
            _ = try await CloudShare.create(in: try StoreLocator.open(share), manifest: ShareManifest(chunking: try ChunkingParametersForTests.small(), packSize: 1 << 20))
        }
    }

    enum Place: String, CaseIterable {
        case root, aboveTheStateDirectory, theStateDirectory, insideTheStateDirectory, theShareFolder, insideTheShareFolder, aboveTheShareFolder
    }

    @Test(arguments: Place.allCases)
    func addingAnEndpointRefusesAPlacementThatCannotWork(_ place: Place) async throws {
        let layout = try await Layout()
        var share = layout.share
        let (path, reason, advice): (String, String, String) = switch place {
        case .root: ("/", "the root directory cannot be an endpoint", "choose a directory of its own")
        case .aboveTheStateDirectory: (layout.scratch.path, "the state directory", "keep the state directory outside every endpoint")
        case .theStateDirectory: (layout.state, "the state directory", "keep the state directory outside every endpoint")
        case .insideTheStateDirectory: (layout.state + "/db", "inside the state directory", "choose a directory outside it")
        case .theShareFolder: (layout.shareFolder, "the share folder", "keep the share folder outside every endpoint")
        case .insideTheShareFolder: (layout.shareFolder + "/inner", "inside the share folder", "choose a directory outside the share folder")
        case .aboveTheShareFolder: (layout.scratch.path + "/outer", "the share folder", "keep the share folder outside every endpoint")
        }
        if place == .aboveTheShareFolder {
            share = "file://" + layout.scratch.path + "/outer/share"
            _ = try await CloudShare.create(in: try StoreLocator.open(share), manifest: ShareManifest(chunking: try ChunkingParametersForTests.small(), packSize: 1 << 20))
        }
        let gateway = try Gateway(directory: StateDirectory(path: layout.state), serverName: "alpha")
        do {
            try await gateway.addEndpoint(path: path, shareURL: share)
            Issue.record("an endpoint at \(path) was accepted")
        } catch let error as GatewayError {
            #expect(error.description.contains(reason) && error.description.contains(advice), "\(error)")
        }
        #expect(gateway.config.endpoints.isEmpty)
        #expect(try await gateway.addEndpoint(path: layout.data, shareURL: share).path.hasSuffix("/data"), "a fine endpoint is still accepted")
    }

    @Test func aStateDirectoryInsideTheEndpointIsRefused() async throws {
        let layout = try await Layout()
        let gateway = try Gateway(directory: StateDirectory(path: layout.data + "/.state"), serverName: "alpha")
        await #expect(throws: GatewayError.self) { try await gateway.addEndpoint(path: layout.data, shareURL: layout.share) }
    }

    /// config.json is human-editable: an endpoint moved above the state directory by hand is refused by
    /// `sync` and `serve` (the real binary) before anything is uploaded.
    @Test func syncAndServeRefuseAHandEditedEndpointAboveTheStateDirectory() async throws {
        let layout = try await Layout()
        do {
            let gateway = try Gateway(directory: StateDirectory(path: layout.state), serverName: "alpha")
            try await gateway.addEndpoint(path: layout.data, shareURL: layout.share)
            gateway.close()
        }
        let configPath = layout.state + "/config.json"
        var config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: configPath))) as! [String: Any]
        var endpoints = config["endpoints"] as! [[String: Any]]
        endpoints[0]["path"] = layout.scratch.path
        config["endpoints"] = endpoints
        try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: configPath))

        for command in ["sync", "serve"] {
            let result = try TiergateProcess.run([command, "--state-dir", layout.state], logs: layout.scratch.path)
            #expect(result.status == 1, "\(command): \(result.output)")
            #expect(result.output.contains("config.json") && result.output.contains("keep the state directory outside every endpoint"), "\(command): \(result.output)")
        }
        let head = try await CloudShare.open(try StoreLocator.open(layout.share)).log.head(after: 0)
        #expect(head == 0, "something was committed from the state directory")
    }
}
