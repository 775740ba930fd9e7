import Foundation
@testable import Gateway
import Glibc
import Testing

/// A whole walk (a one-shot `tiergate sync`, the daemon's start and safety net) holds only what differs
/// from the database: the tree is walked in the database's path order beside its entries, and what
/// differs is looked at again as a pass over the change journal's paths would. What it keeps must be
/// exactly enough: every kind of change arrives, and so does everything a walk that holds every item
/// (`TIERGATE_WHOLE_WALK_LIMIT` below what differs) sends.
@Suite(.serialized) struct WholeWalkTests {
    @Test func aWalkInPathOrderMeetsEveryItemInTheDatabasesOrder() throws {
        let scratch = Scratch(), root = scratch.path + "/tree"
        // Names that sort around a folder's `/`: space, `-`, `.` sort before it, `0` and letters after.
        for folder in ["a", "a b", "a/x", "ab", "a.d", "z/y/x"] {
            try FileManager.default.createDirectory(atPath: root + "/" + folder, withIntermediateDirectories: true)
        }
        for file in ["a-b", "a.txt", "a0", "a/x-1", "a/x/m", "a/x.", "a b/z", "ab/q", "B", "\u{e9}", "a.d/f", "z/y/x/w", "z/y-"] {
            try Data(file.utf8).write(to: URL(fileURLWithPath: root + "/" + file))
        }
        let walker = TreeWalker(root: root)
        var skipped: [SkippedItem] = []
        var ordered: [String] = []
        try walker.walkInPathOrder(skipped: &skipped) { ordered.append($0.path) }
        let whole = try walker.walk()
        #expect(ordered.count == whole.items.count && Set(ordered) == Set(whole.items.map(\.path)), "\(ordered) against \(whole.items.map(\.path))")
        let byBytes = ordered.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        #expect(ordered == byBytes, "not in the order of the paths' bytes: \(ordered)")
        #expect(skipped.map(\.path) == whole.skipped.map(\.path))
    }

    /// Every kind of change between two whole walks of server A, then one pass of server B. With the
    /// default limit the walk holds what differs (its summary says how much it looked at again); with a
    /// limit of 5 it holds everything, the walk it falls back to. Both must leave B as A.
    @Test(arguments: [nil, "5"])
    func everyKindOfChangeArrivesThroughAWholeWalk(limit: String?) throws {
        let scratch = Scratch(), logs = scratch.path
        let url = "file://" + scratch.path + "/share"
        let (a, b) = (scratch.path + "/a", scratch.path + "/b")
        for folder in 0..<20 {
            try FileManager.default.createDirectory(atPath: a + "/d\(folder)", withIntermediateDirectories: true)
            for file in 0..<50 { try Data("folder \(folder) file \(file)\n".utf8).write(to: URL(fileURLWithPath: a + "/d\(folder)/f\(file)")) }
        }
        try FileManager.default.createDirectory(atPath: b, withIntermediateDirectories: true)
        try TiergateProcess.expect(0, ["share", "create", url], logs: logs)
        for (root, name) in [(a, "a"), (b, "b")] {
            try TiergateProcess.expect(0, ["endpoint", "add", root, "--share", url, "--state-dir", scratch.path + "/state-" + name, "--server-name", name], logs: logs)
            try TiergateProcess.expect(0, ["sync", "--state-dir", scratch.path + "/state-" + name], logs: logs)
        }
        let environment = limit.map { ["TIERGATE_WHOLE_WALK_LIMIT": $0] } ?? [:]
        func sync(_ name: String) throws -> String {
            let result = try TiergateProcess.run(["sync", "--state-dir", scratch.path + "/state-" + name], logs: logs, environment: environment)
            guard result.status == 0 else { throw GatewayError("sync \(name) failed: \(result.output)") }
            return result.output
        }
        // A pass with nothing changed looks at nothing again.
        let idle = try sync("a")
        #expect(idle.contains("uploaded 0 ") && idle.contains("examined 1020 items (whole tree)"), "\(idle)")
        if limit == nil { #expect(idle.contains("0 looked at again"), "\(idle)") }

        let commands = [
            "echo edited > d0/f0",                          // new content, another size
            "printf 'folder 0 file 2\\n' > d0/f2",           // the same content written again: a new mtime only
            "echo more >> d0/f3",                            // appended
            "sleep 0.01; touch d0/f4",                       // mtime alone
            "echo new > d1/new && mkdir -p d1/n/m && echo deep > d1/n/m/x", // new file, new folders
            "rm d2/f0 && rm -r d3",                          // a file and a folder deleted
            "mv d4/f0 d5/moved && mv d6 d7/inner",           // a file and a folder renamed
            "chmod 700 d8 && chmod 600 d9/f1",               // modes
            "rm d10/f0 && mkdir d10/f0 && echo in > d10/f0/in", // a file replaced by a folder
            "rm -r d11 && echo was-a-folder > d11",          // a folder replaced by a file
            "mv d12/f1 d12/tmp && mv d12/f2 d12/f1 && mv d12/tmp d12/f2", // two files swapped
        ]
        for command in commands {
            #expect(try RenamePassProcessTests.shell(command, in: a) == 0, "\(command)")
        }
        let pass = try sync("a")
        if limit == nil {
            // 1,020 items; what differs is about 230 paths (the 150 items of the three folders deleted,
            // moved and replaced among them, the folders holding changes): the rest is held by nobody.
            let again = pass.range(of: " looked at again").map { pass[..<$0.lowerBound].split(separator: " ").last.flatMap { Int($0) } } ?? nil
            #expect(again != nil && again! < 300, "the whole walk did not hold only what differs: \(pass)")
        } else {
            #expect(!pass.contains("looked at again"), "the limit did not make the walk hold everything: \(pass)")
        }
        #expect(pass.contains("(whole tree)"), "\(pass)")
        // The file's and the folder's renames are renames (how many the swap through a third name adds
        // depends on the two files' timestamps).
        for (from, to) in [("d4/f0", "d5/moved"), ("d6", "d7/inner")] {
            let history = try TiergateProcess.expect(0, ["share", "history", url, from], logs: logs)
            #expect(history.contains("renamed to \(to)"), "\(from): \(history)")
        }
        _ = try sync("b")
        let (got, expected) = (RenamePassProcessTests.tree(b), RenamePassProcessTests.tree(a))
        #expect(got == expected, "B differs from A: \(RenamePassProcessTests.difference(got, expected))")
        // And nothing is left to commit.
        let again = try sync("a")
        #expect(again.contains("uploaded 0 (0 B), renamed 0, deleted 0"), "\(again)")
    }

    /// A name that is not UTF-8 shows with U+FFFD for its bad bytes; a valid name may hold U+FFFD itself.
    /// The valid one syncs, the other is reported (the shown path once stood for both: the valid file was
    /// never uploaded, and nothing said so).
    @Test func aValidNameThatLooksLikeAnInvalidOneStillSyncs() throws {
        let scratch = Scratch(), logs = scratch.path
        let url = "file://" + scratch.path + "/share"
        let (a, b) = (scratch.path + "/a", scratch.path + "/b")
        try FileManager.default.createDirectory(atPath: a, withIntermediateDirectories: true)
        for (name, text) in [(Array("bad\u{FFFD}file".utf8), "valid\n"), (Array("bad".utf8) + [0xFF] + Array("file".utf8), "not UTF-8\n")] {
            let fd = (Array(a.utf8) + [UInt8(ascii: "/")] + name + [0]).withUnsafeBufferPointer { bytes in
                bytes.withMemoryRebound(to: CChar.self) { open($0.baseAddress!, O_WRONLY | O_CREAT | O_EXCL, 0o644) }
            }
            #expect(fd >= 0 && write(fd, text, text.utf8.count) == text.utf8.count)
            close(fd)
        }
        try TiergateProcess.expect(0, ["share", "create", url], logs: logs)
        try FileManager.default.createDirectory(atPath: b, withIntermediateDirectories: true)
        for (root, name) in [(a, "a"), (b, "b")] {
            try TiergateProcess.expect(0, ["endpoint", "add", root, "--share", url, "--state-dir", scratch.path + "/state-" + name, "--server-name", name], logs: logs)
            try TiergateProcess.expect(0, ["sync", "--state-dir", scratch.path + "/state-" + name], logs: logs)
        }
        #expect((try? String(contentsOfFile: b + "/bad\u{FFFD}file", encoding: .utf8)) == "valid\n", "the valid name arrived")
        #expect(try FileManager.default.contentsOfDirectory(atPath: b).filter { !$0.hasPrefix(".") }.count == 1)
        let errors = try TiergateProcess.expect(0, ["errors", "--state-dir", scratch.path + "/state-a"], logs: logs)
        #expect(errors.contains("not valid UTF-8"), "the other is reported: \(errors)")
    }
}
