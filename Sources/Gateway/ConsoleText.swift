/// Text from outside (file names) made safe to print on a terminal: control characters, which could
/// move the cursor, clear the screen or retitle the window, are shown as `\u{1B}`-style escapes.
public enum ConsoleText {
    /// `text` with every C0 and C1 control character escaped.
    public static func safe(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: isControl) else { return text }
        var result = ""
        for scalar in text.unicodeScalars {
            if isControl(scalar) {
                result += "\\u{" + String(scalar.value, radix: 16, uppercase: true) + "}"
            } else {
                result.unicodeScalars.append(scalar)
            }
        }
        return result
    }

    private static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value)
    }
}
