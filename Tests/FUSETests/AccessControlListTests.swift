import CFuse3
import Foundation
import Glibc
import Testing
@testable import FUSE

/// POSIX ACLs through a real mount: set, read and removed as on the endpoint, inherited from default
/// ACLs, enforced by the kernel; and the umask, which the core now applies itself.
@Suite(.serialized) struct AccessControlListTests {
    /// An unprivileged user and group that own nothing in the test tree.
    static let other: uid_t = 65534

    /// `setfacl`/`getfacl`/`setpriv` are there, or a recorded issue names what is missing (the test then fails).
    func requireTools() -> Bool {
        for program in ["setfacl", "getfacl", "setpriv"] where access("/usr/bin/\(program)", X_OK) != 0 {
            Issue.record("\(program) is not installed (packages acl, util-linux): ACL tests cannot run")
            return false
        }
        return true
    }

    /// Runs `command` in `directory`; records its output when it fails.
    @discardableResult
    func run(_ command: String, in directory: String) throws -> String {
        let result = try shell(command, in: directory)
        #expect(result.status == 0, "\(command): \(result.output)")
        return result.output
    }

    /// The raw value of an ACL attribute, or the errno.
    func acl(_ path: String, _ name: String) -> ([UInt8]?, Int32) {
        var buffer = [UInt8](repeating: 0, count: 1024)
        let count = getxattr(path, name, &buffer, buffer.count)
        return count < 0 ? (nil, errno) : (Array(buffer.prefix(count)), 0)
    }

    /// Runs `body` with the process umask set to `mask`.
    func withUmask<R>(_ mask: mode_t, _ body: () -> R) -> R {
        let previous = umask(mask)
        defer { umask(previous) }
        return body()
    }

    @Test func accessACLGrantingANamedUserIsStoredOnTheEndpointAndReadBack() throws {
        guard requireTools() else { return }
        let fixture = try MountFixture()
        defer { fixture.stop() }
        try writeFile(fixture.mounted("f"), [1], mode: 0o640)
        try run("setfacl -m u:\(Self.other):rw f", in: fixture.mountpoint)

        let mounted = acl(fixture.mounted("f"), "system.posix_acl_access")
        let backing = acl(fixture.backing("f"), "system.posix_acl_access")
        #expect(backing.0 != nil, "the endpoint file has the ACL")
        #expect(mounted.0 == backing.0)
        #expect(try run("getfacl -n f", in: fixture.mountpoint) == run("getfacl -n f", in: fixture.endpoint))
        #expect(try run("getfacl -n f", in: fixture.mountpoint).contains("user:\(Self.other):rw-"))
        // The mask entry is the group class of the mode, on both sides.
        #expect(try status(fixture.backing("f")).st_mode & 0o777 == 0o660)
        #expect(try status(fixture.mounted("f")).st_mode & 0o777 == 0o660)
        var names = [CChar](repeating: 0, count: 1024)
        let length = listxattr(fixture.mounted("f"), &names, names.count)
        let listed = names.prefix(max(length, 0)).split(separator: 0).map { String(decoding: $0.map { UInt8(bitPattern: $0) }, as: UTF8.self) }
        #expect(listed.contains("system.posix_acl_access"))

        try run("setfacl -b f", in: fixture.mountpoint)
        #expect(acl(fixture.backing("f"), "system.posix_acl_access").1 == ENODATA, "setfacl -b removed the ACL on the endpoint")
        #expect(acl(fixture.mounted("f"), "system.posix_acl_access").1 == ENODATA)
    }

    @Test func aclSetOnTheEndpointShowsThroughTheMount() throws {
        guard requireTools() else { return }
        let fixture = try MountFixture()
        defer { fixture.stop() }
        try writeFile(fixture.backing("f"), [1])
        try FileManager.default.createDirectory(atPath: fixture.backing("d"), withIntermediateDirectories: false)
        try run("setfacl -m u:\(Self.other):r f && setfacl -d -m g:\(Self.other):rx d", in: fixture.endpoint)
        #expect(try run("getfacl -Rn f d", in: fixture.mountpoint) == run("getfacl -Rn f d", in: fixture.endpoint))
        #expect(try run("getfacl -n d", in: fixture.mountpoint).contains("default:group:\(Self.other):r-x"))
        // A file without an ACL, and a default ACL asked of a file: ENODATA, as on ext4.
        try writeFile(fixture.backing("plain"), [2])
        #expect(acl(fixture.mounted("plain"), "system.posix_acl_access").1 == ENODATA)
        #expect(acl(fixture.mounted("f"), "system.posix_acl_default").1 == ENODATA)
    }

    @Test func defaultACLOfADirectoryIsInheritedByWhatTheMountCreates() throws {
        guard requireTools() else { return }
        let fixture = try MountFixture()
        defer { fixture.stop() }
        #expect(mkdir(fixture.mounted("shared"), 0o755) == 0)
        try run("setfacl -d -m u::rwx,g::rx,o::rx,u:\(Self.other):rwx shared", in: fixture.mountpoint)
        withUmask(0o077) {
            // The default ACL replaces the umask: its entries, limited by the requested mode, decide.
            let descriptor = open(fixture.mounted("shared/new.txt"), O_WRONLY | O_CREAT | O_CLOEXEC, 0o666)
            #expect(descriptor >= 0)
            close(descriptor)
            #expect(mkdir(fixture.mounted("shared/sub"), 0o777) == 0)
            #expect(mkfifo(fixture.mounted("shared/pipe"), 0o666) == 0)
        }
        for (name, mode) in [("new.txt", 0o664), ("sub", 0o775), ("pipe", 0o664)] as [(String, mode_t)] {
            #expect(try status(fixture.backing("shared/" + name)).st_mode & 0o777 == mode, "\(name)")
            #expect(try status(fixture.mounted("shared/" + name)).st_mode & 0o777 == mode, "\(name)")
            #expect(try run("getfacl -n shared/\(name)", in: fixture.endpoint).contains("user:\(Self.other):rwx"), "\(name)")
        }
        #expect(try run("getfacl -n shared/sub", in: fixture.endpoint).contains("default:user:\(Self.other):rwx"),
                "a new directory inherits the default ACL as its own default")
        #expect(try run("getfacl -Rn shared", in: fixture.mountpoint) == run("getfacl -Rn shared", in: fixture.endpoint))
    }

    @Test func theCallersUmaskAppliesWhereThereIsNoDefaultACL() throws {
        let fixture = try MountFixture()
        defer { fixture.stop() }
        withUmask(0o027) {
            let descriptor = open(fixture.mounted("file"), O_WRONLY | O_CREAT | O_CLOEXEC, 0o666)
            #expect(descriptor >= 0)
            close(descriptor)
            #expect(mkdir(fixture.mounted("dir"), 0o777) == 0)
            #expect(mknod(fixture.mounted("pipe"), S_IFIFO | 0o666, 0) == 0)
        }
        for (name, mode) in [("file", 0o640), ("dir", 0o750), ("pipe", 0o640)] as [(String, mode_t)] {
            #expect(try status(fixture.backing(name)).st_mode & 0o777 == mode, "\(name)")
            #expect(try status(fixture.mounted(name)).st_mode & 0o777 == mode, "\(name)")
        }
    }

    @Test func theKernelEnforcesTheACLForOtherUsers() throws {
        guard requireTools() else { return }
        let fixture = try MountFixture()
        defer { fixture.stop() }
        try writeFile(fixture.mounted("secret"), Array("hidden\n".utf8), mode: 0o600)
        let asOther = "setpriv --reuid=\(Self.other) --regid=\(Self.other) --clear-groups cat secret"
        #expect(try shell(asOther, in: fixture.mountpoint).status != 0, "mode 0600: another user cannot read")
        try run("setfacl -m u:\(Self.other):r secret", in: fixture.mountpoint)
        #expect(try shell(asOther, in: fixture.mountpoint).output == "hidden\n", "the ACL entry lets that user read")
        try run("setfacl -x u:\(Self.other) secret", in: fixture.mountpoint)
        #expect(try shell(asOther, in: fixture.mountpoint).status != 0, "and removing it takes the right back at once")
        // Only the owner may change an ACL: the kernel refuses the other user.
        let change = "setpriv --reuid=\(Self.other) --regid=\(Self.other) --clear-groups setfacl -m u:\(Self.other):rw secret"
        #expect(try shell(change, in: fixture.mountpoint).status != 0)
        #expect(!(try run("getfacl -n secret", in: fixture.endpoint).contains("user:\(Self.other)")))
    }
}
