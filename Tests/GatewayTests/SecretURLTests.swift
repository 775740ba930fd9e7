import Foundation
import Gateway
import Testing

/// A secret in a share URL never reaches the output of the real `tiergate` binary: URLs with credentials
/// are refused with a sentence that points to the supported ways, and every URL printed is redacted, also
/// one a person wrote into config.json by hand.
@Suite struct SecretURLTests {
    static let secret = "wJalrXUtnFEMIK7MDENGbPxRfiCYSECRET"

    @Test(arguments: [
        "s3://AKIDEXAMPLE:\(secret)@bucket/p?endpoint=http://127.0.0.1:9000",
        "s3://bucket/p?endpoint=http://AKIDEXAMPLE:\(secret)@127.0.0.1:9000",
        "s3://bucket/p?endpoint=http://127.0.0.1:9000&X-Amz-Signature=\(secret)",
        "filerest://account:\(secret)@account/share",
        "filerest://account/share?sv=2022-11-02&sp=rwdlc&sig=\(secret)",
        "file://user:\(secret)@/srv/share",
    ])
    func shareCommandsRefuseCredentialsInTheURLWithoutPrintingThem(_ url: String) throws {
        let scratch = Scratch()
        let endpoint = scratch.path + "/endpoint"
        try FileManager.default.createDirectory(atPath: endpoint, withIntermediateDirectories: true)
        for arguments in [["share", "info", url], ["share", "create", url], ["put", url, endpoint], ["get", url, scratch.path + "/restore"],
                          ["endpoint", "add", endpoint, "--share", url, "--state-dir", scratch.path + "/state"]] {
            let result = try TiergateProcess.run(arguments, logs: scratch.path)
            let command = arguments.prefix(2).joined(separator: " ")
            #expect(result.status == 1, "\(command): \(result.output)")
            #expect(!result.output.contains(Self.secret), "\(command) printed the secret: \(result.output)")
            #expect(result.output.contains("credentials do not belong in the URL"), "\(command): \(result.output)")
        }
    }

    @Test func aURLWithCredentialsWrittenIntoConfigJSONIsNeverPrinted() throws {
        let scratch = Scratch()
        let endpoint = scratch.path + "/endpoint", state = scratch.path + "/state", share = "file://" + scratch.path + "/share"
        try FileManager.default.createDirectory(atPath: endpoint, withIntermediateDirectories: true)
        for arguments in [["share", "create", share], ["endpoint", "add", endpoint, "--share", share, "--state-dir", state]] {
            let result = try TiergateProcess.run(arguments, logs: scratch.path)
            try #require(result.status == 0, "\(result.output)")
        }
        // A person pastes a URL with keys into the human-editable configuration.
        let configPath = state + "/config.json"
        var config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: configPath))) as! [String: Any]
        var endpoints = config["endpoints"] as! [[String: Any]]
        endpoints[0]["share"] = "s3://AKIDEXAMPLE:\(Self.secret)@bucket/p?endpoint=http://127.0.0.1:9&style=path"
        config["endpoints"] = endpoints
        try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: configPath))

        for arguments in [["endpoint", "list"], ["status"], ["status", "--json"], ["sync"], ["serve"]] {
            let result = try TiergateProcess.run(arguments + ["--state-dir", state], logs: scratch.path)
            #expect(!result.output.contains(Self.secret), "\(arguments.joined(separator: " ")) printed the secret: \(result.output)")
            if arguments == ["endpoint", "list"] { #expect(result.output.contains("s3://***@bucket/p"), "\(result.output)") }
            if arguments == ["sync"] || arguments == ["serve"] {
                #expect(result.status == 1 && result.output.contains("credentials do not belong in the URL"), "\(result.output)")
            }
        }
    }
}
