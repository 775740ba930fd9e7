import Backends
import Foundation
import Glibc

/// The per-item log of a migration (like RoboCopy's /UNILOG): one row per item copied, updated,
/// deleted, skipped or failed, written as it happens, as CSV or JSON lines. Unchanged items are not
/// logged (a rerun of a large tree would log every file).
public final class MigrationItemLog {
    /// The format of the file.
    public enum Format: String, Sendable, CaseIterable {
        case csv, json

        /// The format a file name implies (`.json`/`.jsonl` → JSON lines, anything else CSV).
        public static func implied(by path: String) -> Format {
            path.hasSuffix(".json") || path.hasSuffix(".jsonl") ? .json : .csv
        }
    }

    /// What happened to an item.
    public enum Action: String, Sendable {
        case copied, updated, directory, deleted, skipped, failed, verified
    }

    private let fd: Int32
    private let format: Format
    private let path: String
    /// One formatter for every row (making one per row costs more than writing the row).
    private let timeFormatter = ISO8601DateFormatter()

    /// Opens `path` for appending (a rerun adds to the same log); a new CSV file gets a header.
    public init(path: String, format: Format) throws {
        self.path = path
        self.format = format
        fd = try Posix.open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        var info = stat()
        if format == .csv, fstat(fd, &info) == 0, info.st_size == 0 {
            try write("time,action,path,size,reason\n")
        }
    }

    deinit { close(fd) }

    /// Logs one item.
    public func log(_ action: Action, _ path: String, size: Int64? = nil, reason: String = "") throws {
        let time = timeFormatter.string(from: Date())
        switch format {
        case .csv:
            try write(CSV.row([time, action.rawValue, path, size.map(String.init) ?? "", reason]) + "\n")
        case .json:
            var object: [String: Any] = ["time": time, "action": action.rawValue, "path": path]
            if let size { object["size"] = size }
            if !reason.isEmpty { object["reason"] = reason }
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
            try write(String(decoding: data, as: UTF8.self) + "\n")
        }
    }

    private func write(_ text: String) throws {
        try Array(text.utf8).withUnsafeBytes { try Posix.writeAll(fd, $0, path: path) }
    }
}
