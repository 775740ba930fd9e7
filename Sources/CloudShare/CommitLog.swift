import Backends
import Foundation

/// The share's commit log: immutable records at `log/<20-digit sequence>`, created with
/// put-if-absent so that two writers can never both own one sequence number.
public struct CommitLog: Sendable {
    let store: any ObjectStore
    /// New records are binary (shares of format 2), else JSON (format 1). Both are read.
    let writesBinary: Bool

    /// The log of the share in `store`.
    public init(store: any ObjectStore, writesBinary: Bool = true) {
        self.store = store
        self.writesBinary = writesBinary
    }

    /// The object key of the record at `sequence`.
    public static func key(_ sequence: UInt64) -> String {
        let digits = String(sequence)
        return "log/" + String(repeating: "0", count: max(0, 20 - digits.count)) + digits
    }

    public static func sequence(ofKey key: String) -> UInt64? {
        guard key.hasPrefix("log/") else { return nil }
        return UInt64(key.dropFirst(4))
    }

    /// Where the namespace of a log whose oldest record is `first` is rebuilt from: 0 when the log begins at
    /// sequence 1 (or is empty); else the oldest snapshot at or after `first − 1`. Log compaction deletes
    /// the records up to a snapshot oldest first, so the records a compaction cut short left below that
    /// snapshot are redundant. Nil when no snapshot covers the sequences before `first` (records are missing).
    /// The one rule for every reader of a share's history (replays, restores, `share history`, verify, gc).
    public static func base(firstRecord first: UInt64?, snapshots: some Sequence<UInt64>) -> UInt64? {
        guard let first, first > 1 else { return 0 }
        return snapshots.filter { $0 >= first - 1 }.min()
    }

    /// The oldest record's sequence, nil for an empty log (one listing request).
    public func first() async throws -> UInt64? {
        try await store.list(prefix: "log/", startAfter: nil, limit: 1).objects.first.flatMap { Self.sequence(ofKey: $0.key) }
    }

    /// Sequence numbers of the records after `cursor`, ascending (one listing request when up to date).
    public func sequences(after cursor: UInt64) async throws -> [UInt64] {
        try await store.listAll(prefix: "log/", pageSize: 1000).lazy
            .filter { $0.key > Self.key(cursor) }
            .compactMap { Self.sequence(ofKey: $0.key) }
    }

    /// The highest sequence number at or after `cursor` (cursor itself when nothing is newer).
    public func head(after cursor: UInt64 = 0) async throws -> UInt64 {
        var after: String? = Self.key(cursor)
        var head = cursor
        while true {
            let page = try await store.list(prefix: "log/", startAfter: after, limit: 1000)
            if let last = page.objects.last.flatMap({ Self.sequence(ofKey: $0.key) }) { head = max(head, last) }
            guard page.isTruncated, let last = page.objects.last else { return head }
            after = last.key
        }
    }

    /// Reads the record at `sequence`.
    public func read(_ sequence: UInt64) async throws -> Commit {
        let key = Self.key(sequence)
        let bytes = try await store.get(key)
        let commit: Commit
        do {
            commit = CommitCoding.isBinary(bytes) ? try CommitCoding.decode(bytes) : try JSONDecoder().decode(Commit.self, from: Data(bytes))
        } catch {
            throw ShareError(.badLog, share: store.displayName, object: key, cause: "unreadable commit record: \(error)")
        }
        guard commit.sequence == sequence else {
            throw ShareError(.badLog, share: store.displayName, object: key, cause: "record says sequence \(commit.sequence)")
        }
        return commit
    }

    /// Reads every record after `cursor`, in order, checking that there is no gap. A reader that can
    /// take the records one at a time iterates ``reading(after:)`` instead and holds only one.
    public func records(after cursor: UInt64) async throws -> [Commit] {
        var commits: [Commit] = []
        for try await commit in reading(after: cursor) { commits.append(commit) }
        return commits
    }

    /// The records after `cursor`, in order, read one at a time (the next is fetched while the caller
    /// works on the current one); a gap in the log is an error when the iteration reaches it.
    public func reading(after cursor: UInt64) -> Records {
        Records(log: self, cursor: cursor)
    }

    /// The records after a cursor, as an asynchronous sequence (see ``reading(after:)``).
    public struct Records: AsyncSequence, Sendable {
        let log: CommitLog
        let cursor: UInt64

        /// Lists the log once, at the first element, then reads record after record.
        public struct AsyncIterator: AsyncIteratorProtocol {
            let log: CommitLog
            var expected: UInt64
            var sequences: [UInt64]?
            var position = 0
            var ahead: Task<Commit, any Error>?

            public mutating func next() async throws -> Commit? {
                if sequences == nil { sequences = try await log.sequences(after: expected - 1) }
                guard let sequences, position < sequences.count else { return nil }
                guard sequences[position] == expected else {
                    ahead?.cancel()
                    throw ShareError(.badLog, share: log.store.displayName, object: CommitLog.key(expected),
                                     cause: "missing log record (next present is \(sequences[position]))")
                }
                let sequence = expected
                let commit = try await (ahead ?? Task { [log] in try await log.read(sequence) }).value
                ahead = nil
                position += 1
                expected += 1
                if position < sequences.count, sequences[position] == expected {
                    let next = expected
                    ahead = Task { [log] in try await log.read(next) }
                }
                return commit
            }
        }

        public func makeAsyncIterator() -> AsyncIterator {
            AsyncIterator(log: log, expected: cursor + 1)
        }
    }

    /// Tries to write `commit` as record `sequence`. Returns false when another writer owns that number
    /// (the caller then reads the winner's records, rebases and retries with a higher number).
    public func tryAppend(_ commit: Commit, at sequence: UInt64) async throws -> Bool {
        var commit = commit
        commit.sequence = sequence
        let bytes: [UInt8]
        if writesBinary {
            bytes = CommitCoding.encode(commit)
        } else {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            bytes = Array(try encoder.encode(commit))
        }
        let key = Self.key(sequence)
        do {
            try await store.putIfAbsent(key, bytes: bytes)
            return true
        } catch let error as StoreError where error.code == .alreadyExists {
            // An ambiguous earlier attempt (reply lost after the write) may have stored our own record.
            return (try? await read(sequence).id) == commit.id
        }
    }
}

extension CommitLog {
    /// Appends `commit` at the first free sequence number after `knownHead`, moving past records other
    /// writers won. For commits that need no rebase (direct cloud edits that simply win).
    /// Throws ``ShareMoved`` when the log ends with the record of a move.
    public func append(_ commit: Commit, knownHead: UInt64 = 0) async throws -> UInt64 {
        var head = try await head(after: knownHead)
        while true {
            // A moved share's log ends with the move: nothing may follow it.
            if head > 0, let redirect = try await read(head).movedTo {
                throw ShareMoved(redirect, from: store.displayName)
            }
            if try await tryAppend(commit, at: head + 1) { return head + 1 }
            head = try await self.head(after: head + 1)
        }
    }

    /// Ends the log with the record of a move to `redirect`, at `redirect.through + 1`; false when
    /// another writer took that number first. Written as JSON whatever the share's format: the binary
    /// form has no room for it.
    public func tryAppendMove(_ redirect: ShareRedirect) async throws -> Bool {
        var record = Commit(author: "move", authorName: "Tiergate", operations: [])
        record.sequence = redirect.through + 1
        record.movedTo = redirect
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        do {
            try await store.putIfAbsent(Self.key(record.sequence), bytes: Array(try encoder.encode(record)))
            return true
        } catch let error as StoreError where error.code == .alreadyExists {
            return (try? await read(record.sequence).movedTo) == redirect
        }
    }
}
