import CFuse3
import Glibc
import Synchronization

/// A POSIX passthrough of one backing directory (a server endpoint), with the Gateway's hooks.
///
/// Inodes are pinned by `O_PATH` descriptors within a budget (see ``InodeTable``) and every open file
/// is a real descriptor on the backing file, so data, unlink-while-open, renames and links behave as on the
/// backing file system. The daemon's own privileges do the work: the kernel has already checked the
/// caller's permissions (`default_permissions`), and files created for another user are handed to
/// that user.
///
/// Nothing outside the endpoint is reachable: names are single components resolved with
/// `O_NOFOLLOW` relative to descriptors inside the tree, and symbolic links are never followed here
/// (the kernel resolves them in the mount's namespace, as it does on any file system).
public final class PassthroughCore: FileSystemCore {
    /// How the kernel may cache file content.
    public struct Configuration: Sendable, Equatable {
        /// Keep a file's cached pages across opens. The kernel still drops them when it sees the
        /// backing file's mtime or size change (after the attribute timeout), and the Gateway can
        /// drop them at once through ``MountSession/backingFileChanged(_:)``.
        public var keepCache: Bool
        /// Let the kernel cache writes and send them later in batches (FUSE writeback cache). Helps
        /// small writes only: the kernel caps a FUSE mount's dirty pages at 1 % of the dirty limit, so
        /// large writes wait for the flusher and were slower than write-through in docs/mount.md's
        /// figures; and writes reach the endpoint (and the hooks) after write(2) has returned, so a
        /// failed stub recall can then only fail a later fsync or close.
        public var writebackCache: Bool
        /// How many inodes may pin a descriptor; nil: three quarters of the descriptor limit (raised
        /// to its maximum first), leaving the rest for open files and the rest of the process. Set it
        /// when one process serves several mounts, which share that limit.
        public var pinnedInodeLimit: Int?

        /// A configuration; by default pages are kept and writes go through at once.
        public init(keepCache: Bool = true, writebackCache: Bool = false, pinnedInodeLimit: Int? = nil) {
            self.keepCache = keepCache
            self.writebackCache = writebackCache
            self.pinnedInodeLimit = pinnedInodeLimit
        }
    }

    /// The extended attribute that marks a stub; its presence routes reads and writes through the hooks.
    public static let stubMarker = "user.tiergate.state"

    /// The backing directory.
    public let endpoint: String
    /// The cache configuration.
    public let configuration: Configuration
    let hooks: any MountHooks
    let inodes: InodeTable
    let files = HandleTable<OpenFile>()
    let directories = HandleTable<DirectoryStream>()
    /// Bits this process's umask strips from every creation; put back where the caller asked for them.
    private let processUmask: mode_t
    private let runsAsRoot: Bool

    /// A core over `endpoint`, which must be a directory.
    public init(endpoint: String, hooks: any MountHooks = NoMountHooks(), configuration: Configuration = Configuration()) throws(Errno) {
        let descriptor = try systemCall { Glibc.open(endpoint, LinuxFlags.openPath | O_DIRECTORY | O_CLOEXEC) }
        var status = stat()
        if fstat(descriptor, &status) != 0 {
            let error = Errno.current
            close(descriptor)
            throw error
        }
        self.endpoint = endpoint
        self.hooks = hooks
        self.configuration = configuration
        inodes = InodeTable(rootDescriptor: descriptor, rootStatus: status,
                            pinLimit: configuration.pinnedInodeLimit ?? Self.raiseDescriptorLimit() * 3 / 4)
        processUmask = Self.readProcessUmask()
        runsAsRoot = geteuid() == 0
    }

    public var wantsWritebackCache: Bool { configuration.writebackCache }

    /// How many inodes the kernel holds references on (the root included): for tests and metrics.
    public var knownInodeCount: Int { inodes.count }
    /// How many of those hold a descriptor.
    public var pinnedInodeCount: Int { inodes.pinnedCount }
    /// How many file handles are open.
    public var openFileCount: Int { files.count }
    /// Read requests the core has served (for tests and metrics): reads the kernel passes through to
    /// the backing file never count here.
    public var servedReadCount: Int { servedReads.load(ordering: .relaxed) }
    /// Write requests the core has served, likewise.
    public var servedWriteCount: Int { servedWrites.load(ordering: .relaxed) }
    private let servedReads = Atomic<Int>(0)
    private let servedWrites = Atomic<Int>(0)

    // MARK: Names and attributes

    public func lookup(parent: UInt64, name: [UInt8]) throws(Errno) -> Entry {
        try lookupEntry(in: try inodes.inode(parent), name: name)
    }

    /// Resolves `name` in `directory` and counts one reference.
    func lookupEntry(in directory: Inode, name: [UInt8]) throws(Errno) -> Entry {
        try inodes.withDescriptor(directory) { directoryDescriptor throws(Errno) in
            try withName(name) { cName throws(Errno) in
                var status = stat()
                _ = try systemCall { fstatat(directoryDescriptor, cName, &status, AT_SYMLINK_NOFOLLOW) }
                if let inode = inodes.reference(FileIdentity(status), parent: directory.number, name: name) {
                    return Entry(inode: inode.number, generation: 0, attributes: status)
                }
                guard inodes.shouldPin(status.st_mode & S_IFMT) else {
                    let inode = inodes.remember(descriptor: nil, status: status, parent: directory.number, name: name)
                    return Entry(inode: inode.number, generation: 0, attributes: status)
                }
                // New and pinned: take the attributes from the pinned descriptor so that the identity
                // and the attributes cannot belong to two different files.
                let descriptor: Int32
                do throws(Errno) {
                    descriptor = try systemCall { openat(directoryDescriptor, cName, LinuxFlags.openPath | O_NOFOLLOW | O_CLOEXEC) }
                } catch .tooManyOpenFiles {
                    let inode = inodes.remember(descriptor: nil, status: status, parent: directory.number, name: name)
                    return Entry(inode: inode.number, generation: 0, attributes: status)
                }
                do throws(Errno) {
                    status = try Self.status(of: descriptor)
                } catch {
                    close(descriptor)
                    throw error
                }
                let inode = inodes.remember(descriptor: descriptor, status: status, parent: directory.number, name: name)
                return Entry(inode: inode.number, generation: 0, attributes: status)
            }
        }
    }

    public func forget(_ inode: UInt64, count: UInt64) {
        inodes.forget(inode, count: count)
    }

    public func getattr(_ number: UInt64, handle: UInt64?) throws(Errno) -> stat {
        if let handle, let file = try? files.object(handle) {
            var status = stat()
            _ = try systemCall { fstat(file.descriptor, &status) }
            return status
        }
        let inode = try inodes.inode(number)
        do {
            return try inodes.withDescriptor(inode) { descriptor throws(Errno) in try Self.status(of: descriptor) }
        } catch {
            // An unpinned file unlinked while open can no longer be reopened by name; an open handle
            // (fstat(2) does not pass one) still reaches it.
            guard let file = files.first(where: { $0.inode === inode }) else { throw error }
            var status = stat()
            _ = try systemCall { fstat(file.descriptor, &status) }
            return status
        }
    }

    public func setattr(_ number: UInt64, changes: AttributeChanges, handle: UInt64?, caller: Caller) throws(Errno) -> stat {
        let inode = try inodes.inode(number)
        let file = handle.flatMap { try? files.object($0) }
        try inodes.withDescriptor(inode) { descriptor throws(Errno) in
            try apply(changes, to: inode, descriptor: descriptor, file: file)
        }
        let status = try getattr(number, handle: handle)
        let onlyContent = changes.size != nil && changes.mode == nil && changes.uid == nil && changes.gid == nil
        hooks.didChange(MountChange(kind: onlyContent ? .modified : .attributesChanged,
                                    path: path(of: inode.number), identity: inode.identity))
        return status
    }

    /// chmod, chown, truncate, utimens, in that order; an open handle is used where there is one.
    private func apply(_ changes: AttributeChanges, to inode: Inode, descriptor: Int32, file: OpenFile?) throws(Errno) {
        if let mode = changes.mode {
            if let file {
                _ = try systemCall { fchmod(file.descriptor, mode & 0o7777) }
            } else if inode.isSymbolicLink {
                throw .notSupported  // Linux has no mode on symbolic links
            } else {
                _ = try systemCall { chmod(procPath(descriptor), mode & 0o7777) }
            }
        }
        if changes.uid != nil || changes.gid != nil {
            // -1 leaves an id unchanged.
            _ = try systemCall {
                fchownat(descriptor, "", changes.uid ?? uid_t.max, changes.gid ?? gid_t.max, LinuxFlags.atEmptyPath | AT_SYMLINK_NOFOLLOW)
            }
        }
        if let size = changes.size {
            guard inode.isRegularFile else { throw inode.isDirectory ? Errno(EISDIR) : .invalidArgument }
            let stub = file?.isStub.load(ordering: .relaxed) ?? Self.hasStubMarker(path: procPath(descriptor))
            if stub {
                try hooks.beforeWrite(mountedFile(inode, descriptor: descriptor), .truncate(size: size))
            }
            if let file, file.isWritable {
                _ = try systemCall { ftruncate(file.descriptor, off_t(size)) }
                file.isStub.store(Self.hasStubMarker(descriptor: file.descriptor), ordering: .relaxed)
            } else {
                _ = try systemCall { truncate(procPath(descriptor), off_t(size)) }
            }
        }
        if changes.accessTime != nil || changes.modificationTime != nil {
            let times = [Self.timespec(changes.accessTime), Self.timespec(changes.modificationTime)]
            if let file {
                _ = try systemCall { futimens(file.descriptor, times) }
            } else {
                _ = try systemCall { utimensat(descriptor, "", times, LinuxFlags.atEmptyPath | AT_SYMLINK_NOFOLLOW) }
            }
        }
    }

    public func readlink(_ number: UInt64) throws(Errno) -> [UInt8] {
        let inode = try inodes.inode(number)
        guard inode.isSymbolicLink else { throw .invalidArgument }
        var capacity = 256
        while true {
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: capacity, alignment: 1)
            defer { buffer.deallocate() }
            let count = try inodes.withDescriptor(inode) { descriptor throws(Errno) in
                try systemCall { readlinkat(descriptor, "", buffer.baseAddress!.assumingMemoryBound(to: CChar.self), capacity) }
            }
            // A result that fills the buffer may have been cut short.
            if count < capacity { return Array(buffer.prefix(count)) }
            capacity *= 4
        }
    }

    // MARK: Creating and removing names

    public func mknod(parent: UInt64, name: [UInt8], mode: mode_t, device: dev_t, caller: Caller) throws(Errno) -> Entry {
        let type = mode & S_IFMT
        // Every type mknod(2) makes. The kernel lets only callers with CAP_MKNOD ask for a device node, and
        // the mount is nodev: such a node can be made and listed here, never opened through the mount.
        guard [0, S_IFREG, S_IFIFO, S_IFSOCK, S_IFBLK, S_IFCHR].contains(type) else { throw .notPermitted }
        let directory = try inodes.inode(parent)
        let (mode, restore) = creationMode(mode, in: directory, caller: caller)
        try at(directory, name) { directory, cName throws(Errno) in
            _ = try systemCall { mknodat(directory, cName, mode, device) }
        }
        let entry = try finishCreation(in: directory, name: name, restoring: restore, caller: caller)
        hooks.didChange(MountChange(kind: .created, path: path(in: directory, name),
                                    identity: FileIdentity(entry.attributes)))
        return entry
    }

    public func mkdir(parent: UInt64, name: [UInt8], mode: mode_t, caller: Caller) throws(Errno) -> Entry {
        let directory = try inodes.inode(parent)
        let (mode, restore) = creationMode(mode, in: directory, caller: caller)
        try at(directory, name) { directory, cName throws(Errno) in
            _ = try systemCall { mkdirat(directory, cName, mode) }
        }
        let entry = try finishCreation(in: directory, name: name, restoring: restore, caller: caller)
        hooks.didChange(MountChange(kind: .directoryCreated, path: path(in: directory, name),
                                    identity: FileIdentity(entry.attributes)))
        return entry
    }

    public func symlink(target: [UInt8], parent: UInt64, name: [UInt8], caller: Caller) throws(Errno) -> Entry {
        let directory = try inodes.inode(parent)
        guard !target.isEmpty, !target.contains(0) else { throw .invalidArgument }
        var cTarget = target.map { CChar(bitPattern: $0) }
        cTarget.append(0)
        try at(directory, name) { directory, cName throws(Errno) in
            _ = try systemCall { symlinkat(cTarget, directory, cName) }
        }
        let entry = try finishCreation(in: directory, name: name, restoring: 0, caller: caller)
        hooks.didChange(MountChange(kind: .created, path: path(in: directory, name),
                                    identity: FileIdentity(entry.attributes)))
        return entry
    }

    public func unlink(parent: UInt64, name: [UInt8]) throws(Errno) {
        let directory = try inodes.inode(parent)
        let removed = path(in: directory, name)
        try at(directory, name) { directory, cName throws(Errno) in
            _ = try systemCall { unlinkat(directory, cName, 0) }
        }
        hooks.didChange(MountChange(kind: .removed, path: removed))
    }

    public func rmdir(parent: UInt64, name: [UInt8]) throws(Errno) {
        let directory = try inodes.inode(parent)
        let removed = path(in: directory, name)
        try at(directory, name) { directory, cName throws(Errno) in
            _ = try systemCall { unlinkat(directory, cName, AT_REMOVEDIR) }
        }
        hooks.didChange(MountChange(kind: .directoryRemoved, path: removed))
    }

    public func rename(parent: UInt64, name: [UInt8], newParent: UInt64, newName: [UInt8], flags: RenameFlags) throws(Errno) {
        guard flags.subtracting([.noReplace, .exchange]).isEmpty, flags != [.noReplace, .exchange] else {
            throw .invalidArgument  // RENAME_WHITEOUT and unknown bits are not offered
        }
        let source = try inodes.inode(parent)
        let target = try inodes.inode(newParent)
        let from = path(in: source, name)
        let to = path(in: target, newName)
        try requireCurrentEntry(in: source, name)
        if flags.contains(.exchange) { try requireCurrentEntry(in: target, newName) }
        try at(source, name) { sourceDescriptor, cName throws(Errno) in
            try at(target, newName) { targetDescriptor, cNewName throws(Errno) in
                _ = try systemCall { CFuse3_renameat2(sourceDescriptor, cName, targetDescriptor, cNewName, flags.rawValue) }
            }
        }
        // Keep the names the table gives hooks in step; identities come from the names as they are now.
        let moved = try? identity(in: target, name: newName)
        if let moved { inodes.moved(moved, parent: target.number, name: newName) }
        if flags.contains(.exchange), let other = try? identity(in: source, name: name) {
            inodes.moved(other, parent: source.number, name: name)
        }
        hooks.didChange(MountChange(kind: flags.contains(.exchange) ? .exchanged : .renamed,
                                    path: to, previousPath: from, identity: moved))
    }

    public func link(_ number: UInt64, newParent: UInt64, newName: [UInt8]) throws(Errno) -> Entry {
        let inode = try inodes.inode(number)
        let directory = try inodes.inode(newParent)
        // Through /proc the link targets the pinned file itself (a symbolic link included), without
        // the CAP_DAC_READ_SEARCH that AT_EMPTY_PATH would need.
        try inodes.withDescriptor(inode) { descriptor throws(Errno) in
            try at(directory, newName) { directory, cName throws(Errno) in
                _ = try systemCall { linkat(AT_FDCWD, procPath(descriptor), directory, cName, AT_SYMLINK_FOLLOW) }
            }
        }
        let entry = try lookupEntry(in: directory, name: newName)
        hooks.didChange(MountChange(kind: .linked, path: path(in: directory, newName), identity: inode.identity))
        return entry
    }

    // MARK: Files

    public func open(_ number: UInt64, flags: Int32, caller: Caller) throws(Errno) -> OpenedFile {
        let inode = try inodes.inode(number)
        guard !inode.isDirectory else { throw Errno(EISDIR) }
        guard inode.isRegularFile else { throw .invalidArgument }
        let descriptor = try inodes.withDescriptor(inode) { pathDescriptor throws(Errno) in
            try systemCall { Glibc.open(procPath(pathDescriptor), backingFlags(flags)) }
        }
        let isStub = Self.hasStubMarker(descriptor: descriptor)
        let file = OpenFile(descriptor: descriptor, inode: inode, flags: flags, isStub: isStub,
                            passthroughOffered: !isStub && mayPassThrough(inode, flags: flags))
        if flags & O_TRUNC != 0 {
            try truncateOnOpen(file)
        }
        let handle = files.insert(file)
        hooks.didOpen(mountedFile(inode), flags: flags)
        return opened(handle, file)
    }

    public func create(parent: UInt64, name: [UInt8], mode: mode_t, flags: Int32, caller: Caller) throws(Errno) -> (Entry, OpenedFile) {
        let directory = try inodes.inode(parent)
        let (mode, restore) = creationMode(mode, in: directory, caller: caller)
        let descriptor: Int32
        do {
            // O_EXCL tells whether this call made the file, which decides ownership and the change kind.
            descriptor = try at(directory, name) { directory, cName throws(Errno) in
                try systemCall { openat(directory, cName, backingFlags(flags) | O_CREAT | O_EXCL, mode) }
            }
        } catch .fileExists where flags & O_EXCL == 0 {
            // Created behind the mount since the kernel's lookup: open what is there now.
            let entry = try lookupEntry(in: directory, name: name)
            do {
                return (entry, try open(entry.inode, flags: flags, caller: caller))
            } catch {
                inodes.forget(entry.inode, count: 1)
                throw error
            }
        }
        var pathDescriptor: Int32?
        var status = stat()
        do {
            _ = try systemCall { fstat(descriptor, &status) }
            try adopt(descriptor: descriptor, status: &status, in: directory, restoring: restore, caller: caller)
            if inodes.shouldPin(S_IFREG) {
                pathDescriptor = try? systemCall { Glibc.open(procPath(descriptor), LinuxFlags.openPath | O_CLOEXEC) }
            }
        } catch {
            close(descriptor)
            throw error
        }
        let inode = inodes.remember(descriptor: pathDescriptor, status: status, parent: directory.number, name: name)
        let file = OpenFile(descriptor: descriptor, inode: inode, flags: flags, isStub: false,
                            passthroughOffered: mayPassThrough(inode, flags: flags))
        let handle = files.insert(file)
        let mounted = mountedFile(inode)
        hooks.didChange(MountChange(kind: .created, path: mounted.path, identity: inode.identity))
        hooks.didOpen(mounted, flags: flags)
        return (Entry(inode: inode.number, generation: 0, attributes: status), opened(handle, file))
    }

    public func read(_ number: UInt64, handle: UInt64, offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws(Errno) -> Int {
        let file = try readableFile(handle, offset: offset, length: buffer.count)
        var done = 0
        while done < buffer.count {
            let count = try systemCall { pread(file.descriptor, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done)) }
            if count == 0 { break }
            done += count
        }
        return done
    }

    public func read(_ number: UInt64, handle: UInt64, offset: Int64, length: Int,
                     send: (_ descriptor: Int32, _ position: Int64) throws(Errno) -> Void) throws(Errno) -> Bool {
        let file = try readableFile(handle, offset: offset, length: length)
        try send(file.descriptor, offset)  // `file` keeps the descriptor open until this returns
        return true
    }

    /// The open file for a read, after a stub's range has been recalled.
    private func readableFile(_ handle: UInt64, offset: Int64, length: Int) throws(Errno) -> OpenFile {
        let file = try files.object(handle)
        servedReads.add(1, ordering: .relaxed)
        if file.isStub.load(ordering: .relaxed) {
            try hooks.beforeRead(mountedFile(file.inode, descriptor: file.descriptor), offset: offset, length: length)
            file.isStub.store(Self.hasStubMarker(descriptor: file.descriptor), ordering: .relaxed)
        }
        return file
    }

    public func write(_ number: UInt64, handle: UInt64, offset: Int64, length: Int, transfer: (Int32) throws(Errno) -> Int) throws(Errno) -> Int? {
        let file = try files.object(handle)
        // splice(2) refuses a descriptor opened for appending.
        if file.flags & O_APPEND != 0 && !configuration.writebackCache { return nil }
        try prepareWrite(file, offset: offset, length: length)
        let done = try transfer(file.descriptor)
        noteWrite(file)
        return done
    }

    /// A stub's content is made whole before anything is written into it.
    private func prepareWrite(_ file: OpenFile, offset: Int64, length: Int) throws(Errno) {
        servedWrites.add(1, ordering: .relaxed)
        if file.isStub.load(ordering: .relaxed) {
            try hooks.beforeWrite(mountedFile(file.inode, descriptor: file.descriptor), .write(offset: offset, length: length))
            file.isStub.store(Self.hasStubMarker(descriptor: file.descriptor), ordering: .relaxed)
        }
    }

    public func write(_ number: UInt64, handle: UInt64, offset: Int64, from buffer: UnsafeRawBufferPointer) throws(Errno) -> Int {
        let file = try files.object(handle)
        try prepareWrite(file, offset: offset, length: buffer.count)
        var done = 0
        while done < buffer.count {
            done += try systemCall { pwrite(file.descriptor, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done)) }
        }
        noteWrite(file)
        return done
    }

    public func flush(_ number: UInt64, handle: UInt64) throws(Errno) {
        let file = try files.object(handle)
        // Closing a duplicate reports what a close of the application's descriptor would report.
        let duplicate = try systemCall { dup(file.descriptor) }
        _ = try systemCall { close(duplicate) }
    }

    public func release(_ number: UInt64, handle: UInt64) {
        guard let file = files.remove(handle) else { return }
        if file.passedThrough.load(ordering: .relaxed) && file.isWritable {
            // Whatever the kernel wrote directly is done now.
            hooks.didChange(MountChange(kind: .modified, path: path(of: file.inode.number), identity: file.inode.identity))
        }
        if file.wrote.load(ordering: .relaxed) {
            hooks.didChange(MountChange(kind: .closedAfterWrite, path: path(of: file.inode.number), identity: file.inode.identity))
        }
    }

    public func fsync(_ number: UInt64, handle: UInt64, dataOnly: Bool) throws(Errno) {
        let file = try files.object(handle)
        _ = try systemCall { dataOnly ? fdatasync(file.descriptor) : Glibc.fsync(file.descriptor) }
        file.reportedModified.store(false, ordering: .relaxed)
    }

    public func fallocate(_ number: UInt64, handle: UInt64, mode: Int32, offset: Int64, length: Int64) throws(Errno) {
        let file = try files.object(handle)
        if file.isStub.load(ordering: .relaxed) {
            try hooks.beforeWrite(mountedFile(file.inode, descriptor: file.descriptor), .allocate(mode: mode, offset: offset, length: length))
            file.isStub.store(Self.hasStubMarker(descriptor: file.descriptor), ordering: .relaxed)
        }
        _ = try systemCall { CFuse3_fallocate(file.descriptor, mode, offset, length) }
        noteWrite(file)
    }

    // MARK: Directories

    public func opendir(_ number: UInt64) throws(Errno) -> UInt64 {
        let inode = try inodes.inode(number)
        guard inode.isDirectory else { throw Errno(ENOTDIR) }
        let descriptor = try inodes.withDescriptor(inode) { pathDescriptor throws(Errno) in
            try systemCall { openat(pathDescriptor, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        }
        guard let stream = fdopendir(descriptor) else {
            let error = Errno.current
            close(descriptor)
            throw error
        }
        return directories.insert(DirectoryStream(stream: stream, inode: inode))
    }

    public func readdir(_ number: UInt64, handle: UInt64, offset: Int64, plus: Bool, _ accept: (DirectoryEntry) -> Bool) throws(Errno) {
        let directory = try directories.object(handle)
        try directory.position.withLock { position throws(Errno) in
            if position.offset != offset {
                if offset == 0 { rewinddir(position.stream) } else { seekdir(position.stream, Int(offset)) }
                position.offset = offset
            }
            var accepted = 0
            while true {
                errno = 0
                guard let record = Glibc.readdir(position.stream) else {
                    if errno != 0 && accepted == 0 { throw Errno.current }
                    return
                }
                // Not `record.pointee.d_name` whole: the record is only as long as the name.
                let field = UnsafeRawPointer(record).advanced(by: MemoryLayout<dirent>.offset(of: \dirent.d_name)!)
                let name = Array(UnsafeRawBufferPointer(start: field, count: strlen(field.assumingMemoryBound(to: CChar.self))))
                let nextOffset = Int64(record.pointee.d_off)
                let isDot = name == [UInt8(ascii: ".")] || name == [UInt8(ascii: "."), UInt8(ascii: ".")]
                var entry: Entry?
                if plus && !isDot {
                    do throws(Errno) {
                        entry = try lookupEntry(in: directory.inode, name: name)
                    } catch .noSuchFileOrDirectory {
                        position.offset = nextOffset
                        continue  // removed since the listing was read: not an entry any more
                    } catch {
                        if accepted == 0 { throw error }
                        position.offset = nil
                        return
                    }
                }
                let listed = DirectoryEntry(name: name, nextOffset: nextOffset, fileNumber: UInt64(record.pointee.d_ino),
                                            type: mode_t(record.pointee.d_type) << 12, entry: entry)
                guard accept(listed) else {
                    if let entry { inodes.forget(entry.inode, count: 1) }
                    // The stream has moved past the entry that did not fit; seek back next time.
                    position.offset = nil
                    return
                }
                accepted += 1
                position.offset = nextOffset
            }
        }
    }

    public func releasedir(_ number: UInt64, handle: UInt64) {
        _ = directories.remove(handle)
    }

    public func fsyncdir(_ number: UInt64, handle: UInt64, dataOnly: Bool) throws(Errno) {
        let directory = try directories.object(handle)
        let descriptor = directory.position.withLock { dirfd($0.stream) }
        _ = try systemCall { dataOnly ? fdatasync(descriptor) : Glibc.fsync(descriptor) }
    }

    public func statfs(_ number: UInt64) throws(Errno) -> statvfs {
        let inode = try inodes.inode(number)
        var figures = statvfs()
        try inodes.withDescriptor(inode) { descriptor throws(Errno) in
            _ = try systemCall { fstatvfs(descriptor, &figures) }
        }
        return figures
    }

    // MARK: Extended attributes

    public func getxattr(_ number: UInt64, name: [UInt8]) throws(Errno) -> [UInt8] {
        let kind = ExtendedAttributeName.classify(name)
        switch kind {
        case .reserved: throw .noData
        case .unsupported: throw .notSupported
        case .user, .accessControlList: break
        }
        let inode = try inodes.inode(number)
        guard !inode.isSymbolicLink else { throw .noData }  // Linux keeps no user.* attributes or ACLs on symlinks
        do {
            return try inodes.withDescriptor(inode) { descriptor throws(Errno) in
                try value(of: name, at: procPath(descriptor))
            }
        } catch .notSupported where kind == .accessControlList {
            // An endpoint file system without ACLs: the file has none. The kernel consults the ACL in
            // permission checks, and an error there would deny what the mode bits allow.
            throw .noData
        }
    }

    private func value(of name: [UInt8], at path: String) throws(Errno) -> [UInt8] {
        try withName(name, validate: false) { cName throws(Errno) in
            while true {
                let size = try systemCall { CFuse3.getxattr(path, cName, nil, 0) }
                let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(size, 1), alignment: 1)
                defer { buffer.deallocate() }
                do throws(Errno) {
                    let count = try systemCall { CFuse3.getxattr(path, cName, buffer.baseAddress, size) }
                    return Array(buffer.prefix(count))
                } catch .outOfRange {
                    continue  // grew between the two calls
                }
            }
        }
    }

    public func listxattr(_ number: UInt64) throws(Errno) -> [UInt8] {
        let inode = try inodes.inode(number)
        guard !inode.isSymbolicLink else { return [] }
        let names = try inodes.withDescriptor(inode) { descriptor throws(Errno) in try Self.names(at: procPath(descriptor)) }
        var visible: [UInt8] = []
        for name in names.split(separator: 0) where ExtendedAttributeName.classify(Array(name)).isListed {
            visible.append(contentsOf: name)
            visible.append(0)
        }
        return visible
    }

    private static func names(at path: String) throws(Errno) -> [UInt8] {
        var names: [UInt8]
        while true {
            let size = try systemCall { CFuse3.listxattr(path, nil, 0) }
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(size, 1), alignment: 1)
            defer { buffer.deallocate() }
            do throws(Errno) {
                let count = try systemCall { CFuse3.listxattr(path, buffer.baseAddress!.assumingMemoryBound(to: CChar.self), size) }
                names = Array(buffer.prefix(count))
                break
            } catch .outOfRange {
                continue  // grew between the two calls
            }
        }
        return names
    }

    public func setxattr(_ number: UInt64, name: [UInt8], value: UnsafeRawBufferPointer, flags: Int32) throws(Errno) {
        try changeAttribute(number, name: name, onSymbolicLink: { $0 == .user ? .notPermitted : .notSupported }) { path, cName in
            CFuse3.setxattr(path, cName, value.baseAddress, value.count, flags)
        }
    }

    public func removexattr(_ number: UInt64, name: [UInt8]) throws(Errno) {
        try changeAttribute(number, name: name, onSymbolicLink: { $0 == .user ? .noData : .notSupported }) { path, cName in
            CFuse3.removexattr(path, cName)
        }
    }

    /// Sets or removes an attribute of a namespace the mount passes through: `change` makes the call on
    /// the endpoint file; `onSymbolicLink` is what Linux answers for a symbolic link itself.
    private func changeAttribute(_ number: UInt64, name: [UInt8], onSymbolicLink: (ExtendedAttributeName) -> Errno,
                                 _ change: (String, UnsafePointer<CChar>) -> Int32) throws(Errno) {
        let kind = ExtendedAttributeName.classify(name)
        switch kind {
        case .reserved: throw .notPermitted
        case .unsupported: throw .notSupported
        case .user, .accessControlList: break
        }
        let inode = try inodes.inode(number)
        guard !inode.isSymbolicLink else { throw onSymbolicLink(kind) }
        try inodes.withDescriptor(inode) { descriptor throws(Errno) in
            try withName(name, validate: false) { cName throws(Errno) in
                _ = try systemCall { change(procPath(descriptor), cName) }
            }
        }
        hooks.didChange(MountChange(kind: .attributesChanged, path: path(of: number), identity: inode.identity))
    }

    public func access(_ number: UInt64, mask: Int32, caller: Caller) throws(Errno) {
        let status = try getattr(number, handle: nil)
        guard mask != F_OK else { return }
        let mode = status.st_mode
        if caller.uid == 0 {
            // root may do anything but execute a file that no one may execute.
            if mask & X_OK != 0 && mode & S_IFMT != S_IFDIR && mode & 0o111 == 0 { throw .permissionDenied }
            return
        }
        let shift: mode_t = caller.uid == status.st_uid ? 6 : caller.gid == status.st_gid ? 3 : 0
        let granted = Int32((mode >> shift) & 0o7)
        if mask & granted != mask { throw .permissionDenied }
    }

    public func backingFileChanged(_ identity: FileIdentity) -> UInt64? {
        guard let number = inodes.number(of: identity) else { return nil }
        files.forEach { file in
            if file.inode.number == number {
                file.isStub.store(Self.hasStubMarker(descriptor: file.descriptor), ordering: .relaxed)
            }
        }
        return number
    }

    // MARK: Helpers

    /// The flags for the backing descriptor of an application's open: creation flags are handled by
    /// the caller, and with a writeback cache the kernel reads pages of write-only files and owns appends.
    private func backingFlags(_ flags: Int32) -> Int32 {
        var result = flags & ~(O_CREAT | O_EXCL | O_NOCTTY | O_TRUNC | O_NOFOLLOW) | O_CLOEXEC
        if configuration.writebackCache {
            if result & O_ACCMODE == O_WRONLY { result = (result & ~O_ACCMODE) | O_RDWR }
            result &= ~O_APPEND
        }
        return result
    }

    private func opened(_ handle: UInt64, _ file: OpenFile) -> OpenedFile {
        // No flush per close: the backing file is local, so a close cannot report anything a write
        // or fsync did not; that saves a round trip on every close(2).
        var opened = OpenedFile(handle: handle, keepCache: configuration.keepCache, directIO: false, noFlush: true)
        if file.passthroughOffered { opened.passthroughDescriptor = file.descriptor }
        return opened
    }

    public func openedInPassthrough(_ number: UInt64, handle: UInt64) {
        guard let file = try? files.object(handle) else { return }
        file.passedThrough.store(true, ordering: .relaxed)
        // The kernel's writes will not pass here: the change is reported now, and again at the release.
        if file.isWritable { noteWrite(file) }
    }

    /// Whether a full file may be passed through to the kernel: the hooks agree, and the kernel does
    /// not cache writes (it refuses passthrough together with the writeback cache).
    private func mayPassThrough(_ inode: Inode, flags: Int32) -> Bool {
        !configuration.writebackCache && hooks.allowsPassthrough(mountedFile(inode), flags: flags)
    }

    /// O_TRUNC: the stub must be told before its content goes.
    private func truncateOnOpen(_ file: OpenFile) throws(Errno) {
        if file.isStub.load(ordering: .relaxed) {
            try hooks.beforeWrite(mountedFile(file.inode, descriptor: file.descriptor), .truncate(size: 0))
        }
        if file.isWritable {
            _ = try systemCall { ftruncate(file.descriptor, 0) }
        } else {
            _ = try systemCall { truncate(procPath(file.descriptor), 0) }
        }
        file.isStub.store(Self.hasStubMarker(descriptor: file.descriptor), ordering: .relaxed)
        hooks.didChange(MountChange(kind: .modified, path: path(of: file.inode.number), identity: file.inode.identity))
    }

    private func noteWrite(_ file: OpenFile) {
        file.wrote.store(true, ordering: .relaxed)
        if !file.reportedModified.exchange(true, ordering: .relaxed) {
            hooks.didChange(MountChange(kind: .modified, path: path(of: file.inode.number), identity: file.inode.identity))
        }
    }

    /// Counts a name just created in `directory` (pinned when the budget allows), hands it to the
    /// caller and puts back the mode bits `restore` that the daemon's umask took.
    private func finishCreation(in directory: Inode, name: [UInt8], restoring restore: mode_t, caller: Caller) throws(Errno) -> Entry {
        let owner = owner(for: caller, in: directory)
        return try at(directory, name) { directoryDescriptor, cName throws(Errno) in
            var status = stat()
            _ = try systemCall { fstatat(directoryDescriptor, cName, &status, AT_SYMLINK_NOFOLLOW) }
            if restore != 0 && status.st_mode & S_IFMT != S_IFLNK {
                _ = try systemCall { fchmodat(directoryDescriptor, cName, (status.st_mode & 0o7777) | restore, 0) }
            }
            if let owner {
                _ = try systemCall { fchownat(directoryDescriptor, cName, owner.uid, owner.gid, AT_SYMLINK_NOFOLLOW) }
            }
            _ = try systemCall { fstatat(directoryDescriptor, cName, &status, AT_SYMLINK_NOFOLLOW) }
            var pinned: Int32?
            if inodes.shouldPin(status.st_mode & S_IFMT),
               let descriptor = try? systemCall({ openat(directoryDescriptor, cName, LinuxFlags.openPath | O_NOFOLLOW | O_CLOEXEC) }) {
                // Pin only what was stat-ed: a name replaced in between stays unpinned (and goes stale).
                if let pinnedStatus = try? Self.status(of: descriptor), FileIdentity(pinnedStatus) == FileIdentity(status) {
                    pinned = descriptor
                } else {
                    close(descriptor)
                }
            }
            let inode = inodes.remember(descriptor: pinned, status: status, parent: directory.number, name: name)
            return Entry(inode: inode.number, generation: 0, attributes: status)
        }
    }

    /// Same as ``finishCreation(in:name:restoring:caller:)`` for a file created open as `descriptor`.
    private func adopt(descriptor: Int32, status: inout stat, in directory: Inode, restoring restore: mode_t, caller: Caller) throws(Errno) {
        if restore != 0 {
            _ = try systemCall { fchmod(descriptor, (status.st_mode & 0o7777) | restore) }
            status.st_mode |= restore
        }
        if let owner = owner(for: caller, in: directory) {
            _ = try systemCall { fchown(descriptor, owner.uid, owner.gid) }
            _ = try systemCall { fstat(descriptor, &status) }
        }
    }

    /// The mode to create a file with in `directory`, and the permission bits to put back afterwards
    /// because the daemon's own umask took them. The kernel leaves the caller's umask to the core
    /// (`FUSE_CAP_DONT_MASK`): it applies unless the directory has a default ACL, which then decides
    /// the new file's permissions together with the requested mode, as on a local file system (the
    /// endpoint's file system ignores the daemon's umask there too).
    private func creationMode(_ requested: mode_t, in directory: Inode, caller: Caller) -> (mode: mode_t, restore: mode_t) {
        // When neither umask touches the requested bits, the directory's ACL cannot change the answer.
        if requested & (caller.umask | processUmask) & 0o777 == 0 || hasDefaultACL(directory) {
            return (requested, 0)
        }
        let mode = requested & ~(caller.umask & 0o777)
        return (mode, mode & processUmask & 0o777)
    }

    /// Whether `directory` carries a default ACL on the endpoint (false where the file system has no ACLs).
    private func hasDefaultACL(_ directory: Inode) -> Bool {
        let size = try? inodes.withDescriptor(directory) { descriptor throws(Errno) in
            CFuse3.getxattr(procPath(descriptor), ExtendedAttributeName.defaultACLName, nil, 0)
        }
        return (size ?? 0) > 0
    }

    /// The owner to give a new file when the daemon (root) creates it for another user; the group
    /// stays as created when the directory is set-group-ID, which the backing file system applied.
    private func owner(for caller: Caller, in directory: Inode) -> (uid: uid_t, gid: gid_t)? {
        guard runsAsRoot, caller.uid != 0 || caller.gid != 0 else { return nil }
        let mode = (try? inodes.withDescriptor(directory) { descriptor throws(Errno) in try Self.status(of: descriptor) })?.st_mode ?? 0
        let inheritsGroup = mode & S_ISGID != 0
        return (caller.uid, inheritsGroup ? gid_t.max : caller.gid)
    }

    private func identity(in directory: Inode, name: [UInt8]) throws(Errno) -> FileIdentity {
        FileIdentity(try status(in: directory, name: name))
    }

    private func status(in directory: Inode, name: [UInt8]) throws(Errno) -> stat {
        var status = stat()
        try at(directory, name) { directory, cName throws(Errno) in
            _ = try systemCall { fstatat(directory, cName, &status, AT_SYMLINK_NOFOLLOW) }
        }
        return status
    }

    /// Throws `ESTALE` when the kernel's entry for `directory/name` cannot be the file the name holds on
    /// the endpoint now: the name was given another file behind the mount within the entry timeout. A
    /// rename acts on names, so it would move the endpoint's file while the kernel moved its entry for
    /// the replaced one, and the new name would read and write a file no name holds. On `ESTALE` the
    /// kernel looks the names up again and retries the call once.
    private func requireCurrentEntry(in directory: Inode, _ name: [UInt8]) throws(Errno) {
        let status = try status(in: directory, name: name)
        // A file with several names is recorded under the last one seen: only its identity is checked.
        let manyNames = status.st_mode & S_IFMT != S_IFDIR && status.st_nlink > 1
        guard inodes.knows(FileIdentity(status), as: manyNames ? nil : (directory.number, name)) else { throw .stale }
    }

    /// Calls `body` with a descriptor of `directory` and `name` as a validated C string.
    private func at<R>(_ directory: Inode, _ name: [UInt8], _ body: (Int32, UnsafePointer<CChar>) throws(Errno) -> R) throws(Errno) -> R {
        try inodes.withDescriptor(directory) { descriptor throws(Errno) in
            try withName(name) { cName throws(Errno) in try body(descriptor, cName) }
        }
    }

    func mountedFile(_ inode: Inode, descriptor: Int32? = nil) -> MountedFile {
        MountedFile(path: path(of: inode.number), identity: inode.identity, descriptor: descriptor)
    }

    /// The UTF-8 path of an inode for hooks.
    func path(of number: UInt64) -> String? {
        inodes.pathBytes(of: number).flatMap { String(validating: $0, as: UTF8.self) }
    }

    private func path(in directory: Inode, _ name: [UInt8]) -> String? {
        guard var bytes = inodes.pathBytes(of: directory.number) else { return nil }
        if !bytes.isEmpty { bytes.append(UInt8(ascii: "/")) }
        bytes.append(contentsOf: name)
        return String(validating: bytes, as: UTF8.self)
    }

    static func status(of descriptor: Int32) throws(Errno) -> stat {
        var status = stat()
        _ = try systemCall { fstatat(descriptor, "", &status, LinuxFlags.atEmptyPath | AT_SYMLINK_NOFOLLOW) }
        return status
    }

    static func hasStubMarker(descriptor: Int32) -> Bool {
        fgetxattr(descriptor, stubMarker, nil, 0) >= 0
    }

    static func hasStubMarker(path: String) -> Bool {
        CFuse3.getxattr(path, stubMarker, nil, 0) >= 0
    }

    private static func timespec(_ change: TimeChange?) -> Glibc.timespec {
        switch change {
        case nil: Glibc.timespec(tv_sec: 0, tv_nsec: LinuxFlags.utimeOmit)
        case .now: Glibc.timespec(tv_sec: 0, tv_nsec: LinuxFlags.utimeNow)
        case .at(let seconds, let nanoseconds): Glibc.timespec(tv_sec: seconds, tv_nsec: nanoseconds)
        }
    }

    /// Raises the soft descriptor limit to the hard one, and as root (with CAP_SYS_RESOURCE) the hard
    /// limit to the kernel's ceiling (`fs.nr_open`); returns the soft limit now in force.
    static func raiseDescriptorLimit() -> Int {
        var limit = rlimit()
        let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
        guard getrlimit(resource, &limit) == 0 else { return 1024 }
        if let ceiling = readNumber("/proc/sys/fs/nr_open"), ceiling > limit.rlim_max {
            var raised = limit
            raised.rlim_max = rlim_t(ceiling)
            raised.rlim_cur = rlim_t(ceiling)
            if setrlimit(resource, &raised) == 0 { return Int(clamping: ceiling) }
        }
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max
            _ = setrlimit(resource, &limit)
        }
        _ = getrlimit(resource, &limit)
        return Int(clamping: limit.rlim_cur)
    }

    private static func readNumber(_ path: String) -> UInt64? {
        guard let file = fopen(path, "r") else { return nil }
        defer { fclose(file) }
        var line = [CChar](repeating: 0, count: 32)
        guard fgets(&line, Int32(line.count), file) != nil else { return nil }
        return UInt64(String(decoding: line.prefix { $0 != 0 && $0 != 10 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
    }

    /// The umask, read without changing it (`umask(2)` can only be read by setting it, which would
    /// race with other threads creating files).
    private static func readProcessUmask() -> mode_t {
        guard let file = fopen("/proc/self/status", "r") else { return 0o022 }
        defer { fclose(file) }
        var line: UnsafeMutablePointer<CChar>?
        var capacity = 0
        defer { free(line) }
        while getline(&line, &capacity, file) > 0 {
            let text = String(cString: line!)
            if text.hasPrefix("Umask:") {
                let digits = text.dropFirst("Umask:".count).trimmingPrefix(while: { $0 == "\t" || $0 == " " }).prefix { $0.isNumber }
                return mode_t(digits, radix: 8) ?? 0o022
            }
        }
        return 0o022
    }
}

/// Linux values Swift's Glibc module does not export (they sit behind `_GNU_SOURCE`).
enum LinuxFlags {
    /// `O_PATH`.
    static let openPath: Int32 = 0o10000000
    /// `AT_EMPTY_PATH`.
    static let atEmptyPath: Int32 = 0x1000
    /// `UTIME_NOW`.
    static let utimeNow = (1 << 30) - 1
    /// `UTIME_OMIT`.
    static let utimeOmit = (1 << 30) - 2
}

/// Calls `body` with `name` as a NUL-terminated C string built on the stack; rejects names that are
/// not a single path component, which would reach outside the directory they are resolved in.
func withName<R>(_ name: [UInt8], validate: Bool = true, _ body: (UnsafePointer<CChar>) throws(Errno) -> R) throws(Errno) -> R {
    if validate {
        guard !name.isEmpty, !name.contains(0), !name.contains(UInt8(ascii: "/")),
              name != [UInt8(ascii: ".")], name != [UInt8(ascii: "."), UInt8(ascii: ".")] else { throw .invalidArgument }
        guard name.count <= 255 else { throw .nameTooLong }
    } else {
        guard !name.contains(0) else { throw .invalidArgument }
    }
    let result: Result<R, Errno> = withUnsafeTemporaryAllocation(of: CChar.self, capacity: name.count + 1) { buffer in
        name.withUnsafeBytes { bytes in
            UnsafeMutableRawBufferPointer(buffer).copyMemory(from: bytes)
        }
        buffer[name.count] = 0
        do throws(Errno) {
            return .success(try body(buffer.baseAddress!))
        } catch {
            return .failure(error)
        }
    }
    return try result.get()
}
