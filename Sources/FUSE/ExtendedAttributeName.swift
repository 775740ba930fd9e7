/// Which extended attributes the mount shows.
///
/// The `user.*` namespace and the two POSIX ACL attributes pass through. `user.tiergate.*` belongs to
/// the Gateway (stub marks): it is invisible through the mount and cannot be changed there, so an
/// application can neither turn a file into a broken stub nor strip a stub's marks. Other namespaces
/// (`security.*`, `trusted.*`, the rest of `system.*`) are not offered: the daemon's privileges must
/// not become the caller's.
enum ExtendedAttributeName: Equatable {
    /// `user.*`, passed through.
    case user
    /// `system.posix_acl_access` or `system.posix_acl_default`, passed through. The kernel has already
    /// checked the caller's right to change them (owner or `CAP_FOWNER`) and parses them itself.
    case accessControlList
    /// `user.tiergate.*`: get answers ENODATA, set and remove EPERM, and list leaves it out.
    case reserved
    /// Any other namespace: EOPNOTSUPP.
    case unsupported

    private static let userPrefix = Array("user.".utf8)
    private static let reservedPrefix = Array("user.tiergate.".utf8)
    /// The names the kernel uses for a file's access ACL and a directory's default ACL.
    static let accessACLName = "system.posix_acl_access"
    static let defaultACLName = "system.posix_acl_default"
    private static let accessACL = Array(accessACLName.utf8)
    private static let defaultACL = Array(defaultACLName.utf8)

    static func classify(_ name: [UInt8]) -> ExtendedAttributeName {
        if name.starts(with: reservedPrefix) { return .reserved }
        if name.starts(with: userPrefix) && name.count > userPrefix.count { return .user }
        if name == accessACL || name == defaultACL { return .accessControlList }
        return .unsupported
    }

    /// Whether listxattr shows the name.
    var isListed: Bool { self == .user || self == .accessControlList }
}
