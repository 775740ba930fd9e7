import CloudShare
import Foundation
@testable import Gateway
import Testing

/// Pending operations are superseded by newer operations on their paths, and only by those: the lookup
/// that spares a scan of the items for unrelated operations must never miss one that applies.
struct DeferredOperationsTests {
    private static func commit(_ sequence: UInt64) -> Commit {
        var commit = Commit(author: "test", authorName: "Test", operations: [])
        commit.sequence = sequence
        return commit
    }

    private static let file = NamespaceEntry(kind: .file, fileID: NamespaceEntry.newFileID(), size: 0, mode: 0o644, mtime: 0, uid: 0, gid: 0)

    private static func paths(_ deferred: DeferredOperations) -> [String] {
        deferred.items.map { ($0.operation.from.map { $0 + " -> " } ?? "") + $0.operation.path }
    }

    @Test func anOperationSupersedesTheItemsAtOrBelowItsPathsAndNoOthers() throws {
        var deferred = DeferredOperations()
        deferred.add(.upsert("a/b/c", Self.file), of: Self.commit(1))
        deferred.add(.delete("x"), of: Self.commit(1))
        deferred.add(.rename(from: "m/n", to: "p/q"), of: Self.commit(2))

        for unrelated: NamespaceOperation in [.upsert("a/b", Self.file), .upsert("zzz", Self.file), .upsert("a/b/c/d", Self.file),
                                              .delete("a/bc"), .rename(from: "p/qq", to: "s"), .upsert("x/y", Self.file)] {
            deferred.supersede(by: unrelated)
        }
        #expect(Self.paths(deferred) == ["a/b/c", "x", "m/n -> p/q"], "an upsert acts on its own path only; others on their subtree")

        deferred.supersede(by: .upsert("a/b/c", Self.file))
        #expect(Self.paths(deferred) == ["x", "m/n -> p/q"])
        deferred.supersede(by: .rename(from: "p", to: "r"))
        #expect(Self.paths(deferred) == ["x", "m/n -> r/q"], "a rename carries the items below it along")
        deferred.supersede(by: .upsert("r/q", Self.file))
        #expect(Self.paths(deferred) == ["x", "m/n -> r/q"], "an upsert leaves a pending rename to its path")
        deferred.supersede(by: .delete("m"))
        #expect(Self.paths(deferred) == ["x"], "a delete drops a rename whose source lies below it")
        deferred.add(.upsert("k", Self.file), of: Self.commit(3))
        deferred.supersede(by: .upsert("k", Self.file))
        #expect(Self.paths(deferred) == ["x"], "an item added after a lookup is found")
        deferred.supersede(by: .delete("x"))
        #expect(deferred.isEmpty)
    }

    @Test func onlyTheItemsAreStored() throws {
        var deferred = DeferredOperations()
        deferred.add(.delete("x"), of: Self.commit(4))
        deferred.supersede(by: .upsert("y", Self.file))
        let object = try JSONSerialization.jsonObject(with: JSONEncoder().encode(deferred)) as? [String: Any]
        #expect(object?.keys.sorted() == ["items"])
        let decoded = try JSONDecoder().decode(DeferredOperations.self, from: JSONEncoder().encode(deferred))
        #expect(Self.paths(decoded) == ["x"])
    }
}
