/// Conflict file names as Azure File Sync makes them: `<stem>-<ServerName>[-N]<.ext>`.
public enum ConflictNames {
    /// At most this many conflict copies of one file; then the conflict is a per-item error.
    public static let limit = 100

    /// The candidate names for a conflict copy of `path` written by `serverName`, in order of preference.
    public static func candidates(for path: String, serverName: String) -> [String] {
        let slash = path.lastIndex(of: "/")
        let directory = slash.map { String(path[...$0]) } ?? ""
        let name = slash.map { String(path[path.index(after: $0)...]) } ?? path
        var stem = name, ext = ""
        if let dot = name.lastIndex(of: "."), dot != name.startIndex {
            stem = String(name[..<dot])
            ext = String(name[dot...])
        }
        let label = sanitized(serverName)
        return (0..<limit).map { index in
            directory + stem + "-" + label + (index == 0 ? "" : "-\(index)") + ext
        }
    }

    /// A server name made safe for a file name (no `/`, NUL, or leading dots).
    static func sanitized(_ name: String) -> String {
        let cleaned = String(name.map { $0 == "/" || $0 == "\0" ? "_" : $0 }.prefix(64))
        return cleaned.isEmpty ? "Server" : cleaned
    }
}
