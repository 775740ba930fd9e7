/// How much a finding of `tiergate check` matters.
public enum CheckLevel: String, Sendable, Codable, CaseIterable, Comparable {
    /// The item or the system will not work as expected: data stays out of the share, or a feature the
    /// endpoint needs is missing. `tiergate check` exits with status 1.
    case error
    /// Works, with a limit the user should know about (an item not synced by design, a slower access path).
    case warning
    /// A fact: what was found, nothing to do.
    case info

    public static func < (a: CheckLevel, b: CheckLevel) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }
}

/// One kind of finding: a short stable identifier with its level, what sync does about it and the fix.
/// Every code lives in this file, so that docs/check.md has one source to follow.
public struct CheckCode: Sendable, Hashable, Codable, CustomStringConvertible {
    /// The identifier (`name-not-utf8`), stable across releases.
    public var name: String
    /// How much it matters.
    public var level: CheckLevel
    /// What sync (or the daemon) does about it.
    public var whatHappens: String
    /// What the user should do; empty when nothing.
    public var fix: String
    /// True when the scan leaves the item out of sync (it shows in `tiergate errors` as skipped).
    public var skipsItem: Bool

    public var description: String { name }

    init(_ name: String, _ level: CheckLevel, skipsItem: Bool = false, _ whatHappens: String, fix: String = "") {
        self.name = name
        self.level = level
        self.whatHappens = whatHappens
        self.fix = fix
        self.skipsItem = skipsItem
    }

    // MARK: Namespace: what the scan leaves out (one code per ``SyncExclusion``)

    static let notSyncedEachPass = "not synced; listed by `tiergate errors` on every pass"
    /// ``SyncExclusion/nameNotUTF8``.
    public static let nameNotUTF8 = CheckCode("name-not-utf8", .error, skipsItem: true, notSyncedEachPass + " (a directory with everything in it)",
                                              fix: "rename it to valid UTF-8 (e.g. convmv -f latin1 -t utf-8 --notest)")
    /// ``SyncExclusion/normalizationTwin(of:)``.
    public static let normalizationTwin = CheckCode("normalization-twin", .error, skipsItem: true,
                                                    notSyncedEachPass + "; the twin first in byte order syncs under the shared name",
                                                    fix: "rename one of the two")
    /// ``SyncExclusion/skipList(_:)``.
    public static let skipList = CheckCode("skip-list", .info, skipsItem: true, "never synced, by design (temporary and system files); listed by `tiergate errors`")
    /// ``SyncExclusion/unsafePath(_:)`` for a path over ``SafePath/maxPathLength`` characters.
    public static let pathTooLong = CheckCode("path-too-long", .error, skipsItem: true,
                                              notSyncedEachPass + " (a directory with everything in it)",
                                              fix: "shorten the names or move it higher in the tree (at most \(SafePath.maxPathLength) characters)")
    /// ``SyncExclusion/unsafePath(_:)`` for a component over ``SafePath/maxComponentBytes`` bytes.
    public static let componentTooLong = CheckCode("component-too-long", .error, skipsItem: true, notSyncedEachPass,
                                                   fix: "rename it to at most \(SafePath.maxComponentBytes) bytes")
    /// Any other ``SyncExclusion/unsafePath(_:)`` (no local name has one; kept so every rule maps to a code).
    public static let unsafePath = CheckCode("unsafe-path", .error, skipsItem: true, notSyncedEachPass, fix: "rename it")
    /// ``SyncExclusion/hardLink(links:)``.
    public static let hardLink = CheckCode("hard-link", .warning, skipsItem: true, notSyncedEachPass + " (none of its names)",
                                           fix: "make each name a copy of its own (cp --remove-destination), or accept that it stays local")
    /// ``SyncExclusion/symbolicLink``.
    public static let symbolicLink = CheckCode("symlink", .warning, skipsItem: true, notSyncedEachPass + " (neither the link nor its target through it)",
                                               fix: "replace it with what it points to if the share should hold it")
    /// ``SyncExclusion/socket``, ``SyncExclusion/fifo`` and ``SyncExclusion/deviceNode``.
    public static let specialFile = CheckCode("special-file", .info, skipsItem: true, notSyncedEachPass + "; it holds no data to sync")
    /// ``SyncExclusion/unreadable(function:errno:)``: a directory that cannot be opened or listed, an
    /// item that cannot be stat'ed.
    public static let unreadable = CheckCode("unreadable", .error, skipsItem: true,
                                             notSyncedEachPass + " (a directory with everything in it); never taken for a delete",
                                             fix: "give the user that runs `tiergate serve` read (and, for a directory, search) permission")
    /// ``SyncExclusion/changedDuringScan``.
    public static let changedDuringCheck = CheckCode("changed-during-check", .warning, skipsItem: true, "scanned again on the next pass",
                                                     fix: "run check again when the tree is quiet")

    // MARK: Namespace: synced, with a caveat

    /// A regular file the user running check cannot read.
    public static let unreadableFile = CheckCode("unreadable-file", .error,
                                                 "its upload fails: listed by `tiergate errors` and retried on every pass",
                                                 fix: "give the user that runs `tiergate serve` read permission")
    /// Fewer bytes allocated than the size by at least ``DatasetCheck/sparseThreshold``.
    public static let sparseFile = CheckCode("sparse-file", .info,
                                             "synced; the share stores it dense, so a download or a recall allocates its whole size",
                                             fix: "make room for the full size on every endpoint")
    /// Larger than ``DatasetCheck/maxFileSize``.
    public static let fileTooLarge = CheckCode("file-too-large", .error,
                                               "beyond the largest file Tiergate supports (Azure Files' limit); sync may fail on it",
                                               fix: "split it or keep it out of the endpoint")
    /// More entries than ``DatasetCheck/maxDirectoryEntries``.
    public static let directoryTooLarge = CheckCode("directory-too-large", .warning,
                                                    "synced; each scan lists and sorts it in memory at once, and applications slow down on it",
                                                    fix: "spread its entries over subdirectories")
    /// Deeper than ``DatasetCheck/maxDepth``.
    public static let deepPath = CheckCode("deep-path", .warning,
                                           "synced, but each scan holds one open descriptor per level; near the descriptor limit the scan reports the deepest folders as unreadable",
                                           fix: "flatten the tree")

    // MARK: System

    /// The kernel release.
    public static let kernel = CheckCode("kernel", .info, "")
    /// Pre-content events can be delivered on the volume.
    public static let fanotify = CheckCode("fanotify", .info, "`tiergate serve` recalls stubs on the endpoint itself, on first read")
    /// Pre-content events cannot be delivered.
    public static let fanotifyUnavailable = CheckCode("fanotify-unavailable", .warning,
                                                      "stubs read on the endpoint itself return holes; applications must use the FUSE mount (`tiergate mount`)",
                                                      fix: "run Linux ≥ 6.14 with CAP_SYS_ADMIN on ext4, xfs or btrfs")
    /// CAP_SYS_ADMIN is in the effective set.
    public static let capSysAdmin = CheckCode("cap-sys-admin", .info, "fanotify journal and pre-content marks are allowed")
    /// CAP_SYS_ADMIN is not in the effective set.
    public static let noCapSysAdmin = CheckCode("no-cap-sys-admin", .warning,
                                                "change detection falls back to inotify, and stubs recall only through the FUSE mount",
                                                fix: "run `tiergate serve` as root or with CAP_SYS_ADMIN")
    /// /dev/fuse opens.
    public static let fuse = CheckCode("fuse", .info, "`tiergate mount` can serve the endpoint")
    /// /dev/fuse does not open, or a user other than root has no fusermount3.
    public static let fuseUnavailable = CheckCode("fuse-unavailable", .warning, "`tiergate mount` cannot run",
                                                  fix: "load the fuse module (modprobe fuse) and install fuse3")
    /// FUSE passthrough is possible.
    public static let fusePassthrough = CheckCode("fuse-passthrough", .info, "full files on the mount are read and written by the kernel directly")
    /// FUSE passthrough is not possible.
    public static let fusePassthroughUnavailable = CheckCode("fuse-passthrough-unavailable", .info,
                                                             "every read and write on the mount goes through the daemon",
                                                             fix: "for native speed on the mount, run Linux ≥ 6.9 and mount as root")
    /// `user.*` xattrs can be set on the volume.
    public static let userXattr = CheckCode("user-xattr", .info, "stubs can carry their `user.tiergate.*` markers")
    /// `user.*` xattrs cannot be set.
    public static let userXattrUnsupported = CheckCode("user-xattr-unsupported", .error, "tiering cannot mark stubs, so nothing is tiered",
                                                       fix: "use a file system with user xattrs (ext4, xfs, btrfs; mount without nouser_xattr)")
    /// Holes can be punched.
    public static let punchHole = CheckCode("punch-hole", .info, "tiering frees the space of a tiered file in place")
    /// Holes cannot be punched.
    public static let punchHoleUnsupported = CheckCode("punch-hole-unsupported", .error, "tiering cannot make stubs, so nothing is tiered",
                                                       fix: "use a file system with FALLOC_FL_PUNCH_HOLE (ext4, xfs, btrfs)")
    /// The probe file could not be created.
    public static let notWritable = CheckCode("not-writable", .warning,
                                              "xattr and punch-hole support are unknown; sync cannot write downloads here either",
                                              fix: "run check as the user that runs `tiergate serve`")
    /// The volume has a journal (or is copy-on-write).
    public static let journal = CheckCode("journal", .info, "metadata survives a crash without a full fsck")
    /// The volume has no journal.
    public static let noJournal = CheckCode("no-journal", .warning,
                                            "after a crash or power loss the volume may need fsck before its state can be trusted; what Tiergate acknowledged is fsynced, but a repair may still drop recent names",
                                            fix: "use a journaled volume (tune2fs -O has_journal) for endpoints")
    /// Free space on the volume.
    public static let freeSpace = CheckCode("free-space", .info, "")
    /// Below 10 % free: low-disk mode.
    public static let lowFreeSpace = CheckCode("low-free-space", .warning,
                                               "low-disk mode: tiering policies run every minute and recalled content is not kept",
                                               fix: "free space or enable cloud tiering with a free-space policy")
    /// RAM against the namespace.
    public static let memory = CheckCode("memory", .info, "")
    /// The daemon's estimated memory for the namespace exceeds half of RAM.
    public static let memoryLow = CheckCode("memory-low", .warning, "the daemon may be slowed by swapping or stopped by the OOM killer",
                                            fix: "add RAM or split the tree over servers")
    /// The share opened.
    public static let share = CheckCode("share", .info, "")
    /// The share did not open.
    public static let shareUnavailable = CheckCode("share-unavailable", .error, "nothing can sync with it",
                                                   fix: "check the URL, the credentials and the network (`tiergate share info URL`)")
    /// The clocks agree.
    public static let clock = CheckCode("clock", .info, "")
    /// The clocks differ by more than ``SystemCheck/clockSkewWarning``.
    public static let clockSkew = CheckCode("clock-skew", .warning,
                                            "requests are refused once the skew reaches 15 minutes (S3 SigV4, Azure SharedKey); conflict times compare badly",
                                            fix: "run NTP (systemd-timesyncd, chrony)")
    /// The clocks differ by 15 minutes or more.
    public static let clockSkewRefused = CheckCode("clock-skew-refused", .error, "the store refuses signed requests",
                                                   fix: "run NTP (systemd-timesyncd, chrony)")

    /// The code of a finding for `exclusion` of the item at `path`: one per rule of ``SyncExclusion``.
    public static func of(_ exclusion: SyncExclusion, path: String) -> CheckCode {
        switch exclusion {
        case .nameNotUTF8: .nameNotUTF8
        case .normalizationTwin: .normalizationTwin
        case .skipList: .skipList
        case .unsafePath:
            if path.count > SafePath.maxPathLength {
                .pathTooLong
            } else if path.split(separator: "/").contains(where: { $0.utf8.count > SafePath.maxComponentBytes }) {
                .componentTooLong
            } else {
                .unsafePath
            }
        case .unreadable: .unreadable
        case .changedDuringScan: .changedDuringCheck
        case .hardLink: .hardLink
        case .symbolicLink: .symbolicLink
        case .socket, .fifo, .deviceNode: .specialFile
        }
    }

    /// Every code, in the order docs/check.md lists them.
    public static let all: [CheckCode] = [
        nameNotUTF8, normalizationTwin, pathTooLong, componentTooLong, unsafePath, unreadable, unreadableFile, fileTooLarge,
        hardLink, symbolicLink, changedDuringCheck, directoryTooLarge, deepPath, skipList, specialFile, sparseFile,
        kernel, fanotify, fanotifyUnavailable, capSysAdmin, noCapSysAdmin, fuse, fuseUnavailable, fusePassthrough,
        fusePassthroughUnavailable, userXattr, userXattrUnsupported, punchHole, punchHoleUnsupported, notWritable, journal,
        noJournal, freeSpace, lowFreeSpace, memory, memoryLow, share, shareUnavailable, clock, clockSkew, clockSkewRefused,
    ]
}

/// One finding of `tiergate check`.
public struct CheckFinding: Sendable, Hashable {
    /// The item's path relative to the checked folder (`.` for the folder itself; invalid UTF-8 shown as
    /// U+FFFD, as `tiergate errors` shows it); empty for a finding about the system.
    public var path: String
    /// What was found.
    public var code: CheckCode
    /// The specifics: the sync reason for a skipped item, a figure for a system fact.
    public var detail: String
    /// True for a finding about the system (kernel, volume, share) rather than an item.
    public var isSystem: Bool

    /// A finding of `code` for the item at `path`.
    public init(_ code: CheckCode, path: String, _ detail: String) {
        self.code = code
        self.path = path
        self.detail = detail
        isSystem = false
    }

    /// A finding of `code` about the system.
    public static func system(_ code: CheckCode, _ detail: String) -> CheckFinding {
        var finding = CheckFinding(code, path: "", detail)
        finding.isSystem = true
        return finding
    }

    /// The finding's level (its code's).
    public var level: CheckLevel { code.level }
}
