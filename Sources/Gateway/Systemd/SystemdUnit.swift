import Backends
import Foundation
import Glibc

/// The systemd service unit that runs `tiergate serve` for one state directory. Its text has one owner,
/// ``text``: `tiergate install-service` writes it for the configured endpoints, and the template checked
/// in as `packaging/tiergate.service` is the same text for the standard paths and no endpoints.
public struct SystemdUnit: Sendable, Equatable {
    /// Where `make install`-style installs put the binary; the template's `ExecStart=`.
    public static let standardBinary = "/usr/local/bin/tiergate"
    /// Where `tiergate install-service` writes the unit by default.
    public static let standardOutput = "/etc/systemd/system/tiergate.service"

    /// The `tiergate` executable the unit starts.
    public var binary: String
    /// The state directory the daemon serves (`TIERGATE_STATE_DIR`).
    public var stateDirectory: String
    /// The endpoints it serves: their paths become writable, and a FUSE mount point turns the mount
    /// namespace off (see ``text``).
    public var endpoints: [EndpointConfig]

    /// A unit for `binary` serving `stateDirectory` with `endpoints`.
    public init(binary: String = standardBinary, stateDirectory: String = "/var/lib/tiergate", endpoints: [EndpointConfig] = []) {
        self.binary = binary
        self.stateDirectory = stateDirectory
        self.endpoints = endpoints
    }

    /// The unit for the registered server of `directory`, started from `binary`.
    /// - Throws: ``GatewayError`` when the directory has no configuration or no endpoints.
    public init(directory: StateDirectory, binary: String) throws {
        guard let config = try directory.loadConfig(), !config.endpoints.isEmpty else {
            throw GatewayError("no endpoints registered in \(directory.path); add one with `tiergate endpoint add` before installing the service")
        }
        self.init(binary: binary, stateDirectory: directory.path, endpoints: config.endpoints)
    }

    /// The descriptor store must hold one fanotify group per tiering endpoint; room for growth by reloads.
    var descriptorStoreSize: Int { max(64, endpoints.filter { $0.tiering != nil }.count * 2) }

    /// The unit file's text.
    /// - Throws: ``GatewayError`` when a path holds a character a unit file cannot carry (a newline).
    public func text() throws -> String {
        let mountPoints = endpoints.compactMap(\.mountPoint)
        var writable = [stateDirectory]
        for path in endpoints.map(\.path) + mountPoints where !writable.contains(path) { writable.append(path) }
        var lines = [
            "# Tiergate: keeps the server endpoints in sync with their cloud shares and recalls tiered files on",
            "# access. Written by `tiergate install-service`; run it again after adding an endpoint (it must be",
            "# writable below).",
            "[Unit]",
            "Description=Tiergate sync and cloud tiering daemon",
            "After=network-online.target local-fs.target",
            "Wants=network-online.target",
            "",
            "[Service]",
            "# The worker, a child of the main process, reports READY=1 and pings the watchdog.",
            "Type=notify",
            "NotifyAccess=all",
            "Environment=\(try Self.quoted("TIERGATE_STATE_DIR=" + stateDirectory, in: "Environment="))",
            "ExecStart=\(try Self.quoted(binary, in: "ExecStart=").replacingOccurrences(of: "$", with: "$$")) serve",
            "# SIGHUP reads the configuration again (a new worker; stubs stay marked meanwhile).",
            "ExecReload=/bin/kill -HUP $MAINPID",
            "# SIGTERM to the main process only: it stops the worker in order, then exits.",
            "KillMode=mixed",
            "Restart=on-failure",
            "RestartSec=1",
            "WatchdogSec=30",
            "# The fanotify group of every tiering endpoint waits here while the daemon restarts: its marks stay",
            "# on the stubs, so readers of stubs wait for the next daemon instead of reading holes as zeros.",
            "FileDescriptorStoreMax=\(descriptorStoreSize)",
            "",
            "# Hardening. The daemon runs as root for these capabilities only:",
            "#   CAP_SYS_ADMIN        fanotify pre-content groups (recall on access) and FUSE mounts",
            "#   CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH  read and write every file of an endpoint, whoever owns it",
            "#   CAP_FOWNER           set mtimes, modes and user.tiergate.* xattrs on files of other owners",
            "#   CAP_CHOWN, CAP_FSETID  give synced files their owner and group, keeping set-group-ID bits",
            "#   CAP_LEASE            take the write lease that tiering holds while it punches a file out",
            "#   CAP_SYS_PTRACE       read /proc/TID/syscall of a reader of a stub, to recall only the range a",
            "#                        read needs (without it every access recalls the whole file)",
            "CapabilityBoundingSet=CAP_SYS_ADMIN CAP_DAC_OVERRIDE CAP_DAC_READ_SEARCH CAP_FOWNER CAP_CHOWN CAP_FSETID CAP_LEASE CAP_SYS_PTRACE",
            "NoNewPrivileges=yes",
            "DevicePolicy=closed",
            "DeviceAllow=/dev/fuse rw",
            "LockPersonality=yes",
            "RestrictRealtime=yes",
            "SystemCallArchitectures=native",
        ]
        if mountPoints.isEmpty {
            lines += [
                "# A read-only system; writable: the state directory and every endpoint.",
                "ProtectSystem=strict",
                "ProtectHome=read-only",
                "ReadWritePaths=\(try writable.map { try Self.quoted($0, in: "ReadWritePaths=") }.joined(separator: " "))",
                // A private /tmp would hide an endpoint that lives there.
                writable.contains { $0 == "/tmp" || $0.hasPrefix("/tmp/") || $0 == "/var/tmp" || $0.hasPrefix("/var/tmp/") }
                    ? "# No PrivateTmp=: an endpoint lives in /tmp or /var/tmp." : "PrivateTmp=yes",
                "ProtectKernelTunables=yes",
                "ProtectKernelModules=yes",
                "ProtectControlGroups=yes",
            ]
        } else {
            lines += [
                "# No ProtectSystem=, ProtectHome=, ReadWritePaths= or PrivateTmp=: each gives the service a mount",
                "# namespace of its own, and the FUSE mount\(mountPoints.count == 1 ? "" : "s") of \(try mountPoints.map { try Self.quoted($0, in: "a comment") }.joined(separator: ", "))",
                "# would be seen by no other process.",
            ]
        }
        lines += [
            "",
            "[Install]",
            "WantedBy=multi-user.target",
        ]
        return lines.joined(separator: "\n") + "\n"
    }

    /// Writes the unit to `path` (a temporary file renamed over it, mode 0644).
    /// - Throws: ``GatewayError`` naming the path when it cannot be written.
    public func write(to path: String) throws {
        let bytes = Array(try text().utf8)
        let temporary = path + ".tmp"
        do {
            let fd = try Posix.open(temporary, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
            defer { close(fd) }
            _ = fchmod(fd, 0o644)
            try bytes.withUnsafeBytes { try Posix.writeAll(fd, $0, path: temporary) }
            try Posix.fsync(fd, path: temporary)
            try Posix.call("rename", path: path) { rename(temporary, path) }
        } catch let error as PosixError {
            unlink(temporary)
            let hint = error.errno == EACCES || error.errno == EPERM || error.errno == EROFS ? " (run it as root, or pass --output)" : ""
            throw GatewayError("cannot write the unit to \(path): \(error.reason)\(hint)")
        }
    }

    /// `value` as one word of a unit file: `%` doubled (specifiers), and in double quotes with `\` and `"`
    /// escaped when it holds a space, a quote or a backslash. A newline or another control character
    /// cannot be carried at all.
    static func quoted(_ value: String, in setting: String) throws -> String {
        guard !value.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f }) else {
            throw GatewayError("\(setting) cannot hold '\(value.debugDescription)': it has a control character")
        }
        let escaped = value.replacingOccurrences(of: "%", with: "%%")
        guard escaped.contains(where: { $0 == " " || $0 == "\"" || $0 == "\\" || $0 == "'" }) else { return escaped }
        return "\"" + escaped.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }
}
