import Foundation

/// Just enough XML for S3's responses, which are flat, namespace-free and machine-written: the text
/// of named elements, with entities decoded. No DTDs, no attributes read, nothing fetched.
enum S3XML {
    /// The text of every `<name>…</name>` element in `xml`, in order.
    static func values(_ name: String, in xml: Substring) -> [String] {
        elements(name, in: xml).map { decodeEntities($0) }
    }

    /// The text of the first `<name>` element.
    static func value(_ name: String, in xml: Substring) -> String? {
        elements(name, in: xml).first.map { decodeEntities($0) }
    }

    /// The raw inner text of every `<name>…</name>` element (also matches `<name attr="…">`).
    static func elements(_ name: String, in xml: Substring) -> [Substring] {
        var result: [Substring] = []
        var rest = xml[...]
        let close = "</\(name)>"
        while let open = rest.range(of: "<\(name)") {
            let after = rest[open.upperBound...]
            guard let first = after.first else { break }
            if first == "/" && after.dropFirst().first == ">" {         // <name/>: empty element
                result.append(after[after.startIndex..<after.startIndex])
                rest = after.dropFirst(2)
                continue
            }
            guard first == ">" || first == " " || first == "\t" || first == "\n" || first == "\r",
                  let tagEnd = after.firstIndex(of: ">") else {
                rest = after
                continue
            }
            let content = after[after.index(after: tagEnd)...]
            guard let end = content.range(of: close) else { break }
            result.append(content[..<end.lowerBound])
            rest = content[end.upperBound...]
        }
        return result
    }

    /// `text` with the five predefined entities and numeric references decoded.
    static func decodeEntities(_ text: Substring) -> String {
        guard text.contains("&") else { return String(text) }
        var out = ""
        var rest = text[...]
        while let amp = rest.firstIndex(of: "&") {
            out += rest[..<amp]
            guard let semi = rest[amp...].firstIndex(of: ";") else { out += rest[amp...]; return out }
            let entity = rest[rest.index(after: amp)..<semi]
            switch entity {
            case "amp": out += "&"
            case "lt": out += "<"
            case "gt": out += ">"
            case "quot": out += "\""
            case "apos": out += "'"
            default:
                let scalar: UInt32? = entity.hasPrefix("#x") ? UInt32(entity.dropFirst(2), radix: 16)
                    : entity.hasPrefix("#") ? UInt32(entity.dropFirst(), radix: 10) : nil
                if let scalar, let character = Unicode.Scalar(scalar) {
                    out.unicodeScalars.append(character)
                } else {
                    out += rest[amp...semi]
                }
            }
            rest = rest[rest.index(after: semi)...]
        }
        return out + rest
    }

    /// `text` escaped for use as element content.
    static func escape(_ text: String) -> String {
        var out = ""
        for character in text {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            default: out.append(character)
            }
        }
        return out
    }

    /// The `Code` and `Message` of an S3 `<Error>` document, if the body is one.
    static func error(_ body: [UInt8]) -> (code: String, message: String?)? {
        let xml = Substring(decoding: body.prefix(64 << 10), as: UTF8.self)
        guard let error = elements("Error", in: xml).first, let code = value("Code", in: error) else { return nil }
        return (code, value("Message", in: error))
    }
}

extension S3XML {
    /// An S3 timestamp (`2025-01-31T12:00:00.000Z`, fractional seconds optional).
    static func date(_ text: String) -> Date? {
        let fractional = ISO8601DateFormatter()
        fractional.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return fractional.date(from: text) ?? ISO8601DateFormatter().date(from: text)
    }
}
