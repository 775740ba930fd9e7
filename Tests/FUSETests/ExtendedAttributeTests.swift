import CFuse3
import Foundation
import Glibc
import Testing
@testable import FUSE

/// Extended attributes through a real mount: `user.*` passes, `user.tiergate.*` is the Gateway's (POSIX ACLs: AccessControlListTests).
@Suite struct ExtendedAttributeTests {
    func names(_ path: String) -> [String] {
        var buffer = [CChar](repeating: 0, count: 4096)
        let count = listxattr(path, &buffer, buffer.count)
        guard count > 0 else { return [] }
        return buffer.prefix(count).split(separator: 0).map { String(decoding: $0.map { UInt8(bitPattern: $0) }, as: UTF8.self) }
    }

    func value(_ path: String, _ name: String) -> (String?, Int32) {
        var buffer = [UInt8](repeating: 0, count: 256)
        let count = getxattr(path, name, &buffer, buffer.count)
        return count < 0 ? (nil, errno) : (String(decoding: buffer.prefix(count), as: UTF8.self), 0)
    }

    @Test func userAttributesPassThroughBothWays() throws {
        let fixture = try MountFixture()
        defer { fixture.stop() }
        try writeFile(fixture.mounted("f"), [1])
        #expect(setxattr(fixture.mounted("f"), "user.color", "blue", 4, 0) == 0)
        #expect(value(fixture.backing("f"), "user.color").0 == "blue")
        #expect(setxattr(fixture.backing("f"), "user.size", "large", 5, 0) == 0)
        #expect(value(fixture.mounted("f"), "user.size").0 == "large")
        #expect(Set(names(fixture.mounted("f"))) == ["user.color", "user.size"])
        // XATTR_CREATE / XATTR_REPLACE semantics, size queries and ERANGE.
        #expect(errnoOf { setxattr(fixture.mounted("f"), "user.color", "red", 3, Int32(XATTR_CREATE)) } == EEXIST)
        #expect(errnoOf { setxattr(fixture.mounted("f"), "user.none", "x", 1, Int32(XATTR_REPLACE)) } == ENODATA)
        #expect(getxattr(fixture.mounted("f"), "user.size", nil, 0) == 5)
        var small = [UInt8](repeating: 0, count: 2)
        #expect(errnoOf { getxattr(fixture.mounted("f"), "user.size", &small, 2) } == ERANGE)
        #expect(removexattr(fixture.mounted("f"), "user.color") == 0)
        #expect(value(fixture.backing("f"), "user.color").1 == ENODATA)
        #expect(value(fixture.mounted("f"), "user.missing").1 == ENODATA)
    }

    @Test func tiergateAttributesAreHiddenAndProtected() throws {
        let fixture = try MountFixture()
        defer { fixture.stop() }
        try writeFile(fixture.backing("stub"), [0, 0, 0])
        #expect(setxattr(fixture.backing("stub"), "user.tiergate.state", "tiered", 6, 0) == 0)
        #expect(setxattr(fixture.backing("stub"), "user.tiergate.id", "abc", 3, 0) == 0)
        #expect(setxattr(fixture.backing("stub"), "user.mine", "1", 1, 0) == 0)

        #expect(names(fixture.mounted("stub")) == ["user.mine"])
        #expect(value(fixture.mounted("stub"), "user.tiergate.state").1 == ENODATA)
        #expect(errnoOf { setxattr(fixture.mounted("stub"), "user.tiergate.state", "full", 4, 0) } == EPERM)
        #expect(errnoOf { setxattr(fixture.mounted("stub"), "user.tiergate.new", "x", 1, 0) } == EPERM)
        #expect(errnoOf { removexattr(fixture.mounted("stub"), "user.tiergate.id") } == EPERM)
        #expect(value(fixture.backing("stub"), "user.tiergate.state").0 == "tiered")
        #expect(value(fixture.backing("stub"), "user.tiergate.id").0 == "abc")
    }

    @Test func privilegedNamespacesAreRefused() throws {
        let fixture = try MountFixture()
        defer { fixture.stop() }
        try writeFile(fixture.mounted("f"), [1])
        #expect(errnoOf { setxattr(fixture.mounted("f"), "trusted.secret", "x", 1, 0) } == EOPNOTSUPP)
        #expect(errnoOf { setxattr(fixture.mounted("f"), "security.tiergate-test", "x", 1, 0) } == EOPNOTSUPP)
        #expect(value(fixture.mounted("f"), "trusted.secret").1 == EOPNOTSUPP)
        #expect(errnoOf { removexattr(fixture.mounted("f"), "trusted.secret") } == EOPNOTSUPP)
        // Of system.*, only the two POSIX ACL names pass (AccessControlListTests).
        #expect(errnoOf { setxattr(fixture.mounted("f"), "system.tiergate-test", "x", 1, 0) } == EOPNOTSUPP)
        #expect(value(fixture.mounted("f"), "system.posix_acl_extra").1 == EOPNOTSUPP)
        #expect(value(fixture.backing("f"), "trusted.secret").1 == ENODATA)
        // Attributes set on the endpoint in those namespaces are not listed through the mount.
        if setxattr(fixture.backing("f"), "trusted.admin", "1", 1, 0) == 0 {
            #expect(!names(fixture.mounted("f")).contains("trusted.admin"))
        }
    }

    @Test func symbolicLinksHaveNoUserAttributes() throws {
        let fixture = try MountFixture()
        defer { fixture.stop() }
        #expect(symlink("nowhere", fixture.mounted("l")) == 0)
        #expect(errnoOf { lsetxattr(fixture.mounted("l"), "user.x", "1", 1, 0) } == EPERM)
        var buffer = [CChar](repeating: 0, count: 64)
        #expect(llistxattr(fixture.mounted("l"), &buffer, 64) == 0)
    }
}
