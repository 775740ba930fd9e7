/// Which extended attributes the mount shows.
///
/// Only the `user.*` namespace passes through. `user.tiergate.*` belongs to the Gateway (stub marks):
/// it is invisible through the mount and cannot be changed there, so an application can neither turn
/// a file into a broken stub nor strip a stub's marks. Other namespaces (`security.*`, `trusted.*`,
/// `system.*`) are not offered: the daemon's privileges must not become the caller's.
enum ExtendedAttributeName: Equatable {
    /// `user.*`, passed through.
    case user
    /// `user.tiergate.*`: get answers ENODATA, set and remove EPERM, and list leaves it out.
    case reserved
    /// Any other namespace: EOPNOTSUPP.
    case unsupported

    private static let userPrefix = Array("user.".utf8)
    private static let reservedPrefix = Array("user.tiergate.".utf8)

    static func classify(_ name: [UInt8]) -> ExtendedAttributeName {
        if name.starts(with: reservedPrefix) { return .reserved }
        if name.starts(with: userPrefix) && name.count > userPrefix.count { return .user }
        return .unsupported
    }
}
