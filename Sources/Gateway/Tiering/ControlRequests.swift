import Foundation
import Glibc

/// `tier` and `recall` requests from the CLI to a running daemon, which holds the database: a request
/// is a JSON file in `<state dir>/requests/`, the daemon answers with a `.done` file beside it.
public enum ControlRequests {
    /// One request.
    public struct Request: Codable, Sendable {
        /// `tier` or `recall`.
        public var operation: String
        /// Absolute path inside an endpoint.
        public var path: String
        /// The request's file name (without extension).
        public var id: String
    }

    static func folder(_ directory: StateDirectory) -> String { directory.path + "/requests" }

    /// Requests waiting for an answer.
    static func pending(in directory: StateDirectory) -> [Request] {
        let folder = folder(directory)
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder) else { return [] }
        return names.filter { $0.hasSuffix(".request") }.sorted().compactMap { name in
            guard let data = FileManager.default.contents(atPath: folder + "/" + name) else { return nil }
            return try? JSONDecoder().decode(Request.self, from: data)
        }
    }

    /// Writes the answer and removes the request.
    static func answer(_ request: Request, with result: Gateway.TieringResult, in directory: StateDirectory) {
        let folder = folder(directory)
        if let data = try? JSONEncoder().encode(result) {
            try? data.write(to: URL(fileURLWithPath: folder + "/" + request.id + ".tmp"))
            rename(folder + "/" + request.id + ".tmp", folder + "/" + request.id + ".done")
        }
        unlink(folder + "/" + request.id + ".request")
    }

    /// Queues a request and waits for the daemon's answer (up to `timeout` seconds).
    public static func submit(_ operation: String, path: String, to directory: StateDirectory, timeout: Double = 3600) throws -> Gateway.TieringResult {
        var resolved = path
        if let real = realpath(path, nil) {
            resolved = String(cString: real)
            free(real)
        }
        let folder = folder(directory)
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let request = Request(operation: operation, path: resolved, id: "\(Int(Date().timeIntervalSince1970 * 1000))-\(UUID().uuidString.prefix(8))")
        let temporary = folder + "/" + request.id + ".tmp-request"
        try JSONEncoder().encode(request).write(to: URL(fileURLWithPath: temporary))
        rename(temporary, folder + "/" + request.id + ".request")
        let deadline = Date().addingTimeInterval(timeout)
        let answer = folder + "/" + request.id + ".done"
        while Date() < deadline {
            if let data = FileManager.default.contents(atPath: answer) {
                unlink(answer)
                return try JSONDecoder().decode(Gateway.TieringResult.self, from: data)
            }
            usleep(50_000)
        }
        unlink(folder + "/" + request.id + ".request")
        throw GatewayError("the daemon did not answer the \(operation) request for '\(path)' within \(Int(timeout)) s")
    }
}
