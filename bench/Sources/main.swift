import Foundation

// tiergate-bench [group ...]: runs the named benchmark groups (all when none is named) and prints one table.

/// Every benchmark group; add a new group's `BenchGroup` here (one file per group).
let groups: [BenchGroup] = [
    ChunkingBench.group,
    MigrateBench.group,
    SyncBench.group,
    TieringBench.group,
    BackendBench.group,
    DownloadBench.group,
    FanotifyBench.group,
    MountBench.group,
    CheckBench.group,
    OperationsBench.group,
    LimitBench.group,
    ScaleBench.group,
    MoveBench.group,
    GCBench.group,
    ReplayBench.group,
    JournalBench.group,
]

let arguments = Array(CommandLine.arguments.dropFirst())
if arguments.contains(where: { ["-h", "--help", "--list"].contains($0) }) {
    print("usage: tiergate-bench [group ...]   (default: all groups)\n\ngroups:")
    for group in groups { print("  \(group.name.padding(toLength: 12, withPad: " ", startingAt: 0)) \(group.summary)") }
    exit(0)
}
let unknown = arguments.filter { name in !groups.contains { $0.name == name } }
if !unknown.isEmpty {
    FileHandle.standardError.write(Data("tiergate-bench: unknown group \(unknown.joined(separator: ", ")); known: \(groups.map(\.name).joined(separator: ", "))\n".utf8))
    exit(2)
}
let selected = arguments.isEmpty ? groups : groups.filter { arguments.contains($0.name) }

let table = BenchTable()
var failed = false
for group in selected {
    FileHandle.standardError.write(Data("running \(group.name)…\n".utf8))
    do {
        try await group.run(table)
    } catch {
        // One broken group (say, a missing S3 server) must not hide the figures of the others.
        FileHandle.standardError.write(Data("tiergate-bench: group \(group.name) failed: \(error)\n".utf8))
        failed = true
    }
}
print(table.render())
exit(failed ? 1 : 0)
