import Backends
import Foundation
import Testing

/// Parsing of `s3://` URLs and loading of credentials; no server needed.
@Suite struct S3ConfigurationTests {
    @Test func aPathStyleURLWithAnEndpointParses() throws {
        let location = try S3Location(url: "s3://bucket/a/b/?endpoint=http://127.0.0.1:9000&region=eu-west-1&style=path", environment: [:])
        #expect(location.bucket == "bucket" && location.prefix == "a/b")
        #expect(location.scheme == "http" && location.host == "127.0.0.1" && location.port == 9000)
        #expect(location.region == "eu-west-1" && location.style == .path)
        #expect(location.hostHeader == "127.0.0.1:9000")
        #expect(location.path(objectKey: location.objectKey("k")) == "/bucket/a/b/k")
        #expect(location.shareKey("a/b/k") == "k" && location.shareKey("a/bk") == nil)
    }

    @Test func awsDefaultsToVirtualHostsAndTheEnvironmentRegion() throws {
        let location = try S3Location(url: "s3://my-bucket/share", environment: ["AWS_REGION": "ap-southeast-2"])
        #expect(location.style == .virtual && location.scheme == "https")
        #expect(location.hostHeader == "my-bucket.s3.ap-southeast-2.amazonaws.com")
        #expect(location.path(objectKey: "share/k") == "/share/k")
        #expect(try S3Location(url: "s3://b.with.dots/x", environment: [:]).style == .path, "dotted names break TLS on virtual hosts")
        #expect(try S3Location(url: "s3://bkt", environment: [:]).region == "us-east-1")
        #expect(try S3Location(url: "s3://bkt?endpoint=https://minio.local:443", environment: [:]).hostHeader == "minio.local")
        #expect(try S3Location(url: "s3://bkt?endpoint=http://[::1]:9000", environment: [:]).hostHeader == "[::1]:9000")
    }

    @Test(arguments: [
        "s3://", "s3://UpperCase/x", "s3://ab/x", "s3://bucket/a/../b", "s3://bucket/x?secret=abc", "s3://bucket/x?style=sideways",
        "s3://bucket/x?endpoint=ftp://host", "s3://bucket/x?endpoint=http://host/path", "s3://bucket/x?region=us-east-1&region=eu-west-1",
        "s3://bucket/x#frag", "s3://bucket/x?payload=maybe",
    ])
    func malformedURLsAreRefusedWithAReason(_ url: String) {
        do {
            _ = try S3Location(url: url, environment: [:])
            Issue.record("\(url) was accepted")
        } catch let error as StoreError {
            #expect(error.code == .permanent && error.cause.contains("malformed URL"), "\(error)")
            #expect(!"\(error)".contains("abc"), "a secret-looking parameter was echoed: \(error)")
        } catch {
            Issue.record("\(error)")
        }
    }

    @Test(arguments: ["s3://bucket/p?endpoint=http://127.0.0.1:9000&style=virtual", "s3://bucket/p?endpoint=https://[::1]:9000&style=virtual"])
    func virtualHostedStyleWithAnIPEndpointIsRefusedAtParseTime(_ url: String) {
        do {
            _ = try S3Location(url: url, environment: [:])
            Issue.record("\(url) was accepted (curl would fail later: 'cannot set buffer size', curl 43)")
        } catch let error as StoreError {
            #expect(error.cause.contains("virtual-hosted style needs a DNS name") && error.cause.contains("style=path"), "\(error)")
        } catch {
            Issue.record("\(error)")
        }
    }

    @Test func virtualHostedStyleWithADNSNameEndpointParses() throws {
        let location = try S3Location(url: "s3://bucket/p?endpoint=https://minio.example:9000&style=virtual", environment: [:])
        #expect(location.hostHeader == "bucket.minio.example:9000")
        #expect(try S3Location(url: "s3://bucket/p?endpoint=http://127.0.0.1:9000", environment: [:]).style == .path)
    }

    @Test func environmentCredentialsWin() throws {
        let credentials = try S3Credentials.load(environment: ["AWS_ACCESS_KEY_ID": "AKIDENV", "AWS_SECRET_ACCESS_KEY": "s", "AWS_SESSION_TOKEN": "t"], store: "s3://b")
        #expect(credentials.accessKeyId == "AKIDENV" && credentials.hasSessionToken)
    }

    @Test func aCredentialsFileMustBePrivate() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/credentials"
        try "[default]\naws_access_key_id = AKIDFILE\naws_secret_access_key = file-secret-value\n\n[other]\naws_access_key_id=AKIDOTHER\naws_secret_access_key=x\naws_session_token=tok\n"
            .write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o644)
        do {
            _ = try S3Credentials.load(environment: ["AWS_SHARED_CREDENTIALS_FILE": path], store: "s3://b")
            Issue.record("a world-readable credentials file was used")
        } catch let error as StoreError {
            #expect(error.code == .unauthorized && error.cause.contains("chmod 600"), "\(error)")
            #expect(!"\(error)".contains("file-secret-value"))
        }
        chmod(path, 0o600)
        #expect(try S3Credentials.load(environment: ["AWS_SHARED_CREDENTIALS_FILE": path], store: "s3://b").accessKeyId == "AKIDFILE")
        let other = try S3Credentials.load(environment: ["AWS_SHARED_CREDENTIALS_FILE": path, "AWS_PROFILE": "other"], store: "s3://b")
        #expect(other.accessKeyId == "AKIDOTHER" && other.hasSessionToken)
        #expect(throws: StoreError.self) { try S3Credentials.load(environment: ["AWS_SHARED_CREDENTIALS_FILE": path], profile: "missing", store: "s3://b") }
    }

    @Test func missingCredentialsSayWhereTheyWereLookedFor() {
        do {
            _ = try S3Credentials.load(environment: ["HOME": "/nonexistent-home"], store: "s3://b/p")
            Issue.record("credentials appeared from nowhere")
        } catch let error as StoreError {
            #expect(error.code == .unauthorized && error.cause.contains("AWS_ACCESS_KEY_ID") && error.store == "s3://b/p", "\(error)")
        } catch {
            Issue.record("\(error)")
        }
    }

    @Test func theLocatorRefusesAnUnknownSchemeListingS3() {
        do {
            _ = try StoreLocator.open("gopher://x")
            Issue.record("accepted gopher://")
        } catch {
            #expect("\(error)".contains("s3"))
        }
    }
}
