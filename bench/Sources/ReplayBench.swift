import CloudShare
import Foundation

/// Replaying the log into a namespace, as a namespace-only download, `get`, `get --at` and `share verify`
/// do: one commit of 1,000 operations applied to a namespace of N files (1,000 files in each folder). The
/// peer is a commit of 1,000 upserts of new files, the cost of what changed. A file's rename should cost
/// about what an upsert costs, whatever the namespace's size (the first rename also counts the items
/// beneath each folder, once); 1,000 folder renames move every file, in one sweep of the paths.
/// `REPLAY_FILES` sets N (default 1,000,000).
enum ReplayBench {
    static let group = BenchGroup(name: "replay", summary: "a commit of 1,000 renames (files, then folders) applied to a namespace of N files (REPLAY_FILES, default 1,000,000), beside 1,000 upserts") { table in
        try run(table)
    }

    static func run(_ table: BenchTable) throws {
        let files = BenchFiles.setting("REPLAY_FILES", 1_000_000)
        let folders = max(1, files / 1000)
        guard folders >= 1000 else { throw BenchError("REPLAY_FILES=\(files): give at least 1,000,000 (1,000 folders to rename)") }
        func entry(_ kind: NamespaceEntry.Kind, _ id: Int) -> NamespaceEntry {
            NamespaceEntry(kind: kind, fileID: String(id), size: 1000, mode: 0o644, mtime: 0, uid: 0, gid: 0)
        }
        var operations: [NamespaceOperation] = []
        operations.reserveCapacity(files + folders)
        for folder in 0..<folders {
            operations.append(.upsert("d\(folder)", entry(.directory, -folder - 1)))
            for file in 0..<(files / folders) { operations.append(.upsert("d\(folder)/f\(file)", entry(.file, folder * 1000 + file))) }
        }
        var base = Namespace()
        var first = Commit(author: "bench", authorName: "bench", operations: operations)
        first.sequence = 1
        base.apply(first)
        operations = []
        FileHandle.standardError.write(Data("replay: a namespace of \(base.fileCount) files in \(folders) folders\n".utf8))

        func timed(_ name: String, _ operations: [NamespaceOperation]) -> Double {
            var namespace = base
            var commit = Commit(author: "bench", authorName: "bench", operations: operations)
            commit.sequence = 2
            let seconds = Stopwatch.seconds { namespace.apply(commit) }
            precondition(namespace.sequence == 2, "\(name) was not applied")
            return seconds
        }
        let upserts = timed("upserts", (0..<1000).map { .upsert("d\($0)/new", entry(.file, -1)) })
        let fileRenames = timed("file renames", (0..<1000).map { NamespaceOperation(op: .rename, path: "d\($0)/renamed", from: "d\($0)/f0", entry: nil) })
        let folderRenames = timed("folder renames", (0..<1000).map { NamespaceOperation(op: .rename, path: "e\($0)", from: "d\($0)", entry: nil) })
        table.add("replay: 1,000 file renames in \(files) files", fileRenames * 1000, "ms", peer: upserts * 1000,
                  note: "peer: 1,000 upserts in the same commit; the first rename counts the items beneath each folder")
        table.add("replay: 1,000 folder renames (1,000 files each) in \(files) files", folderRenames * 1000, "ms", peer: upserts * 1000,
                  note: "peer: 1,000 upserts; the renames move every file, in one sweep")
    }
}
