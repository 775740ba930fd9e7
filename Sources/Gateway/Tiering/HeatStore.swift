import Foundation
import RocksDB

/// Per-file access history that orders tiering, coldest first: last access and access count, keyed by
/// endpoint and file id (ids follow files across renames). Accesses come from recall events and, through
/// the FUSE mount, from opens.
public struct HeatStore: Sendable {
    let state: LocalState
    let endpoint: UInt32

    /// One file's heat.
    public struct Heat: Sendable, Equatable {
        /// Last access, nanoseconds since the epoch.
        public var lastAccess: Int64
        /// Accesses recorded.
        public var count: UInt32
    }

    static func key(_ endpoint: UInt32, _ fileID: String) -> [UInt8] { LocalState.key(endpoint, fileID) }

    /// Records one access to `fileID` now (or at `time`).
    public func recordAccess(_ fileID: String, time: Int64 = Int64(Date().timeIntervalSince1970 * 1e9)) throws {
        var heat = try self.heat(fileID) ?? Heat(lastAccess: 0, count: 0)
        heat.lastAccess = max(heat.lastAccess, time)
        heat.count &+= 1
        var bytes = [UInt8]()
        withUnsafeBytes(of: heat.lastAccess.littleEndian) { bytes += $0 }
        withUnsafeBytes(of: heat.count.littleEndian) { bytes += $0 }
        try state.database.put(Self.key(endpoint, fileID), bytes, in: state.family(.heat))
    }

    /// The heat of `fileID`, if any access was recorded.
    public func heat(_ fileID: String) throws -> Heat? {
        guard let bytes = try state.database.get(Self.key(endpoint, fileID), in: state.family(.heat)) else { return nil }
        return Self.decode(bytes)
    }

    /// Every recorded heat of the endpoint, by file id (one scan, for policy evaluation).
    public func all() throws -> [String: Heat] {
        var result: [String: Heat] = [:]
        try state.database.scan(state.family(.heat), prefix: LocalState.prefix(endpoint)) { key, value in
            if let heat = Self.decode(value) { result[LocalState.path(fromKey: key)] = heat }
            return true
        }
        return result
    }

    static func decode(_ bytes: [UInt8]) -> Heat? {
        guard bytes.count == 12 else { return nil }
        return bytes.withUnsafeBytes {
            Heat(lastAccess: Int64(littleEndian: $0.loadUnaligned(as: Int64.self)),
                 count: UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: 8, as: UInt32.self)))
        }
    }
}

extension LocalState {
    /// The heat store of an endpoint.
    public func heatStore(_ endpoint: UInt32) -> HeatStore { HeatStore(state: self, endpoint: endpoint) }
}
