import ArgumentParser
import Foundation
import Gateway

struct ShareCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "share",
        abstract: "Create and inspect cloud shares.",
        subcommands: [Create.self, Info.self, Verify.self, Collect.self, Retention.self, History.self, Servers.self, ForgetServer.self, Copy.self, Move.self]
    )

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create an empty cloud share at a URL (file:///path, s3://bucket/prefix, filerest://account/share).")

        @Argument(help: "The cloud share URL.") var url: String
        @Option(help: "Smallest chunk in bytes.") var minChunk = 256 << 10
        @Option(help: "Average chunk in bytes (a power of two).") var avgChunk = 1 << 20
        @Option(help: "Largest chunk in bytes.") var maxChunk = 4 << 20
        @Option(help: "Target pack size in bytes.") var packSize = 16 << 20
        @Option(help: "Commits between snapshots of the namespace, which new endpoints start from (log compaction; default 1000).")
        var snapshotInterval: UInt64?

        func validate() throws {
            if let snapshotInterval, snapshotInterval < 1 { throw ValidationError("--snapshot-interval must be at least 1") }
            guard packSize >= 1 << 20 && packSize <= 1 << 30 else {
                throw ValidationError("--pack-size must be between 1 MiB and 1 GiB")
            }
        }

        func run() async throws {
            do {
                let manifest = try await ShareAdmin.create(url: url, minChunk: minChunk, averageChunk: avgChunk, maxChunk: maxChunk, packSize: packSize,
                                                             snapshotInterval: snapshotInterval)
                print("created share \(ShareAdmin.printable(url)) (format \(manifest.format), chunking \(manifest.chunking), packs of \(manifest.packSize) bytes)")
            } catch {
                throw fail(error)
            }
        }
    }

    struct Info: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a cloud share's format, sizes and dedup ratio.")

        @Argument(help: "The cloud share URL.") var url: String
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            do {
                let info = try await ShareAdmin.info(url: url)
                let garbage = await ShareAdmin.garbage(url: url, storedBytes: info.storedBytes)
                print(json ? try ShareAdmin.json(info, garbage: garbage) : ShareAdmin.describe(info, garbage: garbage))
            } catch {
                throw fail(error)
            }
        }
    }
}

extension ShareCommand {
    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check a cloud share's objects against each other; exit status 1 when problems remain.",
            discussion: """
            Checks share.json, every log record (and that sequences are contiguous), every snapshot, every index \
            segment against its pack's trailer and size, and that every chunk any version of any file needs is in \
            some pack. One line per problem names the object, what is wrong, what it affects and the fix. \
            --repair rebuilds damaged or missing index segments from their packs' trailers; nothing is ever \
            deleted. See docs/verify.md.
            """
        )

        @Argument(help: "The cloud share URL.") var url: String
        @Option(name: .customLong("read-data"), help: ArgumentHelp("Also read this percent of the packs whole and check every chunk's SHA-256 (a bare --read-data reads them all).", valueName: "percent"))
        var readData: Double?
        @Option(help: "Seed choosing the packs read when --read-data is below 100 (default: random; the report prints it).") var seed: UInt64?
        @Flag(help: "Rebuild damaged or missing index segments from their packs' trailers.") var repair = false
        @Flag(help: "Print JSON.") var json = false

        func validate() throws {
            if let readData, !(readData > 0 && readData <= 100) { throw ValidationError("--read-data must be a percent above 0 and at most 100") }
        }

        func run() async throws {
            let clean: Bool
            do {
                let report = try await ShareAdmin.verify(url: url, readDataPercent: readData, seed: seed, repair: repair,
                                                         progress: ProgressPrinter.shared.print)
                ProgressPrinter.shared.finish()
                print(json ? try ShareAdmin.json(report) : ShareAdmin.describe(report))
                clean = report.isClean
            } catch {
                ProgressPrinter.shared.finish()
                throw fail(error)
            }
            if !clean { throw ExitCode(1) }
        }
    }
}

extension ShareCommand {
    struct Servers: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the servers registered in a cloud share: name, endpoint, last seen, applied sequence, lag.")

        @Argument(help: "The cloud share URL.") var url: String
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            do {
                let (head, servers) = try await ShareAdmin.servers(url: url)
                if json {
                    try printJSON(servers)
                    return
                }
                print("share \(ShareAdmin.printable(url)): head \(head), \(servers.count) registered endpoints")
                for server in servers {
                    let seen = ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: server.lastSeen))
                    let lag = head > server.lastAppliedSequence ? head - server.lastAppliedSequence : 0
                    print("  \(ConsoleText.safe(server.name)) (\(server.serverID)) endpoint \(server.endpoint): \(server.isOnline() ? "online" : "offline"), last seen \(seen), applied \(server.lastAppliedSequence), lag \(lag)")
                }
            } catch {
                throw fail(error)
            }
        }
    }

    struct History: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the versions of a file or folder in a cloud share: sequence, time, author, change, size.",
            discussion: "Restore one with `tiergate get URL DIR --at SEQUENCE --path PATH`.")

        @Argument(help: "The cloud share URL.") var url: String
        @Argument(help: "The path in the share (relative, as `/` separated names).") var path: String
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            do {
                let versions = try await ShareHistory.versions(of: path, url: url)
                if json {
                    try printJSON(versions)
                    return
                }
                guard !versions.isEmpty else { throw GatewayError("'\(path)' never was in the share") }
                for version in versions {
                    let time = version.time.map { ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: $0)) } ?? "-"
                    let collected = version.restorable == false ? "  (collected: outside the share's retention)" : ""
                    print("#\(version.sequence)  \(time)  \(ConsoleText.safe(version.author))  \(ConsoleText.safe(version.change))\(version.size.map { "  \(ByteFormat.string($0))" } ?? "")\(collected)")
                }
            } catch {
                throw fail(error)
            }
        }
    }

    struct ForgetServer: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "forget-server",
            abstract: "Release a server that will never come back: its registrations go, and its endpoints refuse to sync from then on.")

        @Argument(help: "The cloud share URL.") var url: String
        @Argument(help: "The server's id (or its name, when only one server has it).") var server: String

        func run() async throws {
            do {
                let forgotten = try await ShareAdmin.forgetServer(server, url: url)
                for registration in forgotten {
                    print("forgot \(ConsoleText.safe(registration.name)) (\(registration.serverID)) endpoint \(registration.endpoint)")
                }
            } catch {
                throw fail(error)
            }
        }
    }

    struct Collect: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "gc",
            abstract: "Delete packs no version of any file needs, in two phases; exit status 1 on an error.",
            discussion: """
            Marks every chunk a version kept by the share's retention policy references (`tiergate share \
            retention`; by default every version of every file stays). Packs none of \
            whose chunks is marked and older than --grace are recorded as pending deletion: writers stop reusing \
            their chunks. A later run, at least --safety-interval after, deletes those still unreferenced. Partly \
            used packs stay, unless --repack-below: then the needed chunks of packs used below that fraction are \
            copied into new packs first, and the old packs go the same way. One collector at a time (a lease in the share). \
            See docs/gc.md.
            """
        )

        @Argument(help: "The cloud share URL.") var url: String
        @Flag(help: "Report what would be recorded and deleted; change nothing.") var dryRun = false
        @Option(help: ArgumentHelp("Only packs older than this are collected (a writer may be about to commit a pack it just uploaded).", valueName: "duration"))
        var grace = "24h"
        @Option(help: ArgumentHelp("Time between recording packs as pending and deleting them; writers re-check within half of it.", valueName: "duration"))
        var safetyInterval = "1h"
        @Option(help: ArgumentHelp("How long the collector's lease lasts unrenewed (a killed collector's lease is taken over after it).", valueName: "duration"))
        var lease = "10m"
        @Option(help: ArgumentHelp("Repack packs whose needed chunks fill less than this fraction of them (0.5: half): those chunks are copied into new packs and the old pack goes like garbage.", valueName: "fraction"))
        var repackBelow: Double?
        @Flag(help: "Print JSON.") var json = false

        func validate() throws {
            if let repackBelow, !(repackBelow > 0 && repackBelow <= 1) { throw ValidationError("--repack-below must be a fraction above 0 and at most 1 (got \(repackBelow))") }
            for (name, text) in [("--grace", grace), ("--safety-interval", safetyInterval), ("--lease", lease)] where DurationText.parse(text) == nil {
                throw ValidationError("\(name) must be a duration such as 24h, 90m, 30s or 2d (got '\(text)')")
            }
            if (DurationText.parse(lease) ?? 0) < 1 { throw ValidationError("--lease must be at least 1s") }
        }

        func run() async throws {
            let options = ShareAdmin.collectionOptions(dryRun: dryRun, grace: DurationText.parse(grace)!,
                                                       safetyInterval: DurationText.parse(safetyInterval)!, lease: DurationText.parse(lease)!,
                                                       repackBelow: repackBelow)
            do {
                let report = try await ShareAdmin.collectGarbage(url: url, options: options, progress: ProgressPrinter.shared.print)
                ProgressPrinter.shared.finish()
                print(json ? try ShareAdmin.json(report) : ShareAdmin.describe(report, options: options))
            } catch {
                ProgressPrinter.shared.finish()
                throw fail(error)
            }
        }
    }

    struct Retention: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show or set which versions of files the garbage collector keeps.",
            discussion: """
            Without options, prints the share's policy. With them, sets it (the options given replace the whole \
            policy): every version within --keep-within, and the last version of each of the newest N days, weeks \
            and months (UTC) that have commits, as `restic forget` keeps snapshots. The log head, and every \
            version from the oldest one a registered server may still hold, are always kept. --keep-everything \
            (the default of a new share) keeps every version. `tiergate share gc` deletes the rest. See docs/gc.md.
            """
        )

        @Argument(help: "The cloud share URL.") var url: String
        @Option(help: ArgumentHelp("Keep every version that was current within this duration before now (30d, 12h).", valueName: "duration"))
        var keepWithin: String?
        @Option(help: "Keep the last version of each of the newest N days that have commits.") var keepDaily: Int?
        @Option(help: "Keep the last version of each of the newest N weeks that have commits.") var keepWeekly: Int?
        @Option(help: "Keep the last version of each of the newest N months that have commits.") var keepMonthly: Int?
        @Flag(help: "Keep every version of every file (no retention rules).") var keepEverything = false
        @Flag(help: "Print JSON.") var json = false

        var rules: ShareAdmin.RetentionRules {
            ShareAdmin.RetentionRules(keepWithin: keepWithin.flatMap(DurationText.parse), keepDaily: keepDaily, keepWeekly: keepWeekly, keepMonthly: keepMonthly)
        }

        func validate() throws {
            if let keepWithin, DurationText.parse(keepWithin) == nil {
                throw ValidationError("--keep-within must be a duration such as 30d, 12h or 90m (got '\(keepWithin)')")
            }
            if keepEverything && !rules.keepsEverything { throw ValidationError("--keep-everything takes no other rule") }
            if let problem = rules.problem { throw ValidationError(problem) }
        }

        func run() async throws {
            do {
                let policy = keepEverything || !rules.keepsEverything
                    ? try await ShareAdmin.setRetention(rules, url: url) : try await ShareAdmin.retention(url: url)
                if json { try printJSON(policy); return }
                print("retention of \(ShareAdmin.printable(url)): \(ShareAdmin.describe(policy))")
            } catch {
                throw fail(error)
            }
        }
    }

    struct Copy: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Copy a share to another store, verified; a rerun copies only what is missing.",
            discussion: """
            Copies every object of the share at SOURCE (packs, index segments, log, snapshots, share.json) to \
            DESTINATION, which may be any store: packs are checked against their ids (SHA-256), log records must \
            equal any the destination already holds, share.json goes last. The source is not changed; endpoints \
            keep using it. To move a share its endpoints use, run `tiergate share move`. See docs/backends.md.
            """
        )

        @Argument(help: "The URL of the share to copy.") var source: String
        @Argument(help: "The URL to copy it to.") var destination: String
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            do {
                let transfer = try ShareTransfer(sourceURL: source, destinationURL: destination)
                let report = try await transfer.copy(progress: ProgressPrinter.shared.print)
                ProgressPrinter.shared.finish()
                if json { try printJSON(report); return }
                print("copied \(report.copied) objects (\(ByteFormat.string(report.bytes))), \(report.alreadyThere) already there\(report.goneMeanwhile > 0 ? ", \(report.goneMeanwhile) deleted from the source meanwhile" : ""); the copy's log ends at sequence \(report.through); \(String(format: "%.1f", report.seconds)) s")
            } catch {
                ProgressPrinter.shared.finish()
                throw fail(error)
            }
        }
    }

    struct Move: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Move a share to another store while its endpoints keep working; they follow by themselves.",
            discussion: """
            Copies the share to DESTINATION, ends the source's log with a move record (from then on nothing is \
            appended there), copies the records written meanwhile, and leaves moved.json in the source. Every \
            endpoint that meets the move record checks that DESTINATION holds the same share up to the move and \
            carries on there from its cursor: nothing is uploaded or downloaded again. A server that was offline \
            follows when it comes back. An interrupted move is finished by running it again. Every server needs \
            credentials for DESTINATION (its environment or the credentials file the URL names). The source keeps \
            its objects; delete them once every server has followed. See docs/backends.md.
            """
        )

        @Argument(help: "The URL of the share to move.") var source: String
        @Argument(help: "The URL to move it to.") var destination: String
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            do {
                let transfer = try ShareTransfer(sourceURL: source, destinationURL: destination)
                let report = try await transfer.move(destinationURL: destination, progress: ProgressPrinter.shared.print)
                ProgressPrinter.shared.finish()
                if json { try printJSON(report); return }
                print("moved to \(transfer.destinationName) after sequence \(report.through): copied \(report.copied) objects (\(ByteFormat.string(report.bytes))), \(report.alreadyThere) already there; endpoints follow at their next pass; \(String(format: "%.1f", report.seconds)) s")
            } catch {
                ProgressPrinter.shared.finish()
                throw fail(error)
            }
        }
    }
}

struct PutCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "put",
        abstract: "Store a local directory tree into a cloud share as direct cloud edits (a one-shot `migrate` without a checkpoint).",
        discussion: "Every file is read; what the share already holds is neither uploaded nor committed again. For large trees, reruns and deletes use `tiergate migrate`."
    )

    @Argument(help: "The cloud share URL.") var url: String
    @Argument(help: "The local directory to store.") var directory: String
    @Option(help: "Path inside the share to store the tree under (default: the share root).") var to = ""
    @OptionGroup var bandwidth: BandwidthOptions

    func run() async throws {
        var options = Migration.Options()
        options.destination = to
        options.bandwidthLimit = bandwidth.bytesPerSecond
        try await MigrateCommand.run(source: directory, url: url, options: options)
    }
}

struct MigrateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Copy a local tree (a file server, an NFS or SMB mount) into a cloud share: parallel, resumable, incremental.",
        discussion: """
        Files are committed in batches as they are copied. A checkpoint in the state directory remembers what was \
        copied: rerun after a crash, a kill or a fix continues where it stopped, and a later run reads only files \
        whose size, mtime, ctime or inode changed. The source wins: a share entry changed since the last run is \
        replaced. Exit status: 0 when every item is in the share, 2 when some were skipped or failed (each is \
        listed and, with --log, logged), 1 on an error that stopped the run. See docs/migration.md.
        """
    )

    @OptionGroup var state: StateOptions
    @Argument(help: "The local directory to copy, or another cloud share's URL (its namespace at the log head).") var source: String
    @Argument(help: "The cloud share URL.") var url: String
    @Option(help: "Path inside the share to copy the tree to (default: the share root).") var to = ""
    @Flag(help: "Delete in the share (below --to) what is not in the source. Items the source has but could not copy are kept.") var mirror = false
    @Flag(help: "Read every copied file back from the share and compare it with what was read.") var verify = false
    @Option(help: "Files read at once (default: the number of CPUs, at least 2).") var threads: Int?
    @Option(help: "Commit after this many operations.") var batchFiles = 20_000
    @Option(help: "Commit at least this often, in seconds.") var batchSeconds = 30.0
    @Option(help: "Write one row per item copied, updated, deleted, skipped or failed to this file (appended; CSV, or JSON lines for *.json/*.jsonl).") var log: String?
    @Option(help: "The log's format: csv or json (default: from the file name).") var logFormat: MigrationItemLog.Format?
    @OptionGroup var bandwidth: BandwidthOptions

    func validate() throws {
        if let threads, threads < 1 || threads > 256 { throw ValidationError("--threads must be between 1 and 256") }
        if batchFiles < 1 { throw ValidationError("--batch-files must be at least 1") }
        if !(batchSeconds > 0 && batchSeconds.isFinite) { throw ValidationError("--batch-seconds must be a positive number of seconds") }
    }

    func run() async throws {
        var options = Migration.Options()
        options.destination = to
        options.mirror = mirror
        options.verify = verify
        if let threads { options.readers = threads }
        options.batchOperations = batchFiles
        options.batchSeconds = batchSeconds
        options.stateDirectory = state.directory.path
        options.itemLog = log
        options.itemLogFormat = logFormat
        options.bandwidthLimit = bandwidth.bytesPerSecond
        try await Self.run(source: source, url: url, options: options)
    }

    /// Runs a migration with live progress and prints its report; exit 2 when items were not copied.
    static func run(source: String, url: String, options: Migration.Options) async throws {
        let report: Migration.Report
        do {
            report = try await Migration.run(source: source, url: url, options: options, progress: ProgressPrinter.shared.print)
            ProgressPrinter.shared.finish()
        } catch {
            ProgressPrinter.shared.finish()
            throw fail(error)
        }
        print(report.summary)
        if !report.isComplete { throw ExitCode(2) }
    }
}

extension MigrationItemLog.Format: ExpressibleByArgument {}

struct GetCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "get",
        abstract: "Restore a cloud share's files (at its log head, or as they were at a past point) into a local directory, verifying every chunk.",
        discussion: "Exit status: 0 when every item was restored, 2 when some were not (each is listed), 1 on an error that stopped the restore."
    )

    @Argument(help: "The cloud share URL.") var url: String
    @Argument(help: "The local directory to write into (created if missing; existing files are not overwritten).") var directory: String
    @Option(help: ArgumentHelp("Restore the share as it was: right after a log sequence (123 or #123, as `share history` lists), or as of a time (2026-12-01T09:30:00Z; local time without a zone; a date alone is its midnight).", valueName: "sequence|time"))
    var at: String?
    @Option(help: "Restore only this file or folder of the share (its path is kept below the directory).") var path: String?
    @OptionGroup var bandwidth: BandwidthOptions

    func validate() throws {
        if let at, TreeExport.PointInTime(at) == nil {
            throw ValidationError("--at '\(at)' is neither a log sequence (123 or #123) nor a time (2026-12-01T09:30:00Z, 2026-12-01 09:30, 2026-12-01)")
        }
        if let path, path.isEmpty || path.hasPrefix("/") || path.split(separator: "/").contains("..") {
            throw ValidationError("--path '\(path)' must be a relative path in the share, without '..'")
        }
    }

    func run() async throws {
        do {
            let point = at.flatMap { TreeExport.PointInTime($0) }
            let subtree = path.map { String($0.split(separator: "/").joined(separator: "/")) }
            let report = try await TreeExport.run(url: url, destination: directory, at: point, subtree: subtree, bandwidthLimit: bandwidth.bytesPerSecond,
                                                  progress: ProgressPrinter.shared.print)
            ProgressPrinter.shared.finish()
            print(report.summary)
            if !report.skipped.isEmpty { throw ExitCode(2) }
        } catch let exit as ExitCode {
            throw exit
        } catch {
            ProgressPrinter.shared.finish()
            throw fail(error)
        }
    }
}
