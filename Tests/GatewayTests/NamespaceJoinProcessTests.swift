import Foundation
@testable import Gateway
import Glibc
import Testing

/// A new endpoint takes the namespace at the head in batches (``SyncEngine/namespaceBatch``): its first
/// files appear before the whole share is planned, and a first pass killed with SIGKILL between (or inside)
/// batches leaves nothing wrong: the next pass adopts what was applied and ends with the share's tree, with
/// no conflict copies, for a full and for a namespace-only endpoint.
@Suite(.serialized) struct NamespaceJoinProcessTests {
    @Test(arguments: [false, true]) func aFirstPassKilledBetweenBatchesEndsWithTheSharesTree(namespaceOnly: Bool) throws {
        let setup = try TwoEndpoints(), scratch = setup.scratch
        let logs = setup.logs, alpha = setup.alpha, beta = setup.beta, share = setup.share
        // More files than one batch, in folders; each file's bytes name it.
        let files = 25_000
        for index in 0..<files {
            let folder = alpha + "/d\(index % 90)"
            if index < 90 { try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true) }
            try Data("file \(index)\n".utf8).write(to: URL(fileURLWithPath: folder + "/f\(index).txt"))
        }
        try setup.cli(["share", "create", share])
        try setup.cli(["endpoint", "add", alpha, "--share", share, "--state-dir", scratch.path + "/state-alpha", "--server-name", "alpha"])
        try setup.cli(["sync", "--state-dir", scratch.path + "/state-alpha"])

        let state = scratch.path + "/state-beta"
        try setup.cli(["endpoint", "add", beta, "--share", share, "--state-dir", state, "--server-name", "beta"])
        if namespaceOnly {
            try setup.cli(["endpoint", "tiering", beta, "--state-dir", state, "--free-space", "0", "--download", "namespace-only"])
        }
        // Killed once its first batch is in place (a file of the first folder in path order exists).
        let first = try TiergateProcess(["sync", "--state-dir", state], logs: logs)
        let deadline = Date().addingTimeInterval(120)
        while Date() < deadline, !FileManager.default.fileExists(atPath: beta + "/d0/f0.txt") { usleep(2_000) }
        first.send(SIGKILL)
        let status = first.exitStatus(timeout: 60)
        let present = (FileManager.default.enumerator(atPath: beta)?.allObjects as? [String] ?? []).filter { $0.hasSuffix(".txt") }.count
        #expect(status == nil, "the first pass ended before it was killed (\(present) files): the test proved nothing")
        #expect(present > 0 && present < files, "killed with \(present) of \(files) files in place")

        try setup.cli(["sync", "--state-dir", state])
        var found = 0
        for case let relative as String in FileManager.default.enumerator(atPath: beta)?.allObjects ?? [] where !relative.hasPrefix(".tiergate") {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: beta + "/" + relative, isDirectory: &isDirectory), !isDirectory.boolValue else { continue }
            found += 1
            let name = (relative as NSString).lastPathComponent
            let index = Int(name.dropFirst().dropLast(4)) ?? -1
            #expect(name.hasPrefix("f") && relative == "d\(index % 90)/f\(index).txt", "\(relative): not a file of the share (a conflict copy?)")
            if namespaceOnly { #expect(StubFile.marker(atPath: beta + "/" + relative) == .tiered, "\(relative) is not a stub") }
        }
        #expect(found == files, "\(found) files of \(files)")
        // Content staged ahead of the batch being placed when the first pass was killed is gone.
        let staged = (try? FileManager.default.contentsOfDirectory(atPath: beta + "/.tiergate/staging")) ?? ["(unreadable)"]
        #expect(staged.isEmpty, "left in the staging folder: \(staged.prefix(5))")
        // The files hold their bytes (stubs of two folders recalled first: no daemon is running).
        if namespaceOnly {
            for folder in ["d0", "d89"] { try setup.cli(["recall", beta + "/" + folder, "--state-dir", state]) }
        }
        var wrong: [String] = []
        for index in 0..<files where !namespaceOnly || [0, 89].contains(index % 90) {
            let path = beta + "/d\(index % 90)/f\(index).txt"
            if FileManager.default.contents(atPath: path) != Data("file \(index)\n".utf8) { wrong.append(path) }
        }
        #expect(wrong.isEmpty, "\(wrong.count) files with other bytes: \(wrong.prefix(5))")
    }
}
