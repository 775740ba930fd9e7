import Foundation
import Hashing

/// A garbage collector's record of packs it will delete: `gc/pending/<id>.json` while the deletion
/// waits for its safety interval, then `gc/deleted/<id>.json` once it is done.
///
/// The records are how writers learn which packs they must not deduplicate against (see docs/gc.md):
/// a writer reads them when an upload session starts and again right before it appends a commit.
/// Deleted records stay as tombstones, so that a writer whose index was loaded before the deletion
/// never trusts a copy that is gone.
public struct CollectionRecord: Codable, Sendable, Equatable {
    /// One pack named by the record.
    public struct Pack: Codable, Sendable, Equatable {
        /// The pack id (hex).
        public var id: String
        /// The pack object's size.
        public var bytes: Int64
        /// When the store says the pack was written (seconds since 1970), nil when it does not say:
        /// then the grace period is counted from the record's creation.
        public var modified: Double?
        /// Set for a pack some of whose chunks a kept version needs (repacked): their bytes. Each of
        /// them had a copy in a pack no record names when the record was written.
        public var neededBytes: Int64?
    }

    /// A random id naming the record (and its keys).
    public var id: String
    /// When the record was written (seconds since 1970, the collector's clock, read before the put).
    public var created: Double
    /// The collector's safety interval: no pack of the record is deleted before `created` + this.
    public var safetyInterval: Double
    /// The collector's grace period, for packs whose age the store did not report.
    public var grace: Double
    /// The packs, each unreferenced by every kept version when the record was written, or holding only
    /// chunks that also had a copy in a pack no record names (``Pack/neededBytes``).
    public var packs: [Pack]
    /// Set in `gc/deleted/` records: when the deletion finished (seconds since 1970).
    public var completed: Double?
    /// Set in `gc/deleted/` records: the packs deleted (the others were referenced again and kept).
    public var deleted: [String]?

    /// The object key of a pending record.
    public static func pendingKey(_ id: String) -> String { "gc/pending/\(id).json" }
    /// The object key of a finished record.
    public static func deletedKey(_ id: String) -> String { "gc/deleted/\(id).json" }
    /// Where records live (pending and deleted).
    static let prefixes = ["gc/pending/", "gc/deleted/"]

    /// The record's id from one of its keys.
    static func id(ofKey key: String) -> String? {
        guard key.hasSuffix(".json"), let slash = key.lastIndex(of: "/") else { return nil }
        return String(key[key.index(after: slash)...].dropLast(".json".count))
    }

    /// The pack ids as digests.
    public var packIDs: [Digest32] { packs.compactMap { Digest32(hex: $0.id) } }

    func encoded() throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return Array(try encoder.encode(self))
    }

    static func decode(_ bytes: [UInt8], share: String, key: String) throws -> CollectionRecord {
        do {
            return try JSONDecoder().decode(CollectionRecord.self, from: Data(bytes))
        } catch {
            throw ShareError(.corrupt, share: share, object: key, cause: "unreadable garbage collection record: \(error)")
        }
    }
}
