/// What is never synced, and why: Azure File Sync's skip list plus Linux's own temporary names.
///
/// Matching is on one path component (case-insensitive for the Windows names, as Azure File Sync does).
public enum SkipRules {
    /// The folder where Tiergate keeps an endpoint's local state; never synced.
    public static let stateFolder = ".tiergate"

    /// Why some component of the relative path `path` is never synced, or nil when none is.
    public static func reason(forPath path: String) -> String? {
        var atRoot = true
        for component in path.split(separator: "/") {
            if let reason = reason(forName: String(component), atRoot: atRoot) { return reason }
            atRoot = false
        }
        return nil
    }

    /// Why `name` (a path component) is skipped, or nil when it is synced. `atRoot` tells whether it
    /// sits directly in the endpoint root (`lost+found` is skipped only there).
    public static func reason(forName name: String, atRoot: Bool) -> String? {
        let lower = name.lowercased()
        switch lower {
        case "thumbs.db", "desktop.ini", "ehthumbs.db", "pagefile.sys", "$recycle.bin", "system volume information":
            return "on the skip list (\(name))"
        default: break
        }
        if name == stateFolder { return "Tiergate's own state folder" }
        if atRoot && name == "lost+found" { return "lost+found at the volume root" }
        if lower.hasPrefix("~$") && lower.dropFirst(2).contains(".") { return "an Office lock file (~$*.*)" }
        if lower.hasSuffix(".tmp") { return "a temporary file (*.tmp)" }
        if lower.hasSuffix(".laccdb") { return "an Access lock file (*.laccdb)" }
        if name.hasPrefix(".nfs") { return "an NFS silly-rename file (.nfs*)" }
        if name.hasPrefix(".fuse_hidden") { return "a FUSE hidden file (.fuse_hidden*)" }
        if name.hasPrefix(".tg-") { return "a Tiergate temporary file" }
        return nil
    }
}
