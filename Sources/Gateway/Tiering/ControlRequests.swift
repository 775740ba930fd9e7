import Foundation
import Glibc
import Synchronization

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

    /// Request folders last listed empty, with their identity and mtime then.
    private static let emptyFolders = Mutex<[String: [Int64]]>([:])

    /// Where a running `tiergate serve` records its process id, so the CLI asks only a daemon that exists.
    static func daemonFile(_ directory: StateDirectory) -> String { directory.path + "/serve.pid" }

    /// Records this process as the daemon that answers requests (called by `serve` at start).
    static func announceDaemon(in directory: StateDirectory) {
        try? Data("\(getpid())\n".utf8).write(to: URL(fileURLWithPath: daemonFile(directory)), options: .atomic)
    }

    /// Removes the record (called by `serve` when it stops).
    static func withdrawDaemon(in directory: StateDirectory) {
        unlink(daemonFile(directory))
    }

    /// Whether a daemon (`tiergate serve`) is running for this state directory: requests then go to it,
    /// even while its worker is still starting and has not opened the database yet.
    public static func daemonIsRunning(in directory: StateDirectory) -> Bool {
        runningDaemon(in: directory) != nil
    }

    /// The process id of the running daemon, if one is running.
    static func runningDaemon(in directory: StateDirectory) -> pid_t? {
        guard let text = try? String(contentsOfFile: daemonFile(directory), encoding: .utf8),
              let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 0 else { return nil }
        return kill(pid, 0) == 0 || errno == EPERM ? pid : nil
    }

    /// Requests waiting for an answer.
    static func pending(in directory: StateDirectory) -> [Request] {
        let folder = folder(directory)
        // Every endpoint's service asks several times a second: the folder is listed only when its
        // mtime moved since a listing that found nothing (a new request is a new name in it).
        var info = stat()
        guard stat(folder, &info) == 0 else { return [] }
        let stamp = [Int64(info.st_ino), Int64(info.st_mtim.tv_sec), Int64(info.st_mtim.tv_nsec)]
        if emptyFolders.withLock({ $0[folder] == stamp }) { return [] }
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder) else { return [] }
        if !names.contains(where: { $0.hasSuffix(".request") }) {
            emptyFolders.withLock { $0[folder] = stamp }
            return []
        }
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

    /// Queues a request and waits for the daemon's answer (up to `timeout` seconds). Fails at once when
    /// the path is in no endpoint of this server or no daemon is running to answer (the database is
    /// held by another process, such as `tiergate mount`), and as soon as the daemon stops.
    public static func submit(_ operation: String, path: String, to directory: StateDirectory, timeout: Double = 3600) throws -> Gateway.TieringResult {
        var resolved = path
        if let real = realpath(path, nil) {
            resolved = String(cString: real)
            free(real)
        }
        let endpoints = (try directory.loadConfig())?.endpoints ?? []
        guard endpoints.contains(where: { resolved == $0.path || resolved.hasPrefix($0.path + "/") }) else {
            throw GatewayError("cannot \(operation) '\(path)': it is not inside any endpoint of this server (see `tiergate endpoint list`)")
        }
        guard let daemon = runningDaemon(in: directory) else {
            throw GatewayError("cannot \(operation) '\(path)' now: another process holds this server's database and it is not `tiergate serve` (a `tiergate mount` or another command); stop it, or run the daemon and retry")
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
            guard kill(daemon, 0) == 0 || errno == EPERM else {
                unlink(folder + "/" + request.id + ".request")
                throw GatewayError("the daemon (pid \(daemon)) stopped before it answered the \(operation) request for '\(path)'; nothing was done")
            }
            usleep(50_000)
        }
        unlink(folder + "/" + request.id + ".request")
        throw GatewayError("the daemon did not answer the \(operation) request for '\(path)' within \(Int(timeout)) s")
    }
}
