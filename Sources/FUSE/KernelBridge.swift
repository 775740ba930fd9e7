import Synchronization
import CFuse3
import Glibc

/// The thin glue between libfuse's low-level callbacks and a ``FileSystemCore``: it copies each
/// request's arguments into Swift values, calls the core on the worker thread that received the
/// request, and encodes the answer. Every ``Errno`` a core throws is sent to the kernel here, once.
///
/// Callbacks reach the bridge through the session's user data pointer (`fuse_req_userdata`); the
/// ``MountSession`` keeps the bridge alive for as long as the session exists.
final class KernelBridge: Sendable {
    let core: any FileSystemCore
    let entryTimeout: Double
    let attributeTimeout: Double
    let negativeTimeout: Double
    let maxBackground: UInt32
    let spliceWrites: Bool
    /// Which open files the kernel reads and writes directly.
    let passthrough: KernelPassthrough
    /// Requests the kernel sent (for the daemon's metrics).
    let requests = Atomic<Int>(0)

    init(core: any FileSystemCore, options: MountOptions) {
        self.core = core
        entryTimeout = options.entryTimeout
        attributeTimeout = options.attributeTimeout
        negativeTimeout = options.negativeTimeout
        maxBackground = UInt32(clamping: options.maxBackgroundRequests)
        spliceWrites = options.spliceWrites
        passthrough = KernelPassthrough(wanted: options.passthrough)
    }

    /// The bridge a request belongs to.
    @inline(__always)
    static func of(_ request: fuse_req_t?) -> KernelBridge {
        let bridge = Unmanaged<KernelBridge>.fromOpaque(fuse_req_userdata(request)!).takeUnretainedValue()
        bridge.requests.wrappingAdd(1, ordering: .relaxed)
        return bridge
    }

    // MARK: Encoding answers

    /// Runs `body`, which sends the success reply itself; a thrown errno becomes the reply instead.
    @inline(__always)
    static func respond(_ request: fuse_req_t?, _ body: () throws(Errno) -> Void) {
        do {
            try body()
        } catch {
            fuse_reply_err(request, error.rawValue)
        }
    }

    func entryParameters(_ entry: Entry) -> fuse_entry_param {
        var parameters = fuse_entry_param()
        parameters.ino = fuse_ino_t(entry.inode)
        parameters.generation = entry.generation
        parameters.attr = entry.attributes
        parameters.attr_timeout = attributeTimeout
        parameters.entry_timeout = entryTimeout
        return parameters
    }

    /// Sends an entry; when the kernel did not take it (the request was interrupted), the reference
    /// the core counted for it is given back.
    func replyEntry(_ request: fuse_req_t?, _ entry: Entry) {
        var parameters = entryParameters(entry)
        if fuse_reply_entry(request, &parameters) != 0 {
            core.forget(entry.inode, count: 1)
        }
    }

    /// Answers OPEN, or CREATE when `entry` is set: passed through to the backing file when the core
    /// offers a descriptor and the kernel may take it, else through the daemon. When the reply cannot
    /// be sent, what the core handed out is given back.
    func replyOpened(_ request: fuse_req_t?, _ inode: UInt64, _ opened: OpenedFile,
                     _ info: UnsafeMutablePointer<fuse_file_info>, entry: Entry? = nil) {
        let offered = opened.directIO ? nil : opened.passthroughDescriptor
        let mode: KernelPassthrough.Mode
        do throws(Errno) {
            mode = try passthrough.open(inode: inode, handle: opened.handle, descriptor: offered)
        } catch {
            core.release(inode, handle: opened.handle)
            if let entry { core.forget(entry.inode, count: 1) }
            fuse_reply_err(request, error.rawValue)
            return
        }
        var parameters = entry.map { entryParameters($0) }
        let result: Int32
        switch mode {
        case .cached:
            info.pointee.fh = opened.handle
            info.pointee.keep_cache = opened.keepCache ? 1 : 0
            info.pointee.direct_io = opened.directIO ? 1 : 0
            info.pointee.noflush = opened.noFlush ? 1 : 0
            result = parameters == nil ? fuse_reply_open(request, info) : fuse_reply_create(request, &parameters!, info)
        case .passthrough(let backingID):
            core.openedInPassthrough(inode, handle: opened.handle)
            // The backing file's page cache serves this file: FOPEN_KEEP_CACHE is refused with passthrough.
            let flags = opened.noFlush ? UInt32(CFUSE3_FOPEN_NOFLUSH) : 0
            result = parameters == nil
                ? CFuse3_reply_open_passthrough(request, opened.handle, flags, backingID)
                : CFuse3_reply_create_passthrough(request, &parameters!, opened.handle, flags, backingID)
        }
        if result != 0 {
            // Interrupted: the kernel never saw the handle (nor the entry).
            passthrough.release(handle: opened.handle)
            core.release(inode, handle: opened.handle)
            if let entry { core.forget(entry.inode, count: 1) }
        }
    }

    // MARK: Decoding requests

    /// Copies a name the kernel passed; the C string is only valid during the callback.
    @inline(__always)
    static func bytes(_ name: UnsafePointer<CChar>?) -> [UInt8] {
        guard let name else { return [] }
        return [UInt8](UnsafeRawBufferPointer(start: name, count: strlen(name)))
    }

    static func caller(_ request: fuse_req_t?) -> Caller {
        guard let context = fuse_req_ctx(request)?.pointee else { return Caller(uid: 0, gid: 0) }
        return Caller(uid: context.uid, gid: context.gid, pid: context.pid, umask: context.umask)
    }

    static func changes(_ attributes: stat, _ fields: Int32) -> AttributeChanges {
        func has(_ flag: Int32) -> Bool { fields & flag != 0 }
        var changes = AttributeChanges()
        if has(FUSE_SET_ATTR_MODE) { changes.mode = attributes.st_mode }
        if has(FUSE_SET_ATTR_UID) { changes.uid = attributes.st_uid }
        if has(FUSE_SET_ATTR_GID) { changes.gid = attributes.st_gid }
        if has(FUSE_SET_ATTR_SIZE) { changes.size = Int64(attributes.st_size) }
        if has(FUSE_SET_ATTR_ATIME_NOW) {
            changes.accessTime = .now
        } else if has(FUSE_SET_ATTR_ATIME) {
            changes.accessTime = .at(seconds: attributes.st_atim.tv_sec, nanoseconds: attributes.st_atim.tv_nsec)
        }
        if has(FUSE_SET_ATTR_MTIME_NOW) {
            changes.modificationTime = .now
        } else if has(FUSE_SET_ATTR_MTIME) {
            changes.modificationTime = .at(seconds: attributes.st_mtim.tv_sec, nanoseconds: attributes.st_mtim.tv_nsec)
        }
        return changes
    }

    // MARK: Session start

    func initialize(_ connection: UnsafeMutablePointer<fuse_conn_info>) {
        let capable = connection.pointee.capable
        var want = connection.pointee.want
        func request(_ capability: Int32, _ on: Bool) {
            let bit = UInt32(capability)
            if on && capable & bit != 0 { want |= bit } else if !on { want &= ~bit }
        }
        request(FUSE_CAP_ASYNC_READ, true)          // several reads of one file in flight (readahead)
        request(FUSE_CAP_ATOMIC_O_TRUNC, true)      // O_TRUNC arrives with open: one request, stub-aware
        request(FUSE_CAP_AUTO_INVAL_DATA, true)     // a changed mtime or size drops cached pages
        request(FUSE_CAP_PARALLEL_DIROPS, true)     // lookups and listings of one directory in parallel
        request(FUSE_CAP_WRITEBACK_CACHE, core.wantsWritebackCache)
        // Read replies from a descriptor are spliced to the kernel, not copied through user space.
        request(FUSE_CAP_SPLICE_WRITE, true)
        request(FUSE_CAP_SPLICE_MOVE, true)
        request(FUSE_CAP_SPLICE_READ, spliceWrites)
        // The kernel strips set-user-ID bits on write itself; the daemon (root) would not.
        request(FUSE_CAP_HANDLE_KILLPRIV, false)
        // Locks stay in the kernel: they work between processes using the mount, not with the endpoint.
        request(FUSE_CAP_POSIX_LOCKS, false)
        request(FUSE_CAP_FLOCK_LOCKS, false)
        // POSIX ACLs as on the endpoint: the kernel enforces them and passes system.posix_acl_* to the
        // core. The umask goes to the core too: the kernel would strip it before the core could see
        // that the directory has a default ACL, which replaces the umask on a local file system.
        request(FUSE_CAP_POSIX_ACL, true)
        request(FUSE_CAP_DONT_MASK, true)
        connection.pointee.want = want
        if maxBackground > 0 {
            connection.pointee.max_background = maxBackground
            connection.pointee.congestion_threshold = maxBackground * 3 / 4
        }
    }

    // MARK: The operations table

    /// The callbacks; requests the table leaves out (locks, lseek, copy_file_range, ioctl, bmap, poll)
    /// get ENOSYS from libfuse and the kernel's generic behaviour, which is deliberate (see docs/mount.md).
    static func operations() -> fuse_lowlevel_ops {
        var operations = fuse_lowlevel_ops()
        operations.`init` = { userdata, connection in
            guard let userdata, let connection else { return }
            Unmanaged<KernelBridge>.fromOpaque(userdata).takeUnretainedValue().initialize(connection)
        }
        operations.lookup = { request, parent, name in
            let bridge = KernelBridge.of(request)
            let name = KernelBridge.bytes(name)
            do throws(Errno) {
                bridge.replyEntry(request, try bridge.core.lookup(parent: parent, name: name))
            } catch .noSuchFileOrDirectory where bridge.negativeTimeout > 0 {
                // A zero node id with a timeout lets the kernel cache the absence of the name.
                var parameters = fuse_entry_param()
                parameters.entry_timeout = bridge.negativeTimeout
                fuse_reply_entry(request, &parameters)
            } catch {
                fuse_reply_err(request, error.rawValue)
            }
        }
        operations.forget = { request, inode, count in
            KernelBridge.of(request).core.forget(inode, count: count)
            fuse_reply_none(request)
        }
        operations.forget_multi = { request, count, forgets in
            let core = KernelBridge.of(request).core
            if let forgets {
                for index in 0..<count {
                    core.forget(forgets[index].ino, count: forgets[index].nlookup)
                }
            }
            fuse_reply_none(request)
        }
        operations.getattr = { request, inode, info in
            let bridge = KernelBridge.of(request)
            KernelBridge.respond(request) { () throws(Errno) in
                var status = try bridge.core.getattr(inode, handle: info?.pointee.fh)
                fuse_reply_attr(request, &status, bridge.attributeTimeout)
            }
        }
        operations.setattr = { request, inode, attributes, fields, info in
            let bridge = KernelBridge.of(request)
            let changes = KernelBridge.changes(attributes?.pointee ?? stat(), fields)
            let caller = KernelBridge.caller(request)
            KernelBridge.respond(request) { () throws(Errno) in
                var status = try bridge.core.setattr(inode, changes: changes, handle: info?.pointee.fh, caller: caller)
                fuse_reply_attr(request, &status, bridge.attributeTimeout)
            }
        }
        operations.readlink = { request, inode in
            let bridge = KernelBridge.of(request)
            KernelBridge.respond(request) { () throws(Errno) in
                var target = try bridge.core.readlink(inode).map { CChar(bitPattern: $0) }
                target.append(0)
                fuse_reply_readlink(request, target)
            }
        }
        operations.mknod = { request, parent, name, mode, device in
            let bridge = KernelBridge.of(request)
            let name = KernelBridge.bytes(name)
            let caller = KernelBridge.caller(request)
            KernelBridge.respond(request) { () throws(Errno) in
                bridge.replyEntry(request, try bridge.core.mknod(parent: parent, name: name, mode: mode, device: device, caller: caller))
            }
        }
        operations.mkdir = { request, parent, name, mode in
            let bridge = KernelBridge.of(request)
            let name = KernelBridge.bytes(name)
            let caller = KernelBridge.caller(request)
            KernelBridge.respond(request) { () throws(Errno) in
                bridge.replyEntry(request, try bridge.core.mkdir(parent: parent, name: name, mode: mode, caller: caller))
            }
        }
        operations.unlink = { request, parent, name in
            let core = KernelBridge.of(request).core
            let name = KernelBridge.bytes(name)
            KernelBridge.respond(request) { () throws(Errno) in
                try core.unlink(parent: parent, name: name)
                fuse_reply_err(request, 0)
            }
        }
        operations.rmdir = { request, parent, name in
            let core = KernelBridge.of(request).core
            let name = KernelBridge.bytes(name)
            KernelBridge.respond(request) { () throws(Errno) in
                try core.rmdir(parent: parent, name: name)
                fuse_reply_err(request, 0)
            }
        }
        operations.symlink = { request, target, parent, name in
            let bridge = KernelBridge.of(request)
            let target = KernelBridge.bytes(target)
            let name = KernelBridge.bytes(name)
            let caller = KernelBridge.caller(request)
            KernelBridge.respond(request) { () throws(Errno) in
                bridge.replyEntry(request, try bridge.core.symlink(target: target, parent: parent, name: name, caller: caller))
            }
        }
        operations.rename = { request, parent, name, newParent, newName, flags in
            let core = KernelBridge.of(request).core
            let name = KernelBridge.bytes(name)
            let newName = KernelBridge.bytes(newName)
            KernelBridge.respond(request) { () throws(Errno) in
                try core.rename(parent: parent, name: name, newParent: newParent, newName: newName, flags: RenameFlags(rawValue: flags))
                fuse_reply_err(request, 0)
            }
        }
        operations.link = { request, inode, newParent, newName in
            let bridge = KernelBridge.of(request)
            let newName = KernelBridge.bytes(newName)
            KernelBridge.respond(request) { () throws(Errno) in
                bridge.replyEntry(request, try bridge.core.link(inode, newParent: newParent, newName: newName))
            }
        }
        operations.open = { request, inode, info in
            let bridge = KernelBridge.of(request)
            guard let info else { fuse_reply_err(request, EIO); return }
            let caller = KernelBridge.caller(request)
            KernelBridge.respond(request) { () throws(Errno) in
                let opened = try bridge.core.open(inode, flags: info.pointee.flags, caller: caller)
                bridge.replyOpened(request, inode, opened, info)
            }
        }
        operations.create = { request, parent, name, mode, info in
            let bridge = KernelBridge.of(request)
            guard let info else { fuse_reply_err(request, EIO); return }
            let name = KernelBridge.bytes(name)
            let caller = KernelBridge.caller(request)
            KernelBridge.respond(request) { () throws(Errno) in
                let (entry, opened) = try bridge.core.create(parent: parent, name: name, mode: mode, flags: info.pointee.flags, caller: caller)
                bridge.replyOpened(request, entry.inode, opened, info, entry: entry)
            }
        }
        operations.read = { request, inode, size, offset, info in
            let core = KernelBridge.of(request).core
            guard let info else { fuse_reply_err(request, EIO); return }
            let handle = info.pointee.fh
            KernelBridge.respond(request) { () throws(Errno) in
                let sent = try core.read(inode, handle: handle, offset: Int64(offset), length: size) { descriptor, position in
                    CFuse3_reply_descriptor(request, descriptor, position, size)
                }
                if sent { return }
                let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(size, 1), alignment: 4096)
                defer { buffer.deallocate() }
                let count = try core.read(inode, handle: handle, offset: Int64(offset),
                                          into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<size]))
                fuse_reply_buf(request, buffer.baseAddress, count)
            }
        }
        operations.write_buf = { request, inode, buffers, offset, info in
            let core = KernelBridge.of(request).core
            guard let info, let buffers else { fuse_reply_err(request, EIO); return }
            let handle = info.pointee.fh
            let size = fuse_buf_size(buffers)
            KernelBridge.respond(request) { () throws(Errno) in
                let moved = try core.write(inode, handle: handle, offset: Int64(offset), length: size) { descriptor throws(Errno) in
                    let copied = CFuse3_copy_to_descriptor(buffers, descriptor, Int64(offset))
                    if copied < 0 { throw Errno(Int32(-copied)) }
                    return copied
                }
                if let moved {
                    fuse_reply_write(request, moved)
                    return
                }
                let memory = UnsafeMutableRawBufferPointer.allocate(byteCount: max(size, 1), alignment: 4096)
                defer { memory.deallocate() }
                let copied = CFuse3_copy_to_memory(buffers, memory.baseAddress, size)
                if copied < 0 { throw Errno(Int32(-copied)) }
                let count = try core.write(inode, handle: handle, offset: Int64(offset),
                                           from: UnsafeRawBufferPointer(rebasing: memory[0..<copied]))
                fuse_reply_write(request, count)
            }
        }
        operations.flush = { request, inode, info in
            let core = KernelBridge.of(request).core
            guard let info else { fuse_reply_err(request, EIO); return }
            let handle = info.pointee.fh
            KernelBridge.respond(request) { () throws(Errno) in
                try core.flush(inode, handle: handle)
                fuse_reply_err(request, 0)
            }
        }
        operations.release = { request, inode, info in
            if let info {
                let bridge = KernelBridge.of(request)
                bridge.passthrough.release(handle: info.pointee.fh)
                bridge.core.release(inode, handle: info.pointee.fh)
            }
            fuse_reply_err(request, 0)
        }
        operations.fsync = { request, inode, dataOnly, info in
            let core = KernelBridge.of(request).core
            guard let info else { fuse_reply_err(request, EIO); return }
            let handle = info.pointee.fh
            KernelBridge.respond(request) { () throws(Errno) in
                try core.fsync(inode, handle: handle, dataOnly: dataOnly != 0)
                fuse_reply_err(request, 0)
            }
        }
        operations.fallocate = { request, inode, mode, offset, length, info in
            let core = KernelBridge.of(request).core
            guard let info else { fuse_reply_err(request, EIO); return }
            let handle = info.pointee.fh
            KernelBridge.respond(request) { () throws(Errno) in
                try core.fallocate(inode, handle: handle, mode: mode, offset: Int64(offset), length: Int64(length))
                fuse_reply_err(request, 0)
            }
        }
        operations.opendir = { request, inode, info in
            let core = KernelBridge.of(request).core
            guard let info else { fuse_reply_err(request, EIO); return }
            KernelBridge.respond(request) { () throws(Errno) in
                let handle = try core.opendir(inode)
                info.pointee.fh = handle
                if fuse_reply_open(request, info) != 0 {
                    core.releasedir(inode, handle: handle)
                }
            }
        }
        operations.readdir = { request, inode, size, offset, info in
            KernelBridge.readdir(request, inode, size, offset, info, plus: false)
        }
        operations.readdirplus = { request, inode, size, offset, info in
            KernelBridge.readdir(request, inode, size, offset, info, plus: true)
        }
        operations.releasedir = { request, inode, info in
            if let info { KernelBridge.of(request).core.releasedir(inode, handle: info.pointee.fh) }
            fuse_reply_err(request, 0)
        }
        operations.fsyncdir = { request, inode, dataOnly, info in
            let core = KernelBridge.of(request).core
            guard let info else { fuse_reply_err(request, EIO); return }
            let handle = info.pointee.fh
            KernelBridge.respond(request) { () throws(Errno) in
                try core.fsyncdir(inode, handle: handle, dataOnly: dataOnly != 0)
                fuse_reply_err(request, 0)
            }
        }
        operations.statfs = { request, inode in
            let core = KernelBridge.of(request).core
            KernelBridge.respond(request) { () throws(Errno) in
                var figures = try core.statfs(inode)
                fuse_reply_statfs(request, &figures)
            }
        }
        operations.getxattr = { request, inode, name, size in
            let core = KernelBridge.of(request).core
            let name = KernelBridge.bytes(name)
            KernelBridge.respond(request) { () throws(Errno) in
                KernelBridge.replySized(request, try core.getxattr(inode, name: name), size)
            }
        }
        operations.listxattr = { request, inode, size in
            let core = KernelBridge.of(request).core
            KernelBridge.respond(request) { () throws(Errno) in
                KernelBridge.replySized(request, try core.listxattr(inode), size)
            }
        }
        operations.setxattr = { request, inode, name, value, size, flags in
            let core = KernelBridge.of(request).core
            let name = KernelBridge.bytes(name)
            KernelBridge.respond(request) { () throws(Errno) in
                try core.setxattr(inode, name: name, value: UnsafeRawBufferPointer(start: value, count: size), flags: flags)
                fuse_reply_err(request, 0)
            }
        }
        operations.removexattr = { request, inode, name in
            let core = KernelBridge.of(request).core
            let name = KernelBridge.bytes(name)
            KernelBridge.respond(request) { () throws(Errno) in
                try core.removexattr(inode, name: name)
                fuse_reply_err(request, 0)
            }
        }
        operations.access = { request, inode, mask in
            let core = KernelBridge.of(request).core
            let caller = KernelBridge.caller(request)
            KernelBridge.respond(request) { () throws(Errno) in
                try core.access(inode, mask: mask, caller: caller)
                fuse_reply_err(request, 0)
            }
        }
        return operations
    }

    /// getxattr/listxattr: a zero size asks for the size only; a value that does not fit is ERANGE.
    static func replySized(_ request: fuse_req_t?, _ value: [UInt8], _ size: Int) {
        if size == 0 {
            fuse_reply_xattr(request, value.count)
        } else if value.count > size {
            fuse_reply_err(request, ERANGE)
        } else {
            value.withUnsafeBytes { _ = fuse_reply_buf(request, $0.baseAddress, $0.count) }
        }
    }

    static func readdir(_ request: fuse_req_t?, _ inode: fuse_ino_t, _ size: Int, _ offset: off_t,
                        _ info: UnsafeMutablePointer<fuse_file_info>?, plus: Bool) {
        let bridge = of(request)
        guard let info else { fuse_reply_err(request, EIO); return }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(size, 1), alignment: 8)
        defer { buffer.deallocate() }
        var used = 0
        respond(request) { () throws(Errno) in
            try bridge.core.readdir(inode, handle: info.pointee.fh, offset: Int64(offset), plus: plus) { listed in
                let room = size - used
                let needed = listed.name.withUnsafeBufferPointer { name -> Int in
                    withUnsafeTemporaryAllocation(of: CChar.self, capacity: name.count + 1) { cName in
                        for index in 0..<name.count { cName[index] = CChar(bitPattern: name[index]) }
                        cName[name.count] = 0
                        let target = buffer.baseAddress!.assumingMemoryBound(to: CChar.self) + used
                        if plus {
                            var parameters: fuse_entry_param
                            if let entry = listed.entry {
                                parameters = bridge.entryParameters(entry)
                            } else {
                                // `.` and `..`: a zero node id means "no entry to cache", not ENOENT.
                                parameters = fuse_entry_param()
                                parameters.attr.st_ino = ino_t(listed.fileNumber)
                                parameters.attr.st_mode = listed.type
                            }
                            return fuse_add_direntry_plus(request, target, room, cName.baseAddress, &parameters, off_t(listed.nextOffset))
                        } else {
                            var status = stat()
                            status.st_ino = ino_t(listed.fileNumber)
                            status.st_mode = listed.type
                            return fuse_add_direntry(request, target, room, cName.baseAddress, &status, off_t(listed.nextOffset))
                        }
                    }
                }
                guard needed <= room else { return false }
                used += needed
                return true
            }
            fuse_reply_buf(request, buffer.baseAddress, used)
        }
    }
}
