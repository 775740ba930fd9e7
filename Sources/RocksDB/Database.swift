import CRocksDB
import Glibc

/// A column family of an open `Database`, by name; obtained from `Database.family(_:)`.
public struct ColumnFamily: Sendable, Hashable, CustomStringConvertible {
    /// The family's name.
    public let name: String
    /// Position in the database's handle table.
    let index: Int
    /// Which database opened it, so that a family of another database is refused, not misused.
    let owner: ObjectIdentifier

    public var description: String { name }
}

/// One RocksDB database with named column families; every C handle it creates it also destroys.
///
/// `@unchecked Sendable` because RocksDB's database, column family and option handles are safe to use from
/// many threads at once; the only state this class adds is the open/closed switch, guarded by a
/// reader-writer lock so that `close()` waits for running operations and later ones throw `.closed`.
public final class Database: @unchecked Sendable {
    /// How a database is opened.
    public struct Options: Sendable {
        /// Create the database directory when it does not exist.
        public var createIfMissing = true
        /// Compress blocks with LZ4; the open falls back to no compression when this RocksDB lacks LZ4.
        public var compress = true
        /// Background flush and compaction threads.
        public var backgroundJobs: Int32 = 2
        /// Open without taking the database's lock, for readers beside a running writer (status
        /// commands next to the daemon). Writes then fail; the view is the state at open time.
        public var readOnly = false
        /// Default options.
        public init() {}
    }

    /// The database directory.
    public let path: String
    /// Names of all column families, including "default" and any that existed on disk beforehand.
    public let familyNames: [String]

    private var handle: OpaquePointer?
    private var familyHandles: [OpaquePointer?]
    private let options: OpaquePointer
    private let readOptions: OpaquePointer
    private let syncWrite: OpaquePointer
    private let asyncWrite: OpaquePointer
    private let lock: UnsafeMutablePointer<pthread_rwlock_t>

    /// Opens (or creates) the database at `path` with `families`, creating the families that are missing.
    ///
    /// Families already on disk but not listed are opened as well (RocksDB requires it) and reachable
    /// through `family(_:)`.
    public init(path: String, families: [String], options openOptions: Options = .init()) throws(RocksDBError) {
        self.path = path
        options = rocksdb_options_create()
        rocksdb_options_set_create_if_missing(options, openOptions.createIfMissing ? 1 : 0)
        rocksdb_options_set_create_missing_column_families(options, 1)
        rocksdb_options_set_max_background_jobs(options, openOptions.backgroundJobs)
        // A gateway's info LOG would otherwise grow without bound next to the data.
        rocksdb_options_set_info_log_level(options, 2)  // WARN
        rocksdb_options_set_keep_log_file_num(options, 3)
        rocksdb_options_set_compression(options, Int32(openOptions.compress ? rocksdb_lz4_compression : rocksdb_no_compression))
        // Memtables: 16 MiB per family, and all families together flushed beyond 64 MiB. RocksDB's default
        // (64 MiB per family, no total) left a daemon holding over 100 MiB of memtables after a pass that
        // wrote a million entries, until the next writes filled them.
        rocksdb_options_set_write_buffer_size(options, 16 << 20)
        rocksdb_options_set_db_write_buffer_size(options, 64 << 20)
        readOptions = rocksdb_readoptions_create()
        syncWrite = rocksdb_writeoptions_create()
        rocksdb_writeoptions_set_sync(syncWrite, 1)
        asyncWrite = rocksdb_writeoptions_create()
        lock = .allocate(capacity: 1)
        pthread_rwlock_init(lock, nil)

        var names = ["default"]
        for name in Self.existingFamilies(at: path, options: options) + families where !names.contains(name) {
            names.append(name)
        }
        familyNames = names
        familyHandles = Array(repeating: nil, count: names.count)
        // Every stored property is set by now, so a throw below still runs deinit, which frees the options.
        do {
            handle = try open(names, readOnly: openOptions.readOnly)
        } catch where openOptions.compress && error.message.lowercased().contains("compression") {
            rocksdb_options_set_compression(options, Int32(rocksdb_no_compression))
            handle = try open(names, readOnly: openOptions.readOnly)
        }
    }

    deinit {
        close()
        destroyOptions()
    }

    /// Releases every handle; later calls throw `.closed`. Safe to call twice, and run by deinit.
    /// Writes made without `sync` are in the write-ahead log and survive a clean close.
    ///
    /// Waits for operations running on other threads. Do not call it from inside a `scan` body.
    public func close() {
        pthread_rwlock_wrlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        guard let db = handle else { return }
        for family in familyHandles { if let family { rocksdb_column_family_handle_destroy(family) } }
        familyHandles = familyHandles.map { _ in nil }
        rocksdb_close(db)
        handle = nil
    }

    /// True once `close()` has run.
    public var isClosed: Bool {
        pthread_rwlock_rdlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        return handle == nil
    }

    /// The column family called `name`.
    public func family(_ name: String) throws(RocksDBError) -> ColumnFamily {
        guard let index = familyNames.firstIndex(of: name) else {
            throw RocksDBError(.unknownColumnFamily, operation: "family \(name)",
                               message: "no column family \"\(name)\" in \(path); opened with \(familyNames)")
        }
        return ColumnFamily(name: name, index: index, owner: ObjectIdentifier(self))
    }

    // MARK: Point operations

    /// The value of `key` in `family`, or nil when there is none.
    public func get(_ key: [UInt8], in family: ColumnFamily) throws(RocksDBError) -> [UInt8]? {
        try withOpen("get \(family)", family) { db, cf throws(RocksDBError) in
            var length = 0
            let value = try checked("get \(family)") { error in
                key.withUnsafeBufferPointer { key in
                    key.withMemoryRebound(to: CChar.self) { key in
                        rocksdb_get_cf(db, readOptions, cf, key.baseAddress, key.count, &length, error)
                    }
                }
            }
            guard let value else { return nil }
            defer { rocksdb_free(value) }
            return Array(UnsafeRawBufferPointer(start: value, count: length))
        }
    }

    /// Sets `key` to `value` in `family`; with `sync` the write is on stable storage before this returns.
    public func put(_ key: [UInt8], _ value: [UInt8], in family: ColumnFamily, sync: Bool = false) throws(RocksDBError) {
        try withOpen("put \(family)", family) { db, cf throws(RocksDBError) in
            try checked("put \(family)") { error in
                key.withUnsafeBytes { key in
                    value.withUnsafeBytes { value in
                        rocksdb_put_cf(db, sync ? syncWrite : asyncWrite, cf, key.cString, key.count,
                                       value.cString, value.count, error)
                    }
                }
            }
        }
    }

    /// Removes `key` from `family` (no error when it is absent); `sync` as for `put`.
    public func delete(_ key: [UInt8], in family: ColumnFamily, sync: Bool = false) throws(RocksDBError) {
        try withOpen("delete \(family)", family) { db, cf throws(RocksDBError) in
            try checked("delete \(family)") { error in
                key.withUnsafeBytes { key in
                    rocksdb_delete_cf(db, sync ? syncWrite : asyncWrite, cf, key.cString, key.count, error)
                }
            }
        }
    }

    /// Applies every operation of `batch` atomically; `sync` as for `put`.
    public func write(_ batch: WriteBatch, sync: Bool = false) throws(RocksDBError) {
        try withOpen("write batch", nil) { db, _ throws(RocksDBError) in
            let native = rocksdb_writebatch_create()
            defer { rocksdb_writebatch_destroy(native) }
            for operation in batch.operations {
                switch operation {
                case .put(let family, let key, let value):
                    let cf = try resolve(family, "write batch")
                    key.withUnsafeBytes { key in
                        value.withUnsafeBytes { value in
                            rocksdb_writebatch_put_cf(native, cf, key.cString, key.count, value.cString, value.count)
                        }
                    }
                case .delete(let family, let key):
                    let cf = try resolve(family, "write batch")
                    key.withUnsafeBytes { key in rocksdb_writebatch_delete_cf(native, cf, key.cString, key.count) }
                }
            }
            try checked("write batch of \(batch.count)") { error in
                rocksdb_write(db, sync ? syncWrite : asyncWrite, native, error)
            }
        }
    }

    // MARK: Scans

    /// Calls `body` with each key and value of `family` whose key starts with `prefix`, in key order,
    /// until `body` returns false. An empty prefix scans the whole family.
    public func scan(_ family: ColumnFamily, prefix: [UInt8],
                     _ body: (_ key: [UInt8], _ value: [UInt8]) throws -> Bool) throws {
        try scan(family, from: prefix, to: Self.successor(of: prefix), body)
    }

    /// Calls `body` with each key and value of `family` with `start <= key < end` (no upper limit when
    /// `end` is nil), in key order, until `body` returns false.
    public func scan(_ family: ColumnFamily, from start: [UInt8], to end: [UInt8]?,
                     _ body: (_ key: [UInt8], _ value: [UInt8]) throws -> Bool) throws {
        pthread_rwlock_rdlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        let (db, cf) = try openHandles("scan \(family)", family)
        do {
            let options = rocksdb_readoptions_create()
            defer { rocksdb_readoptions_destroy(options) }
            // The upper bound must outlive the iterator, so the whole walk runs inside its buffer's scope.
            let bound = end ?? []
            try bound.withUnsafeBytes { bound in
                if end != nil { rocksdb_readoptions_set_iterate_upper_bound(options, bound.cString, bound.count) }
                let iterator = rocksdb_create_iterator_cf(db, options, cf)
                defer { rocksdb_iter_destroy(iterator) }
                start.withUnsafeBytes { start in rocksdb_iter_seek(iterator, start.cString, start.count) }
                while rocksdb_iter_valid(iterator) != 0 {
                    var keyLength = 0, valueLength = 0
                    let key = rocksdb_iter_key(iterator, &keyLength)
                    let value = rocksdb_iter_value(iterator, &valueLength)
                    let keep = try body(Array(UnsafeRawBufferPointer(start: key, count: keyLength)),
                                        Array(UnsafeRawBufferPointer(start: value, count: valueLength)))
                    if !keep { return }
                    rocksdb_iter_next(iterator)
                }
                try checked("scan \(family)") { error in rocksdb_iter_get_error(iterator, error) }
            }
        }
    }

    /// All keys and values of `family` that start with `prefix`, in key order.
    public func entries(in family: ColumnFamily, prefix: [UInt8] = []) throws -> [(key: [UInt8], value: [UInt8])] {
        var result: [(key: [UInt8], value: [UInt8])] = []
        try scan(family, prefix: prefix) { key, value in
            result.append((key, value))
            return true
        }
        return result
    }

    // MARK: Maintenance

    /// Compacts `family` between `start` and `end` (the whole family when both are nil), dropping deleted
    /// and overwritten data from disk.
    public func compactRange(in family: ColumnFamily, from start: [UInt8]? = nil, to end: [UInt8]? = nil) throws(RocksDBError) {
        try withOpen("compact \(family)", family) { db, cf throws(RocksDBError) in
            (start ?? []).withUnsafeBytes { startBytes in
                (end ?? []).withUnsafeBytes { endBytes in
                    rocksdb_compact_range_cf(db, cf, start == nil ? nil : startBytes.cString, startBytes.count,
                                             end == nil ? nil : endBytes.cString, endBytes.count)
                }
            }
        }
    }

    /// A RocksDB property of `family` (e.g. "rocksdb.estimate-num-keys"), or nil when RocksDB has none.
    public func property(_ name: String, in family: ColumnFamily) throws(RocksDBError) -> String? {
        try withOpen("property \(name)", family) { db, cf throws(RocksDBError) in
            guard let value = rocksdb_property_value_cf(db, cf, name) else { return nil }
            defer { rocksdb_free(value) }
            return String(cString: value)
        }
    }

    /// Bytes the database takes on disk: every file in its directory (SST tables, write-ahead logs,
    /// manifest, options). Exact for the moment it is read, and "approximate" only because compactions
    /// and flushes change it all the time.
    public func diskSize() throws(RocksDBError) -> Int {
        guard let directory = opendir(path) else {
            throw RocksDBError(.rocksdb, operation: "disk size \(path)", message: String(cString: strerror(errno)))
        }
        defer { closedir(directory) }
        var total = 0
        while let entry = readdir(directory) {
            var status = stat()
            // Not `entry.pointee.d_name` whole: the record is only as long as the name.
            let name = UnsafeRawPointer(entry).advanced(by: MemoryLayout<dirent>.offset(of: \dirent.d_name)!)
            let matched = fstatat(dirfd(directory), name.assumingMemoryBound(to: CChar.self), &status, AT_SYMLINK_NOFOLLOW) == 0
            if matched && (status.st_mode & S_IFMT) == S_IFREG { total += Int(status.st_size) }
        }
        return total
    }

    // MARK: Internals

    /// Runs `body` with the open database and `family`'s handle, holding the read lock so that
    /// `close()` cannot free them meanwhile.
    private func withOpen<T>(_ operation: @autoclosure () -> String, _ family: ColumnFamily?,
                             _ body: (OpaquePointer, OpaquePointer?) throws(RocksDBError) -> T) throws(RocksDBError) -> T {
        pthread_rwlock_rdlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        let (db, cf) = try openHandles(operation(), family)
        return try body(db, cf)
    }

    /// The database handle and `family`'s handle; call with the read lock held.
    private func openHandles(_ operation: @autoclosure () -> String, _ family: ColumnFamily?) throws(RocksDBError) -> (OpaquePointer, OpaquePointer?) {
        guard let db = handle else {
            throw RocksDBError(.closed, operation: operation(), message: "the database at \(path) is closed")
        }
        guard let family else { return (db, nil) }
        return (db, try resolve(family, operation()))
    }

    /// `family`'s handle; call with the read lock held.
    private func resolve(_ family: ColumnFamily, _ operation: @autoclosure () -> String) throws(RocksDBError) -> OpaquePointer {
        guard family.owner == ObjectIdentifier(self), familyHandles.indices.contains(family.index),
              let cf = familyHandles[family.index] else {
            throw RocksDBError(.unknownColumnFamily, operation: operation(),
                               message: "column family \"\(family.name)\" does not belong to the database at \(path)")
        }
        return cf
    }

    private func open(_ names: [String], readOnly: Bool) throws(RocksDBError) -> OpaquePointer? {
        let cNames = names.map { strdup($0) }
        defer { cNames.forEach { free($0) } }
        let familyOptions = [OpaquePointer?](repeating: options, count: names.count)
        return try checked("open \(path)") { error in
            cNames.map { UnsafePointer($0) }.withUnsafeBufferPointer { namePointers in
                familyOptions.withUnsafeBufferPointer { optionPointers in
                    familyHandles.withUnsafeMutableBufferPointer { handles in
                        readOnly
                            ? rocksdb_open_for_read_only_column_families(options, path, Int32(names.count), namePointers.baseAddress,
                                                                         optionPointers.baseAddress, handles.baseAddress, 0, error)
                            : rocksdb_open_column_families(options, path, Int32(names.count), namePointers.baseAddress,
                                                           optionPointers.baseAddress, handles.baseAddress, error)
                    }
                }
            }
        }
    }

    /// Family names stored at `path`; empty when there is no database there yet (the open then reports
    /// any real problem).
    private static func existingFamilies(at path: String, options: OpaquePointer) -> [String] {
        var count = 0
        let listed = try? checked("list families") { error -> UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? in
            rocksdb_list_column_families(options, path, &count, error)
        }
        guard let list = listed else { return [] }
        defer { rocksdb_list_column_families_destroy(list, count) }
        return (0..<count).compactMap { list[$0].map { String(cString: $0) } }
    }

    private func destroyOptions() {
        rocksdb_options_destroy(options)
        rocksdb_readoptions_destroy(readOptions)
        rocksdb_writeoptions_destroy(syncWrite)
        rocksdb_writeoptions_destroy(asyncWrite)
        pthread_rwlock_destroy(lock)
        lock.deallocate()
    }

    /// The smallest key greater than every key that starts with `prefix`, or nil when there is none
    /// (an empty or all-0xff prefix).
    static func successor(of prefix: [UInt8]) -> [UInt8]? {
        var bound = prefix
        while let last = bound.last {
            if last < 0xff {
                bound[bound.count - 1] = last + 1
                return bound
            }
            bound.removeLast()
        }
        return nil
    }
}

extension UnsafeRawBufferPointer {
    /// The bytes as RocksDB's `const char*`; a non-nil pointer even when empty, since RocksDB slices
    /// of length zero may still be dereferenced by comparators.
    fileprivate var cString: UnsafePointer<CChar> {
        guard let base = baseAddress else { return emptyByte }
        return base.assumingMemoryBound(to: CChar.self)
    }
}

/// A valid address for zero-length keys and values.
private nonisolated(unsafe) let emptyByte: UnsafePointer<CChar> = {
    let byte = UnsafeMutablePointer<CChar>.allocate(capacity: 1)
    byte.initialize(to: 0)
    return UnsafePointer(byte)
}()
