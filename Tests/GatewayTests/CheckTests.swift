@testable import Backends
import CLinux
import CloudShare
import Foundation
@testable import Gateway
import Glibc
import Testing

/// `tiergate check`: run as a real process on trees holding one of each namespace problem; what it calls
/// not synced is what the scan skips; the system findings agree with what the test sees of the machine.
@Suite(.serialized) struct CheckTests {
    // MARK: Namespace, as a real process

    @Test func everyNamespaceProblemIsReportedWithItsPathLevelAndCodeAndExactTotals() throws {
        let tree = try ProblemTree()
        let run = try CheckRun(["check", tree.root, "--json"])
        #expect(run.status == 1, "errors make the exit status 1: \(run.errorOutput)")
        let document = try run.document()
        func finding(_ path: String, _ code: String) -> CheckRow? {
            document.findings.first { Array($0.path.utf8) == Array(path.utf8) && $0.code == code }
        }
        for (path, code, level) in tree.expected {
            let found = finding(path, code)
            #expect(found != nil, "no \(code) for \(path)")
            #expect(found?.level == level, "\(code) for \(path) is \(found?.level ?? "missing"), not \(level)")
            #expect(found?.scope == "item")
        }
        // Nothing else is reported about the items: the rest of the tree is clean.
        let items = document.findings.filter { $0.scope == "item" }
        #expect(items.count == tree.expected.count, "unexpected: \(items.map { "\($0.code) \($0.path)" })")
        #expect(finding(tree.nfc, "normalization-twin")?.detail == "differs from '\(tree.nfd)' in this folder only by Unicode normalization; rename one of them")
        let summary = document.summary
        #expect(summary.entries == tree.entries)
        #expect(summary.files == tree.files)
        #expect(summary.directories == tree.directories)
        #expect(summary.others == tree.others)
        #expect(summary.bytes == tree.bytes)
        #expect(summary.stubs == 0)
        #expect(summary.deepestPath == tree.deepestPath && summary.deepestDepth == tree.deepestDepth)
        #expect(summary.largestDirectory == "." && summary.largestDirectoryEntries == tree.rootEntries)
        #expect(summary.errors == document.findings.count { $0.level == "error" })
        #expect(summary.entriesPerSecond > 0)
        #expect(tree.probeFilesLeft() == [], "the probe file is removed")
    }

    @Test func csvAndTextCarryTheSameFindingsAsJSON() throws {
        let tree = try ProblemTree()
        let json = try CheckRun(["check", tree.root, "--json"]).document().findings
        let csvRun = try CheckRun(["check", tree.root, "--csv"])
        #expect(csvRun.status == 1)
        let table = CSV.parse(csvRun.output)
        #expect(table.first == CheckReport.csvColumns)
        let rows = table.dropFirst().map { CheckRow(scope: $0[0], path: $0[1], level: $0[2], code: $0[3], detail: $0[4], whatHappens: $0[5], fix: $0[6], skipped: $0[7] == "true") }
        let comparable = { (rows: [CheckRow]) in rows.filter { $0.scope == "item" }.map { "\(Array($0.path.utf8))|\($0.level)|\($0.code)|\($0.detail)|\($0.skipped)" }.sorted() }
        #expect(comparable(rows) == comparable(json))
        #expect(Set(rows.map(\.code)) == Set(json.map(\.code)))

        let text = try CheckRun(["check", tree.root])
        #expect(text.status == 1)
        for (path, code, _) in tree.expected where code != "path-too-long" {
            #expect(text.output.contains("  \(code) ("), "\(code) has no group in the text")
            #expect(text.output.contains("    \(path): "), "\(path) is not listed in the text")
        }
        #expect(text.output.contains("summary: \(tree.entries) entries in "))
        #expect(text.output.contains("\(tree.files) files, \(tree.directories) directories, \(tree.others) other items"))
        #expect(tree.probeFilesLeft() == [])
    }

    @Test func textShowsTwentyFindingsPerCodeWhileJSONShowsAll() throws {
        let scratch = Scratch()
        for index in 0..<25 { #expect(mkfifo(scratch.path + "/fifo-\(index)", 0o644) == 0) }
        let text = try CheckRun(["check", scratch.path])
        #expect(text.output.components(separatedBy: ": a FIFO").count - 1 == CheckReport.textLimitPerCode)
        #expect(text.output.contains("… and 5 more"))
        let json = try CheckRun(["check", scratch.path, "--json"]).document()
        #expect(json.findings.count { $0.code == "special-file" } == 25)
    }

    @Test func aCleanTreeExitsZero() throws {
        let scratch = Scratch()
        scratch.write("a.txt", Array("a".utf8))
        scratch.write("folder/b.txt", Array("bb".utf8))
        let run = try CheckRun(["check", scratch.path, "--json"])
        let document = try run.document()
        #expect(document.findings.filter { $0.level == "error" }.map(\.code) == [], "a clean tree on a working system has no error")
        #expect(run.status == 0)
        #expect(document.findings.allSatisfy { $0.scope == "system" })
        #expect(document.summary.files == 2 && document.summary.directories == 1 && document.summary.bytes == 3)
    }

    /// One owner per rule: the set `check` reports as skipped is the set the scan skips, with the same reasons.
    @Test func whatCheckCallsNotSyncedIsWhatTheScanSkips() throws {
        let tree = try ProblemTree()
        let scan = try TreeWalker(root: tree.root).walk().skipped
        let findings = try CheckRun(["check", tree.root, "--json"]).document().findings.filter(\.skipped)
        let key = { (path: String, reason: String) in "\(Array(path.utf8))|\(reason)" }
        #expect(Set(findings.map { key($0.path, $0.detail) }) == Set(scan.map { key($0.path, $0.reason) }))
        #expect(!scan.isEmpty)
        // And in process, through the library.
        let library = try DatasetCheck(root: tree.root).run().findings.filter(\.code.skipsItem)
        #expect(Set(library.map { key($0.path, $0.detail) }) == Set(scan.map { key($0.path, $0.reason) }))
    }

    /// Root reads everything; without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH it is an ordinary owner,
    /// which a mode of 000 keeps out.
    @Test(.enabled(if: geteuid() != 0 || SystemCheck.which("setpriv") != nil, "root needs setpriv (util-linux) to drop its read override"))
    func unreadableFilesAndDirectoriesAreErrors() throws {
        let scratch = Scratch()
        scratch.write("locked/inside.txt", Array("x".utf8))
        scratch.write("secret.txt", Array("x".utf8))
        scratch.write("open.txt", Array("x".utf8))
        chmod(scratch.path + "/locked", 0)
        chmod(scratch.path + "/secret.txt", 0)
        defer { chmod(scratch.path + "/locked", 0o755) }
        let arguments = ["check", scratch.path, "--json"]
        let run = geteuid() == 0
            ? try CheckRun(arguments, through: [SystemCheck.which("setpriv")!, "--inh-caps=-dac_override,-dac_read_search",
                                                "--bounding-set=-dac_override,-dac_read_search"])
            : try CheckRun(arguments)
        let findings = try run.document().findings.filter { $0.scope == "item" }
        #expect(run.status == 1)
        #expect(findings.map { "\($0.path) \($0.level) \($0.code) \($0.skipped)" }.sorted()
                == ["locked error unreadable true", "secret.txt error unreadable-file false"])
        #expect(findings.first { $0.code == "unreadable" }?.detail == String(cString: strerror(EACCES)))
    }

    // MARK: Rules, as functions

    @Test(arguments: [
        ("a/b/c", nil),
        ("", "the path is empty"),
        ("/a", "the path is absolute"),
        ("a/", "the path has an empty component"),
        ("a//b", "the path has an empty component"),
        ("./a", "the path has a '.' component"),
        ("a/../b", "the path has a '..' component"),
        ("a/.../b", nil),
        ("a/.b/c.", nil),
        ("a\u{0}b", "the path contains a NUL byte"),
        (String(String(repeating: "é/", count: 1024).dropLast()), nil),
        (String(repeating: "é", count: 255), "a path component is longer than 255 bytes"),
        (String(repeating: "ab/", count: 682) + "ab", nil),
        (String(repeating: "ab/", count: 682) + "abc", "the path is longer than 2048 characters"),
    ] as [(String, String?)])
    func pathsAreJudgedByCharactersForLengthAndBytesForComponents(path: String, problem: String?) {
        #expect(SafePath.problem(with: path) == problem)
    }

    @Test(arguments: [
        (String(repeating: "n", count: 256), "component-too-long"),
        ("a/" + String(repeating: "é", count: 128), "component-too-long"),
        ((0..<11).map { _ in String(repeating: "p", count: 200) }.joined(separator: "/"), "path-too-long"),
        ("a//b", "unsafe-path"),
    ])
    func eachPathRuleOfTheScanHasItsCode(path: String, code: String) {
        let problem = SafePath.problem(with: path)
        #expect(problem != nil)
        #expect(CheckCode.of(.unsafePath(problem ?? ""), path: path).name == code)
        #expect(SafePath.problem(with: String(repeating: "n", count: 255)) == nil, "255 bytes is allowed")
    }

    /// File names never become object keys (they live inside commit records), and FileREST escapes
    /// what Azure Files refuses in the keys it does store: so no backend refuses a name, and check
    /// reports none of these, whichever backend the share is on.
    @Test func namesAzureFilesRefusesAreNoProblemOnAnyBackend() async throws {
        let scratch = Scratch()
        let names = ["trailing.", "trailing ", "a:b", "a|b", "a<b>", "star*", "what?", "quote\"", "back\\slash", "CON", "nul.txt", "tab\tname"]
        for name in names {
            scratch.write(name, Array("x".utf8))
            let escaped = FileRESTPath.escapeName(name)
            #expect(FileRESTPath.unescapeName(escaped) == name)
            #expect(!escaped.utf8.contains { Array("\\:|<>*?\"\t".utf8).contains($0) } && !escaped.hasSuffix(".") && !escaped.hasSuffix(" "))
        }
        _ = try await ShareAdmin.create(url: "file://" + scratch.path + "-share", minChunk: 1 << 16, averageChunk: 1 << 18, maxChunk: 1 << 20, packSize: 1 << 20)
        defer { try? FileManager.default.removeItem(atPath: scratch.path + "-share") }
        let report = try await CheckReport.evaluate(path: scratch.path, shareURL: "file://" + scratch.path + "-share")
        #expect(report.findings.filter { !$0.isSystem } == [])
        #expect(report.totals.files == names.count)
    }

    @Test func everyCodeIsDocumented() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let doc = try String(contentsOf: root.appendingPathComponent("docs/check.md"), encoding: .utf8)
        for code in CheckCode.all { #expect(doc.contains("`\(code.name)`"), "docs/check.md lacks \(code.name)") }
        #expect(Set(CheckCode.all.map(\.name)).count == CheckCode.all.count, "codes are unique")
    }

    @Test(arguments: [
        ("Tue, 25 Nov 2025 17:32:42 GMT", 1_764_091_962.0),
        ("Thu, 01 Jan 1970 00:00:00 GMT", 0.0),
    ])
    func theServerClockIsReadFromTheDateHeader(header: String, seconds: Double) {
        let response = HTTPResponse(status: 403, headers: HTTPHeaders([("Date", header)]), body: [])
        #expect(response.date?.timeIntervalSince1970 == seconds)
        #expect(HTTPResponse(status: 200, headers: HTTPHeaders([("Date", "yesterday")]), body: []).date == nil)
    }

    // MARK: System

    @Test func systemFindingsAgreeWithWhatTheMachineShows() throws {
        let scratch = Scratch()
        let document = try CheckRun(["check", scratch.path, "--json"]).document()
        let system = document.findings.filter { $0.scope == "system" }
        func one(_ codes: String...) -> CheckRow? {
            let found = system.filter { codes.contains($0.code) }
            #expect(found.count == 1, "one of \(codes): \(found.map(\.code))")
            return found.first
        }
        let release = try String(contentsOfFile: "/proc/sys/kernel/osrelease", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(one("kernel")?.detail == "Linux \(release)")
        let numbers = release.split(whereSeparator: { !$0.isNumber }).prefix(2).compactMap { Int($0) }
        let version = (numbers[0], numbers[1])

        let status = try String(contentsOfFile: "/proc/self/status", encoding: .utf8)
        let capEff = status.split(separator: "\n").first { $0.hasPrefix("CapEff:") }.flatMap { UInt64($0.split(separator: "\t").last!, radix: 16) } ?? 0
        let admin = capEff & (1 << 21) != 0
        #expect(one("cap-sys-admin", "no-cap-sys-admin")?.code == (admin ? "cap-sys-admin" : "no-cap-sys-admin"))
        let fanotify = one("fanotify", "fanotify-unavailable")
        if version < (6, 14) || !admin { #expect(fanotify?.code == "fanotify-unavailable") }

        let device = open("/dev/fuse", O_RDWR)
        if device >= 0 { close(device) }
        #expect(one("fuse", "fuse-unavailable")?.code == (device >= 0 && (geteuid() == 0 || SystemCheck.which("fusermount3") != nil) ? "fuse" : "fuse-unavailable"))
        #expect(one("fuse-passthrough", "fuse-passthrough-unavailable")?.code
                == (device >= 0 && geteuid() == 0 && version >= (6, 9) ? "fuse-passthrough" : "fuse-passthrough-unavailable"))

        // The volume's own answers, from a file the test makes.
        let probe = scratch.path + "/probe"
        let fd = open(probe, O_RDWR | O_CREAT, 0o600)
        #expect(fd >= 0)
        let xattr = fsetxattr(fd, "user.test", "1", 1, 0) == 0
        let block = [UInt8](repeating: 1, count: 1 << 17)
        _ = block.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        let punched = CLinux_punch_hole(fd, 0, 1 << 16) == 0
        close(fd)
        unlink(probe)
        #expect(one("user-xattr", "user-xattr-unsupported")?.code == (xattr ? "user-xattr" : "user-xattr-unsupported"))
        #expect(one("punch-hole", "punch-hole-unsupported")?.code == (punched ? "punch-hole" : "punch-hole-unsupported"))

        // ext4 has a journal when /proc/fs/jbd2 lists its device; other file systems are not judged here.
        let journal = one("journal", "no-journal")
        if let mount = Self.mountOf(scratch.path), mount.type == "ext4" {
            let devices = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/fs/jbd2")) ?? []).map { $0.split(separator: "-").dropLast().joined(separator: "-") }
            let name = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/sys/dev/block/\(mount.device)"))?.split(separator: "/").last.map(String.init)
                ?? URL(fileURLWithPath: mount.source).lastPathComponent
            #expect(journal?.code == (devices.contains(name) ? "journal" : "no-journal"), "\(mount) against \(devices)")
        }
        var volume = statvfs()
        statvfs(scratch.path, &volume)
        let freePercent = Double(volume.f_bavail) * 100 / Double(volume.f_blocks)
        #expect(one("free-space", "low-free-space")?.code == (freePercent < 10 ? "low-free-space" : "free-space"))
        let memory = one("memory", "memory-low")
        #expect(memory?.code == "memory", "a tree of one folder fits in any RAM")
        #expect(memory?.detail.contains("for 0 items") == true)
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: scratch.path)) ?? ["?"]) == [], "the probe file is removed")
    }

    @Test func aShareThatOpensIsReportedAndOneThatDoesNotIsAnError() async throws {
        let scratch = Scratch()
        let share = "file://" + scratch.path + "/share"
        try FileManager.default.createDirectory(atPath: scratch.path + "/tree", withIntermediateDirectories: true)
        let missing = try CheckRun(["check", scratch.path + "/tree", "--share", share, "--json"])
        #expect(missing.status == 1)
        #expect(try missing.document().findings.contains { $0.code == "share-unavailable" && $0.level == "error" })
        _ = try await ShareAdmin.create(url: share, minChunk: 1 << 16, averageChunk: 1 << 18, maxChunk: 1 << 20, packSize: 1 << 20)
        let opened = try CheckRun(["check", scratch.path + "/tree", "--share", share, "--json"])
        let findings = try opened.document().findings
        #expect(findings.contains { $0.code == "share" })
        #expect(findings.first { $0.code == "clock" }?.detail.contains("no clock of its own") == true)
        #expect(opened.status == 0)
    }

    /// The mount holding `path`: its major:minor, type and source, from /proc/self/mountinfo.
    static func mountOf(_ path: String) -> (device: String, type: String, source: String)? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        let device = UInt64(info.st_dev)
        let key = "\(((device >> 8) & 0xfff) | ((device >> 32) & ~0xfff)):\((device & 0xff) | ((device >> 12) & ~0xff))"
        let lines = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8))?.split(separator: "\n") ?? []
        guard let line = lines.last(where: { $0.split(separator: " ")[2] == key }) else { return nil }
        let after = line.split(separator: " ").drop { $0 != "-" }.dropFirst()
        return (key, String(after.first ?? ""), String(after.dropFirst().first ?? ""))
    }
}

/// A tree with one of each namespace problem, and what check must say about it.
final class ProblemTree {
    let scratch = Scratch()
    var root: String { scratch.path }
    /// (path, code, level) of every item finding.
    var expected: [(String, String, String)] = []
    let nfc = "caf\u{E9}.txt"
    let nfd = "cafe\u{301}.txt"
    var entries = 0, files = 0, directories = 0, others = 0
    var bytes: Int64 = 0
    var deepestPath = "", deepestDepth = 0, rootEntries = 0

    init() throws {
        func file(_ path: String, _ size: Int) {
            scratch.write(path, [UInt8](repeating: 0x61, count: size))
            files += 1
            bytes += Int64(size)
        }
        file("ok.txt", 5)
        try FileManager.default.createDirectory(atPath: root + "/dir", withIntermediateDirectories: true)
        directories += 1
        file("dir/inner.txt", 3)
        file("linked.txt", 4)
        #expect(link(root + "/linked.txt", root + "/dir/hard") == 0)
        files += 1
        bytes += 4
        expected += [("linked.txt", "hard-link", "warning"), ("dir/hard", "hard-link", "warning")]
        // A name that is not UTF-8, made from raw bytes.
        var raw = Array((root + "/bad").utf8) + [0xFF] + Array(".txt".utf8) + [0]
        let fd = raw.withUnsafeMutableBufferPointer { $0.withMemoryRebound(to: CChar.self) { open($0.baseAddress!, O_WRONLY | O_CREAT, 0o644) } }
        #expect(fd >= 0)
        _ = write(fd, "x", 1)
        close(fd)
        files += 1
        bytes += 1
        expected.append(("bad\u{FFFD}.txt", "name-not-utf8", "error"))
        #expect(symlink("ok.txt", root + "/symlink") == 0)
        #expect(mkfifo(root + "/fifo", 0o644) == 0)
        #expect(mknod(root + "/socket", S_IFSOCK | 0o644, 0) == 0)
        others += 3
        expected += [("symlink", "symlink", "warning"), ("fifo", "special-file", "info"), ("socket", "special-file", "info")]
        let sparse = creat(root + "/sparse.bin", 0o644)
        #expect(sparse >= 0 && ftruncate(sparse, 8 << 20) == 0)
        close(sparse)
        files += 1
        bytes += 8 << 20
        expected.append(("sparse.bin", "sparse-file", "info"))
        // Normalization twins: the NFD name sorts first by its bytes ('e' < 0xC3), so the NFC one is the twin.
        file(nfc, 2)
        file(nfd, 2)
        expected.append((nfc, "normalization-twin", "error"))
        file("Thumbs.db", 0)
        file("x.tmp", 0)
        expected += [("Thumbs.db", "skip-list", "info"), ("x.tmp", "skip-list", "info")]
        // A path over 2,048 characters: the first folder past the limit is skipped with all it holds.
        var path = "long"
        try FileManager.default.createDirectory(atPath: root + "/" + path, withIntermediateDirectories: true)
        directories += 1
        for level in 1...11 {
            path += "/" + String(repeating: "p", count: 200)
            try FileManager.default.createDirectory(atPath: root + "/" + path, withIntermediateDirectories: true)
            directories += 1
            if path.count > SafePath.maxPathLength {
                expected.append((path, "path-too-long", "error"))
                deepestPath = path
                deepestDepth = level + 1
                break
            }
        }
        scratch.write(path + "/deep.txt", Array("deep".utf8)) // never seen: beneath a skipped folder
        // The root lists 13 names, dir 2, and "long" and the ten folders below it within the limit one each.
        rootEntries = 13
        entries = rootEntries + 2 + 11
    }

    /// Names of probe files left in the root.
    func probeFilesLeft() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).filter { $0.hasPrefix(SystemCheck.probePrefix) || $0.hasPrefix(".tiergate-check") }
    }
}

/// One finding as `--json` and `--csv` print it.
struct CheckRow: Decodable, Equatable {
    var scope: String
    var path: String
    var level: String
    var code: String
    var detail: String
    var whatHappens: String
    var fix: String
    var skipped: Bool
}

/// `--json`'s document.
struct CheckDocument: Decodable {
    struct Summary: Decodable {
        var entries, files, directories, others, stubs: Int
        var bytes: Int64
        var deepestPath: String
        var deepestDepth: Int
        var largestDirectory: String
        var largestDirectoryEntries: Int
        var seconds, entriesPerSecond: Double
        var errors, warnings, info: Int
    }
    var root: String
    var summary: Summary
    var findings: [CheckRow]
}

/// One `tiergate check` process run to its end; logs go outside the checked tree.
struct CheckRun {
    var status: Int32?
    var output: String
    var errorOutput: String

    /// Runs `tiergate arguments…`, or `through… tiergate arguments…` (a wrapper such as setpriv).
    init(_ arguments: [String], through wrapper: [String] = []) throws {
        let logs = Scratch()
        if wrapper.isEmpty {
            let child = try TiergateProcess(arguments, logs: logs.path)
            status = child.exitStatus(timeout: 120)
            output = child.output
            errorOutput = child.errorOutput
        } else {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: wrapper[0])
            process.arguments = Array(wrapper.dropFirst()) + [try tiergateExecutable()] + arguments
            let out = logs.path + "/out", err = logs.path + "/err"
            FileManager.default.createFile(atPath: out, contents: nil)
            FileManager.default.createFile(atPath: err, contents: nil)
            process.standardOutput = FileHandle(forWritingAtPath: out)
            process.standardError = FileHandle(forWritingAtPath: err)
            try process.run()
            process.waitUntilExit()
            status = process.terminationReason == .exit ? process.terminationStatus : nil
            output = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
            errorOutput = (try? String(contentsOfFile: err, encoding: .utf8)) ?? ""
        }
    }

    func document() throws -> CheckDocument {
        try JSONDecoder().decode(CheckDocument.self, from: Data(output.utf8))
    }
}

/// An RFC 4180 reader: quoted fields with doubled quotes, commas and newlines inside.
enum CSV {
    static func parse(_ text: String) -> [[String]] {
        var rows: [[String]] = [], row: [String] = [], field = ""
        var quoted = false, wasQuoted = false
        var characters = Array(text.unicodeScalars)[...]
        while let c = characters.popFirst() {
            if quoted {
                if c == "\"" {
                    if characters.first == "\"" { field.unicodeScalars.append("\""); characters = characters.dropFirst() } else { quoted = false }
                } else {
                    field.unicodeScalars.append(c)
                }
            } else if c == "\"" {
                quoted = true
                wasQuoted = true
            } else if c == "," {
                row.append(field); field = ""; wasQuoted = false
            } else if c == "\n" {
                row.append(field); rows.append(row); row = []; field = ""; wasQuoted = false
            } else if c != "\r" {
                field.unicodeScalars.append(c)
            }
        }
        if !field.isEmpty || wasQuoted || !row.isEmpty { row.append(field); rows.append(row) }
        return rows
    }
}
