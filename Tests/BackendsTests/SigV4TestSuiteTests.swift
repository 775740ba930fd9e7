import Backends
import Foundation
import Testing

/// The official SigV4 test vectors (aws-c-auth's suite), kept next to the repository in
/// `../shared/testdata/aws-sigv4`. Every case must match byte for byte, in header and query form.
enum SigV4Vectors {
    static let directory: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("../shared/testdata/aws-sigv4").standardizedFileURL

    static var cases: [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return names.filter { FileManager.default.fileExists(atPath: directory.path + "/" + $0 + "/request.txt") }.sorted()
    }

    /// Test arguments: the case names, or one placeholder that fails when the vectors are missing, so a
    /// missing directory can never make the suite pass vacuously.
    static var arguments: [String] { cases.isEmpty ? [missing] : cases }
    static let missing = "<aws-sigv4 test vectors missing>"

    static func read(_ name: String, _ file: String) throws -> String {
        try String(contentsOfFile: directory.path + "/" + name + "/" + file, encoding: .utf8)
    }
}

/// A request as written in a vector's `request.txt`.
struct VectorRequest {
    var method: String
    var path: String
    var query: [(name: String, value: String)]
    var headers: HTTPHeaders
    var body: [UInt8]

    init(_ text: String) {
        let (head, body) = text.range(of: "\n\n").map { (String(text[..<$0.lowerBound]), String(text[$0.upperBound...])) } ?? (text, "")
        var lines = head.components(separatedBy: "\n")
        let requestLine = lines.removeFirst()
        let firstSpace = requestLine.firstIndex(of: " ")!
        let lastSpace = requestLine.range(of: " HTTP/", options: .backwards)!.lowerBound
        method = String(requestLine[..<firstSpace])
        let target = String(requestLine[requestLine.index(after: firstSpace)..<lastSpace])
        let pathPart = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        path = String(pathPart[0])
        query = pathPart.count > 1 && !pathPart[1].isEmpty ? pathPart[1].split(separator: "&").map { item in
            let pair = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            return (Self.decode(pair[0]), pair.count > 1 ? Self.decode(pair[1]) : "")
        } : []
        var fields: [(String, String)] = []
        for line in lines {
            if line.first == " " || line.first == "\t", !fields.isEmpty {
                fields[fields.count - 1].1 += "\n" + line   // folded continuation line
            } else if let colon = line.firstIndex(of: ":") {
                fields.append((String(line[..<colon]), String(line[line.index(after: colon)...])))
            }
        }
        headers = HTTPHeaders(fields)
        self.body = Array(body.utf8)
    }

    static func decode(_ text: Substring) -> String { String(text).removingPercentEncoding ?? String(text) }
}

@Suite struct SigV4TestSuiteTests {
    @Test func theOfficialVectorsArePresent() {
        let count = SigV4Vectors.cases.count
        #expect(count >= 30, "expected the aws-sigv4 test vectors in \(SigV4Vectors.directory.path) (see its README); found \(count) cases")
    }

    @Test(arguments: SigV4Vectors.arguments)
    func matchesTheOfficialVector(_ name: String) throws {
        guard name != SigV4Vectors.missing else {
            Issue.record("The AWS SigV4 test vectors are missing: expected them in \(SigV4Vectors.directory.path)")
            return
        }
        let context = try JSONSerialization.jsonObject(with: Data(SigV4Vectors.read(name, "context.json").utf8)) as! [String: Any]
        let credentials = context["credentials"] as! [String: Any]
        let signer = SigV4Signer(
            credentials: S3Credentials(accessKeyId: credentials["access_key_id"] as! String,
                                       secretAccessKey: credentials["secret_access_key"] as! String,
                                       sessionToken: credentials["token"] as? String),
            region: context["region"] as! String, service: context["service"] as! String,
            normalizesPath: context["normalize"] as? Bool ?? true,
            signsContentHashHeader: context["sign_body"] as? Bool ?? false,
            signsSessionToken: !(context["omit_session_token"] as? Bool ?? false))
        let date = ISO8601DateFormatter().date(from: context["timestamp"] as! String)!
        let vector = VectorRequest(try SigV4Vectors.read(name, "request.txt"))
        let request = SigV4Signer.Request(method: vector.method, path: vector.path, query: vector.query, headers: vector.headers,
                                          payloadHash: SigV4Signer.payloadHash(vector.body))

        let header = signer.sign(request, at: date)
        #expect(header.canonicalRequest == (try SigV4Vectors.read(name, "header-canonical-request.txt")), "\(name): header canonical request")
        #expect(header.stringToSign == (try SigV4Vectors.read(name, "header-string-to-sign.txt")), "\(name): header string to sign")
        #expect(header.signature == (try SigV4Vectors.read(name, "header-signature.txt")), "\(name): header signature")
        let signedRequest = try SigV4Vectors.read(name, "header-signed-request.txt")
        #expect(signedRequest.contains("Authorization:" + header.headers["Authorization"]! + "\n"), "\(name): Authorization header")

        let expires = context["expiration_in_seconds"] as? Int ?? 3600
        let query = signer.presign(request, at: date, expires: expires)
        #expect(query.canonicalRequest == (try SigV4Vectors.read(name, "query-canonical-request.txt")), "\(name): query canonical request")
        #expect(query.stringToSign == (try SigV4Vectors.read(name, "query-string-to-sign.txt")), "\(name): query string to sign")
        #expect(query.signature == (try SigV4Vectors.read(name, "query-signature.txt")), "\(name): query signature")
    }

    /// AWS's worked example for S3 (GET Object with a range), quoted in the vectors' README: S3 signs
    /// `x-amz-content-sha256` and never normalizes the path.
    @Test func reproducesTheS3WorkedExample() {
        let signer = SigV4Signer.s3(credentials: S3Credentials(accessKeyId: "AKIAIOSFODNN7EXAMPLE",
                                                               secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
                                    region: "us-east-1")
        let request = SigV4Signer.Request(method: "GET", path: "/test.txt",
                                          headers: ["Host": "examplebucket.s3.amazonaws.com", "Range": "bytes=0-9"])
        let signed = signer.sign(request, at: Date(timeIntervalSince1970: 1_369_353_600)) // 2013-05-24T00:00:00Z
        #expect(signed.canonicalRequest == """
            GET
            /test.txt

            host:examplebucket.s3.amazonaws.com
            range:bytes=0-9
            x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
            x-amz-date:20130524T000000Z

            host;range;x-amz-content-sha256;x-amz-date
            e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
            """)
        #expect(signed.signature == "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
        #expect(signed.headers["Authorization"] == "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
    }

    @Test func s3PathsAreNotNormalized() {
        let signer = SigV4Signer.s3(credentials: S3Credentials(accessKeyId: "A", secretAccessKey: "S"), region: "us-east-1")
        let signed = signer.sign(.init(method: "GET", path: "/bucket/a//./b/../c d+~", headers: ["Host": "h"]), at: Date(timeIntervalSince1970: 0))
        #expect(signed.encodedPath == "/bucket/a//./b/../c%20d%2B~")
        #expect(signed.canonicalRequest.split(separator: "\n", omittingEmptySubsequences: false)[1] == "/bucket/a//./b/../c%20d%2B~")
    }

    @Test func credentialsNeverPrintTheirSecrets() {
        let credentials = S3Credentials(accessKeyId: "AKIDPUBLIC", secretAccessKey: "very-secret-value", sessionToken: "session-token-value")
        for text in [String(describing: credentials), String(reflecting: credentials), "\(credentials)", { var s = ""; dump(credentials, to: &s); return s }()] {
            #expect(!text.contains("very-secret-value") && !text.contains("session-token-value"), "\(text)")
            #expect(text.contains("AKIDPUBLIC"))
        }
    }
}
