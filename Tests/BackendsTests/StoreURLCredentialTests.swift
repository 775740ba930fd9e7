import Backends
import Testing

/// Credentials never travel in a share URL: a URL that carries them is refused with a sentence that points
/// to the supported ways, without repeating them, and every URL shown is redacted by one function.
@Suite struct StoreURLCredentialTests {
    static let secret = "wJalrXUtnFEMIK7MDENGbPxRfiCYSECRET"

    @Test(arguments: [
        ("s3://AKIDEXAMPLE:\(secret)@bucket/p?endpoint=http://127.0.0.1:9000", "AWS_SECRET_ACCESS_KEY"),
        ("s3://\(secret)@bucket/p", "AWS_SECRET_ACCESS_KEY"),
        ("s3://bucket/p?endpoint=http://AKIDEXAMPLE:\(secret)@127.0.0.1:9000", "AWS_SECRET_ACCESS_KEY"),
        ("s3://bucket/p?endpoint=http%3A%2F%2FAKID%3A\(secret)%40127.0.0.1%3A9000", "AWS_SECRET_ACCESS_KEY"),
        ("s3://bucket/p?endpoint=http://127.0.0.1:9000&X-Amz-Signature=\(secret)", "AWS_SECRET_ACCESS_KEY"),
        ("s3://bucket/p?endpoint=http://127.0.0.1:9000&X-Amz-Security-Token=\(secret)", "credentials file"),
        ("filerest://account:\(secret)@account/share", "AZURE_STORAGE_KEY"),
        ("filerest://account/share?sv=2022-11-02&sp=rwdlc&sig=\(secret)", "AZURE_STORAGE_SAS_TOKEN"),
        ("filerest://account/share?endpoint=http://user:\(secret)@127.0.0.1:10002/account", "AZURE_STORAGE_KEY"),
        ("file://user:\(secret)@/srv/share", "takes no credentials"),
        ("user:\(secret)@bucket/p", "takes no credentials"),
    ])
    func aURLWithCredentialsIsRefusedWithoutRepeatingThem(_ url: String, _ supportedWay: String) {
        do {
            _ = try StoreLocator.open(url)
            Issue.record("\(url) was accepted")
        } catch let error as StoreError {
            #expect(!"\(error)".contains(Self.secret), "the secret was echoed: \(error)")
            #expect(error.code == .permanent && error.cause.contains("credentials do not belong in the URL"), "\(error)")
            #expect(error.cause.contains(supportedWay), "\(error)")
        } catch {
            Issue.record("\(error)")
        }
    }

    /// The parsers are public too, and refuse the same way when called without the locator.
    @Test func theLocationParsersRefuseCredentialsThemselves() {
        for parse in [{ _ = try S3Location(url: "s3://AKID:\(Self.secret)@bucket/p", environment: [:]) },
                      { _ = try FileRESTLocation(url: "filerest://account/share?sig=\(Self.secret)") },
                      { _ = try FileRESTLocation(account: "account", share: "share", endpoint: "https://u:\(Self.secret)@host") }] {
            do {
                try parse()
                Issue.record("accepted")
            } catch {
                #expect(!"\(error)".contains(Self.secret), "\(error)")
            }
        }
    }

    @Test(arguments: [
        ("s3://AKID:\(secret)@bucket/p?region=eu-west-1", "s3://***@bucket/p?region=eu-west-1"),
        ("filerest://account/share?sv=2022-11-02&sig=\(secret)&se=2030", "filerest://account/share?sv=2022-11-02&sig=***&se=2030"),
        ("s3://bucket/p?endpoint=http://AKID:\(secret)@host:9000&style=path", "s3://bucket/p?endpoint=http://***@host:9000&style=path"),
        ("s3://bucket/p?endpoint=https://host/?sig=\(secret)", "s3://bucket/p?endpoint=https://host/?sig=***"),
        ("user:\(secret)@bucket/p", "***@bucket/p"),
        ("file:///srv/share", "file:///srv/share"),
        ("s3://bucket/p?endpoint=http://127.0.0.1:9000&region=eu-west-1&style=path&credentials=/etc/tg/creds&profile=p",
         "s3://bucket/p?endpoint=http://127.0.0.1:9000&region=eu-west-1&style=path&credentials=/etc/tg/creds&profile=p"),
    ])
    func redactionMasksEveryCredentialAndNothingElse(_ url: String, _ shown: String) {
        #expect(StoreLocator.redacted(url) == shown)
    }
}
