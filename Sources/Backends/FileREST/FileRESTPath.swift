/// Percent-encoding for FileREST URLs, and the reversible mapping between object keys and Azure Files names.
///
/// Object keys may hold characters Azure Files refuses in names (`" \ : | < > * ?`), and the service trims a
/// trailing dot from a name. So each key component is stored under an escaped name: those characters, `%`
/// itself, and a trailing `.` or space become `%XX`. Listing reverses it. Everything else, Unicode included,
/// is stored as is, so names stay readable in the portal and in SMB mounts of the share.
enum FileRESTPath {
    private static let hex = Array("0123456789ABCDEF".utf8)
    private static let forbiddenInNames = Set("\"\\:|<>*?%".utf8)

    /// True for RFC 3986 unreserved bytes, which never need encoding.
    private static func isUnreserved(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
             UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
            return true
        default:
            return false
        }
    }

    private static func appendEscaped(_ byte: UInt8, to bytes: inout [UInt8]) {
        bytes += [UInt8(ascii: "%"), hex[Int(byte >> 4)], hex[Int(byte & 0xF)]]
    }

    /// `text` with every byte but the unreserved ones (and those in `keeping`) percent-encoded, upper-case hex:
    /// the encoding the Azure SDKs use, so a path signs the same whichever client sent it.
    static func encode(_ text: String, keeping: String = "") -> String {
        let kept = Set(keeping.utf8)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count)
        for byte in text.utf8 {
            if isUnreserved(byte) || kept.contains(byte) { bytes.append(byte) } else { appendEscaped(byte, to: &bytes) }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// `text` with `%XX` escapes decoded; nil when an escape is malformed or the result is not UTF-8.
    static func decode(_ text: some StringProtocol) -> String? {
        var bytes: [UInt8] = []
        let utf8 = Array(text.utf8)
        var index = 0
        while index < utf8.count {
            if utf8[index] == UInt8(ascii: "%") {
                guard index + 2 < utf8.count, let high = hexValue(utf8[index + 1]), let low = hexValue(utf8[index + 2]) else {
                    return nil
                }
                bytes.append(high << 4 | low)
                index += 3
            } else {
                bytes.append(utf8[index])
                index += 1
            }
        }
        return String(validating: bytes, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        default: nil
        }
    }

    /// The Azure Files name that stores key component `component`.
    ///
    /// With `partial`, `component` is only the start of a name (a listing prefix), so a trailing dot or
    /// space is not the end of the name and is left alone.
    static func escapeName(_ component: some StringProtocol, partial: Bool = false) -> String {
        let utf8 = Array(component.utf8)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(utf8.count)
        for (index, byte) in utf8.enumerated() {
            let last = index == utf8.count - 1 && !partial
            if byte < 0x20 || byte == 0x7F || forbiddenInNames.contains(byte)
                || (last && (byte == UInt8(ascii: ".") || byte == UInt8(ascii: " "))) {
                appendEscaped(byte, to: &bytes)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The key component an Azure Files name stores; a name with no valid escapes (written by another
    /// program) is its own key component.
    static func unescapeName(_ name: String) -> String {
        name.utf8.contains(UInt8(ascii: "%")) ? decode(name) ?? name : name
    }
}
