import Backends
import Foundation
import Testing

/// A small, seedable generator so a failing differential case can be reproduced.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Differential test: the Swift signer and botocore's `S3SigV4Auth` sign the same randomized S3
/// requests, and every canonical request, string to sign and signature must be identical.
@Suite struct SigV4BotocoreTests {
    static let caseCount = 1_200

    /// One randomized request, in the form the Python oracle reads.
    struct Case: Encodable {
        var method: String
        var scheme: String
        var host: String
        var port: Int?
        var bucket: String
        var style: String
        var key: String?
        var query: [[String]]
        var headers: [[String]]
        var bodyHex: String
        var signPayload: Bool
        var accessKeyId: String
        var secretAccessKey: String
        var sessionToken: String?
        var region: String
        var timestamp: String
        var url: String
    }

    struct Answer: Decodable {
        var canonicalRequest: String
        var stringToSign: String
        var signature: String
        var authorization: String
        var path: String
    }

    static let keyPieces: [String] = [
        "a", "Z", "0", "9", "-", "_", ".", "~", "+", " ", "  ", "%", "%2F", "%20", "&", "=", "?", "#", ";", ":", "@", "$", ",",
        "!", "*", "'", "(", ")", "[", "]", "{", "}", "|", "\\", "^", "`", "\"", "<", ">", "é", "ü", "ß", "Ω", "名前", "🎉",
        "e\u{301}", "\u{A0}", "ﬁ", "日本語", "pack", "log", "0001",
    ]

    static func randomString(_ rng: inout SplitMix64, pieces: Int) -> String {
        (0..<pieces).map { _ in keyPieces.randomElement(using: &rng)! }.joined()
    }

    static func randomKey(_ rng: inout SplitMix64) -> String {
        let segments = (0..<Int.random(in: 1...5, using: &rng)).map { _ -> String in
            switch Int.random(in: 0..<12, using: &rng) {
            case 0: return ""       // gives "//"
            case 1: return "."
            case 2: return ".."
            default: return randomString(&rng, pieces: Int.random(in: 1...6, using: &rng))
            }
        }
        let key = (Bool.random(using: &rng) && Int.random(in: 0..<8, using: &rng) == 0 ? "/" : "") + segments.joined(separator: "/")
        return key.isEmpty ? "k" : key
    }

    static func randomHeaderValue(_ rng: inout SplitMix64) -> String {
        let pieces = ["v", "alue", " ", "   ", "\t", "a  b", "\"q  q\"", "x=y", "1", ";", ",", "/", "*", "bytes=0-9"]
        return (0..<Int.random(in: 0...5, using: &rng)).map { _ in pieces.randomElement(using: &rng)! }.joined()
    }

    static func makeCases(seed: UInt64) throws -> [(Case, SigV4Signer.Signed, S3Location)] {
        var rng = SplitMix64(state: seed)
        let endpoints = ["https://s3.amazonaws.com", "http://127.0.0.1:9000", "http://localhost", "https://minio.example.com:443",
                         "https://objects.example.net:8443", "http://s3.internal:80", "https://S3.Example.COM"]
        let regions = ["us-east-1", "eu-west-1", "ap-southeast-2", "us-gov-west-1", "eu-central-2"]
        let buckets = ["bucket", "tiergate-test", "my.dotted.bucket", "a1b2c3", "x-y-z"]
        var result: [(Case, SigV4Signer.Signed, S3Location)] = []
        for _ in 0..<caseCount {
            let endpoint = endpoints.randomElement(using: &rng)!
            let region = regions.randomElement(using: &rng)!
            let bucket = buckets.randomElement(using: &rng)!
            let virtual = !Bool.random(using: &rng)
            // Virtual-hosted style needs a DNS name, so an IP endpoint is always addressed path style.
            let style = virtual && !endpoint.contains("127.0.0.1") ? "virtual" : "path"
            let location = try S3Location(url: "s3://\(bucket)?endpoint=\(endpoint)&region=\(region)&style=\(style)", environment: [:])
            let key: String? = Int.random(in: 0..<10, using: &rng) == 0 ? nil : randomKey(&rng)
            let method = ["GET", "PUT", "HEAD", "DELETE", "POST"].randomElement(using: &rng)!

            var query: [(name: String, value: String)] = []
            for _ in 0..<Int.random(in: 0...4, using: &rng) {
                let name = ["list-type", "prefix", "start-after", "max-keys", "uploads", "uploadId", "partNumber", "delimiter",
                            "x-id", randomString(&rng, pieces: 2)].randomElement(using: &rng)!
                let value = Int.random(in: 0..<4, using: &rng) == 0 ? "" : randomString(&rng, pieces: Int.random(in: 1...4, using: &rng))
                query.append((name, value))
            }

            var headers = HTTPHeaders()
            for _ in 0..<Int.random(in: 0...4, using: &rng) {
                let name = ["Range", "Content-Type", "If-None-Match", "Content-MD5", "x-amz-meta-Color", "X-Amz-Meta-" + String(Int.random(in: 0...99, using: &rng)),
                            "x-amz-storage-class", "User-Agent", "Cache-Control", "Content-Length"].randomElement(using: &rng)!
                headers.add(name, randomHeaderValue(&rng))
            }
            let body = (0..<Int.random(in: 0...64, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let signPayload = Int.random(in: 0..<3, using: &rng) != 0
            let secret = String((0..<40).map { _ in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/".randomElement(using: &rng)! })
            let token: String? = Int.random(in: 0..<3, using: &rng) == 0 ? "FQoG" + String((0..<60).map { _ in "abcXYZ019+/=".randomElement(using: &rng)! }) : nil
            let credentials = S3Credentials(accessKeyId: "AKIA" + String((0..<16).map { _ in "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567".randomElement(using: &rng)! }),
                                            secretAccessKey: secret, sessionToken: token)
            let date = Date(timeIntervalSince1970: Double(Int.random(in: 946_684_800...1_924_991_999, using: &rng)))

            var toSign = headers
            toSign.replace("Host", location.hostHeader)
            let signed = SigV4Signer.s3(credentials: credentials, region: region)
                .sign(SigV4Signer.Request(method: method, path: location.path(objectKey: key), query: query, headers: toSign,
                                          payloadHash: signPayload ? SigV4Signer.payloadHash(body) : SigV4Signer.unsignedPayload), at: date)
            let stamp = signed.headers["X-Amz-Date"]!
            result.append((Case(method: method, scheme: location.scheme, host: location.host, port: location.port, bucket: bucket, style: style,
                                key: key.map { location.objectKey($0) }, query: query.map { [$0.name, $0.value] },
                                headers: headers.map { [$0.name, $0.value] }, bodyHex: body.map { String(format: "%02x", $0) }.joined(), signPayload: signPayload,
                                accessKeyId: credentials.accessKeyId, secretAccessKey: secret, sessionToken: token, region: region,
                                timestamp: stamp, url: location.url(encodedPath: signed.encodedPath, encodedQuery: signed.encodedQuery)),
                           signed, location))
        }
        return result
    }

    @Test func matchesBotocoreOnRandomizedS3Requests() async throws {
        try await TestServers.requirePython(modules: ["botocore"])
        let seed = ProcessInfo.processInfo.environment["TIERGATE_SIGV4_SEED"].flatMap { UInt64($0) } ?? 0x5167_3456_0000_0001
        let cases = try Self.makeCases(seed: seed)
        let input = NSTemporaryDirectory() + "tiergate-sigv4-\(UUID().uuidString).json"
        try JSONEncoder().encode(cases.map(\.0)).write(to: URL(fileURLWithPath: input))
        defer { try? FileManager.default.removeItem(atPath: input) }

        let oracle = TestServers.supportDirectory + "/s3_sigv4_oracle.py"
        let (status, data, errorText) = try await TestServers.offPool { () throws -> (Int32, Data, String) in
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["python3", oracle, input]
            let output = Pipe(), errors = Pipe()
            process.standardOutput = output
            process.standardError = errors
            try process.run()
            let data = output.fileHandleForReading.readDataToEndOfFile()
            let errorText = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            return (process.terminationStatus, data, errorText)
        }
        guard status == 0 else {
            Issue.record("the botocore oracle failed: \(errorText)")
            return
        }
        let answers = try JSONDecoder().decode([Answer].self, from: data)
        try #require(answers.count == cases.count)

        var mismatches = 0
        for ((input, signed, _), answer) in zip(cases, answers) {
            let same = signed.canonicalRequest == answer.canonicalRequest && signed.stringToSign == answer.stringToSign
                && signed.signature == answer.signature && signed.headers["Authorization"] == answer.authorization
                && signed.encodedPath == answer.path
            if !same {
                mismatches += 1
                if mismatches <= 3 {
                    Issue.record("""
                        seed \(seed): \(input.method) \(input.url) differs from botocore
                        --- ours
                        \(signed.canonicalRequest)
                        --- botocore
                        \(answer.canonicalRequest)
                        path ours \(signed.encodedPath) botocore \(answer.path)
                        """)
                }
            }
        }
        #expect(mismatches == 0, "\(mismatches) of \(cases.count) requests were signed differently from botocore (seed \(seed))")
        // The generator must really exercise the tricky parts, or the comparison proves little.
        let keys = cases.compactMap(\.0.key)
        #expect(keys.contains { $0.contains("+") } && keys.contains { $0.contains("~") } && keys.contains { $0.contains("//") })
        #expect(keys.contains { $0.unicodeScalars.contains { $0.value > 0x7f } })
        #expect(cases.contains { $0.0.query.contains { $0[1].isEmpty } } && cases.contains { $0.0.sessionToken != nil })
        #expect(cases.contains { !$0.0.signPayload } && cases.contains { $0.0.style == "virtual" })
    }
}
