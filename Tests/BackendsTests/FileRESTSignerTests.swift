@testable import Backends
import Foundation
import Testing

/// The SharedKey signer and the SAS generator sign exactly as the official Azure SDK
/// (azure-storage-file-share, run offline by `Tests/python/filerest_sign_oracle.py`) does.
@Suite struct FileRESTSignerTests {
    static let account = "tiergateoracle"
    static let key = Data((0..<64).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }).base64EncodedString()

    /// Characters key components are drawn from: the plain, the URL-reserved, the Azure-forbidden, Unicode.
    static let nameAlphabet = Array("abcXYZ019-_.~ %+&=?#:*'()!$,;@[]\"<>|\\éü名前🎉")
    static let valueAlphabet = Array("abcXYZ0189-_.~ %+&=/?#:,;@'\"()éß名🎉")
    static let headerValueAlphabet = Array("abcXYZ0189-_.~ %+&=/?#:,;@'\"()*[]{}")
    static let metadataAlphabet = Array("abAB_019zZ")
    static let msHeaders = ["x-ms-version", "x-ms-date", "x-ms-type", "x-ms-content-length", "x-ms-range", "x-ms-write",
                            "x-ms-lease-id", "x-ms-lease-action", "x-ms-proposed-lease-id", "x-ms-file-rename-source",
                            "x-ms-file-rename-replace-if-exists", "x-ms-client-request-id", "x-ms-file-attributes",
                            "x-ms-file-creation-time", "x-ms-file-permission", "x-ms-allow-trailing-dot", "x-ms-content-type"]
    static let standardHeaders = ["Content-Encoding", "Content-Language", "Content-MD5", "Content-Type", "Date",
                                  "If-Modified-Since", "If-Match", "If-None-Match", "If-Unmodified-Since"]
    static let queryNames = ["restype", "comp", "prefix", "marker", "maxresults", "timeout", "sharesnapshot", "include"]

    static func text(_ alphabet: [Character], _ length: ClosedRange<Int>, _ random: inout FileRESTTestKit.SeededGenerator) -> String {
        String((0..<Int.random(in: length, using: &random)).map { _ in alphabet.randomElement(using: &random)! })
    }

    /// A header value as an HTTP client sends it: no leading or trailing space.
    static func headerValue(_ random: inout FileRESTTestKit.SeededGenerator) -> String {
        var value = text(headerValueAlphabet, 1...24, &random).trimmingCharacters(in: .whitespaces)
        if value.isEmpty { value = "v" }
        return value
    }

    static func randomCall(_ random: inout FileRESTTestKit.SeededGenerator) -> FileRESTStore.Call {
        let method = ["GET", "PUT", "HEAD", "DELETE"].randomElement(using: &random)!
        var names: [String] = []
        for _ in 0..<Int.random(in: 0...3, using: &random) {
            var component = text(nameAlphabet, 1...12, &random)
            if component == "." || component == ".." { component = "dot" }
            names.append(FileRESTPath.escapeName(component))
        }
        var query: [(String, String)] = []
        for name in queryNames.shuffled(using: &random).prefix(Int.random(in: 0...4, using: &random)) {
            query.append((name, text(valueAlphabet, 0...16, &random)))
        }
        var headers: [(String, String)] = []
        for name in standardHeaders.shuffled(using: &random).prefix(Int.random(in: 0...4, using: &random)) {
            // Clients spell header names in any case; the signature must not depend on it.
            let spelled = [name, name.lowercased(), name.uppercased()].randomElement(using: &random)!
            headers.append((spelled, headerValue(&random)))
        }
        for name in msHeaders.dropFirst(2).shuffled(using: &random).prefix(Int.random(in: 0...5, using: &random)) {
            headers.append((name, headerValue(&random)))
        }
        // Metadata names mixing '_', digits and case, where the service's collation differs from byte order.
        var metadataNames = Set<String>()
        for _ in 0..<Int.random(in: 0...6, using: &random) {
            var name = text(metadataAlphabet, 1...6, &random)
            if name.first!.isNumber { name = "m" + name }
            if metadataNames.insert(name.lowercased()).inserted {
                headers.append(("x-ms-meta-" + name, headerValue(&random)))
            }
        }
        let bodySize = method == "PUT" && Bool.random(using: &random) ? Int.random(in: 1...300, using: &random) : 0
        return FileRESTStore.Call("Generated", method, names, query: query, headers: headers.shuffled(using: &random),
                                  body: ArraySlice(repeating: 7, count: bodySize))
    }

    struct OracleRequest: Codable {
        var method: String
        var url: String
        var headers: [[String]]
    }

    struct OracleSAS: Codable {
        var kind: String
        var version: String
        var permission: String
        var expiry: String
        var start: String?
        var ip: String?
        var `protocol`: String?
        var resourceTypes: String?
        var services: String?
        var share: String?
        var path: String?
        var policyId: String?
    }

    struct OracleJob: Codable {
        var account: String
        var key: String
        var requests: [OracleRequest]
        var sas: [OracleSAS]
    }

    struct OracleAnswer: Codable {
        struct Signed: Codable {
            var stringToSign: String
            var authorization: String
        }

        struct Token: Codable {
            var stringToSign: String
            var token: String
        }

        var requests: [Signed]
        var sas: [Token]
    }

    static func ask(_ job: OracleJob) throws -> OracleAnswer {
        let output = try FileRESTTestKit.runPython("python/filerest_sign_oracle.py", input: try JSONEncoder().encode(job))
        return try JSONDecoder().decode(OracleAnswer.self, from: output)
    }

    /// The path and the decoded query of an encoded URL, as the service reads them.
    static func pathAndQuery(_ url: String) -> (String, [(name: String, value: String)]) {
        let afterScheme = url[url.range(of: "://")!.upperBound...]
        let pathAndQuery = afterScheme.drop { $0 != "/" }
        let parts = pathAndQuery.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        var query: [(name: String, value: String)] = []
        if parts.count == 2 {
            for item in parts[1].split(separator: "&") {
                let pair = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                query.append((name: FileRESTPath.decode(pair[0])!, value: FileRESTPath.decode(pair.count > 1 ? pair[1] : "")!))
            }
        }
        return (String(parts[0]), query)
    }

    @Test func sharedKeySignaturesMatchTheAzureSDKForGeneratedRequests() throws {
        var random = FileRESTTestKit.SeededGenerator(seed: 0x5EED_F11E)
        let signer = SharedKeySigner(account: Self.account, base64Key: Self.key)!
        let endpoints = ["https://\(Self.account).file.core.windows.net", "http://127.0.0.1:10002/\(Self.account)"]
        var requests: [HTTPRequest] = []
        for index in 0..<300 {
            let location = try FileRESTLocation(account: Self.account, share: "share-\(index % 7)", endpoint: endpoints[index % 2])
            let store = try FileRESTStore(location: location, credentials: .sharedKey(signer))
            requests.append(store.request(Self.randomCall(&random)))
        }
        let job = OracleJob(account: Self.account, key: Self.key, requests: requests.map { request in
            OracleRequest(method: request.method, url: request.url,
                          headers: request.headers.fields.filter { $0.name != "Authorization" }.map { [$0.name, $0.value] })
        }, sas: [])
        let answer = try Self.ask(job)
        #expect(answer.requests.count == 300)
        var mismatches = 0
        for (request, oracle) in zip(requests, answer.requests) {
            let (path, query) = Self.pathAndQuery(request.url)
            let headers = request.headers.fields.filter { $0.name != "Authorization" }
            let ours = signer.stringToSign(method: request.method, path: path, query: query, headers: headers)
            if ours != oracle.stringToSign || request.headers["Authorization"] != oracle.authorization {
                mismatches += 1
                if mismatches <= 3 {
                    Issue.record("\(request.method) \(request.url)\nours:\n\(ours)\nSDK:\n\(oracle.stringToSign)")
                }
            }
        }
        #expect(mismatches == 0, "\(mismatches) of 300 signatures differ from the Azure SDK's")
    }

    @Test func sasTokensMatchTheAzureSDK() throws {
        var random = FileRESTTestKit.SeededGenerator(seed: 0x5A5)
        let signer = SharedKeySigner(account: Self.account, base64Key: Self.key)!
        var specs: [OracleSAS] = []
        var ours: [SharedAccessSignature] = []
        for index in 0..<60 {
            let version = ["2020-12-06", "2024-11-04", FileRESTStore.serviceVersion].randomElement(using: &random)!
            var constraints = SASConstraints(permissions: ["r", "rl", "rcwdl", "rwdlc"].randomElement(using: &random)!,
                                             expiry: "2031-0\(Int.random(in: 1...9, using: &random))-15T12:00:00Z",
                                             version: version)
            if Bool.random(using: &random) { constraints.start = "2025-01-01T00:00:00Z" }
            if Bool.random(using: &random) { constraints.ip = "10.0.0.1-10.0.0.9" }
            if Bool.random(using: &random) { constraints.protocol = ["https", "https,http"].randomElement(using: &random)! }
            let share = "share-\(index)"
            switch index % 3 {
            case 0:
                let types = ["o", "co", "sco"].randomElement(using: &random)!
                ours.append(signer.accountSAS(constraints, resourceTypes: types))
                specs.append(OracleSAS(kind: "account", version: version, permission: constraints.permissions,
                                       expiry: constraints.expiry, start: constraints.start, ip: constraints.ip,
                                       protocol: constraints.protocol, resourceTypes: types, services: "f"))
            case 1:
                let policy = Bool.random(using: &random) ? "policy-\(index)" : nil
                ours.append(signer.shareSAS(share: share, constraints, policyId: policy))
                specs.append(OracleSAS(kind: "share", version: version, permission: constraints.permissions,
                                       expiry: constraints.expiry, start: constraints.start, ip: constraints.ip,
                                       protocol: constraints.protocol, share: share, policyId: policy))
            default:
                let path = ["file", "dir/file name", "a/b/ünï"].randomElement(using: &random)!
                ours.append(signer.fileSAS(share: share, path: path, constraints))
                specs.append(OracleSAS(kind: "file", version: version, permission: constraints.permissions,
                                       expiry: constraints.expiry, start: constraints.start, ip: constraints.ip,
                                       protocol: constraints.protocol, share: share, path: path))
            }
        }
        let answer = try Self.ask(OracleJob(account: Self.account, key: Self.key, requests: [], sas: specs))
        #expect(answer.sas.count == specs.count)
        for (index, (sas, oracle)) in zip(ours, answer.sas).enumerated() {
            #expect(sas.stringToSign == oracle.stringToSign, "SAS \(index) (\(specs[index].kind))")
            #expect(sas.token == oracle.token, "SAS \(index) (\(specs[index].kind))")
        }
    }

    @Test(arguments: [
        ("x-ms-meta-a_1", "x-ms-meta-a1"), ("x-ms-meta-a1", "x-ms-meta-ab"), ("x-ms-meta-_9", "x-ms-meta-9"),
        ("x-ms-meta-ab", "x-ms-meta-a-b"), ("x-ms-date", "x-ms-meta-a"), ("x-ms-meta-A", "x-ms-meta-b"),
        ("x-ms-filerename", "x-ms-file-rename-source"), ("x-ms-version", "x-ms-write"),
    ])
    func headerNamesSortInTheServiceCollation(earlier: String, later: String) {
        #expect(HeaderCollation.precedes(earlier, later))
        #expect(!HeaderCollation.precedes(later, earlier))
    }

    @Test func zeroContentLengthSignsAsEmptyAndTheKeyNeverPrints() throws {
        let signer = SharedKeySigner(account: Self.account, base64Key: Self.key)!
        let zero = signer.stringToSign(method: "PUT", path: "/s/f", query: [], headers: [("Content-Length", "0")])
        let none = signer.stringToSign(method: "PUT", path: "/s/f", query: [], headers: [])
        #expect(zero == none)
        #expect(zero == "PUT\n\n\n\n\n\n\n\n\n\n\n\n/\(Self.account)/s/f")
        #expect(!"\(signer)".contains(Self.key) && !String(reflecting: signer).contains(Self.key))
        let sas = signer.shareSAS(share: "s", SASConstraints(permissions: "r", expiry: "2030-01-01T00:00:00Z"))
        #expect(!"\(sas)".contains(sas["sig"]!))
    }
}
