import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif

/// The two XML bodies the FileREST store reads: a List Directories and Files page, and an error.
enum FileRESTXML {
    /// One entry of a directory listing, its name decoded (the service percent-encodes names XML cannot carry).
    struct Entry: Equatable {
        var name: String
        var isDirectory: Bool
        var size: Int64
    }

    /// One page of a directory listing.
    struct ListingPage: Equatable {
        var entries: [Entry]
        /// The marker of the next page; empty on the last one.
        var nextMarker: String
    }

    /// Parses a List Directories and Files response; nil when it is not one.
    static func listingPage(_ body: [UInt8]) -> ListingPage? {
        let collector = ListingCollector()
        let parser = XMLParser(data: Data(body))
        parser.delegate = collector
        guard parser.parse(), collector.sawRoot, collector.failed == nil else { return nil }
        return ListingPage(entries: collector.entries, nextMarker: collector.nextMarker)
    }

    /// The `Code` and `Message` of an error body, when it is one.
    static func error(_ body: [UInt8]) -> (code: String, message: String)? {
        let collector = ErrorCollector()
        let parser = XMLParser(data: Data(body))
        parser.delegate = collector
        guard parser.parse(), !collector.code.isEmpty else { return nil }
        return (collector.code, collector.message)
    }

    private final class ListingCollector: NSObject, XMLParserDelegate {
        var entries: [Entry] = []
        var nextMarker = ""
        var sawRoot = false
        var failed: String? = nil
        private var path: [String] = []
        private var text = ""
        private var nameEncoded = false
        private var current: Entry? = nil

        func parser(_ parser: XMLParser, didStartElement element: String, namespaceURI: String?, qualifiedName: String?,
                    attributes: [String: String] = [:]) {
            path.append(element)
            text = ""
            switch path {
            case ["EnumerationResults"]: sawRoot = true
            case ["EnumerationResults", "Entries", "File"]: current = Entry(name: "", isDirectory: false, size: 0)
            case ["EnumerationResults", "Entries", "Directory"]: current = Entry(name: "", isDirectory: true, size: 0)
            case ["EnumerationResults", "Entries", "File", "Name"], ["EnumerationResults", "Entries", "Directory", "Name"]:
                nameEncoded = attributes["Encoded"]?.lowercased() == "true"
            default: break
            }
        }

        func parser(_ parser: XMLParser, foundCharacters string: String) {
            text += string
        }

        func parser(_ parser: XMLParser, didEndElement element: String, namespaceURI: String?, qualifiedName: String?) {
            switch path {
            case ["EnumerationResults", "Entries", "File", "Name"], ["EnumerationResults", "Entries", "Directory", "Name"]:
                if nameEncoded {
                    guard let decoded = FileRESTPath.decode(text) else {
                        failed = "an encoded name is not valid percent-encoded UTF-8"
                        parser.abortParsing()
                        return
                    }
                    current?.name = decoded
                } else {
                    current?.name = text
                }
            case ["EnumerationResults", "Entries", "File", "Properties", "Content-Length"]:
                current?.size = Int64(text.trimmingCharacters(in: .whitespaces)) ?? 0
            case ["EnumerationResults", "Entries", "File"], ["EnumerationResults", "Entries", "Directory"]:
                if let current { entries.append(current) }
                current = nil
            case ["EnumerationResults", "NextMarker"]:
                nextMarker = text.trimmingCharacters(in: .whitespacesAndNewlines)
            default: break
            }
            path.removeLast()
            text = ""
        }
    }

    private final class ErrorCollector: NSObject, XMLParserDelegate {
        var code = ""
        var message = ""
        private var path: [String] = []
        private var text = ""

        func parser(_ parser: XMLParser, didStartElement element: String, namespaceURI: String?, qualifiedName: String?,
                    attributes: [String: String] = [:]) {
            path.append(element)
            text = ""
        }

        func parser(_ parser: XMLParser, foundCharacters string: String) {
            text += string
        }

        func parser(_ parser: XMLParser, didEndElement element: String, namespaceURI: String?, qualifiedName: String?) {
            if path == ["Error", "Code"] { code = text }
            if path == ["Error", "Message"] { message = text }
            path.removeLast()
            text = ""
        }
    }
}
