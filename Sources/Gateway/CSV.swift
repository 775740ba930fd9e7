/// CSV as RFC 4180 writes it, for every `--csv` output and log: each field quoted, a `"` doubled, so
/// commas, quotes and line breaks in names survive.
public enum CSV {
    /// One line (without its line break) of `fields`.
    public static func row(_ fields: [String]) -> String {
        fields.map { "\"" + $0.replacingOccurrences(of: "\"", with: "\"\"") + "\"" }.joined(separator: ",")
    }
}
