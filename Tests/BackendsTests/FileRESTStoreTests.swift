@testable import Backends
import Foundation
import Synchronization
import Testing

/// The FileREST store against the FileREST emulator, which each test starts on a free loopback port.
@Suite struct FileRESTStoreTests {
    @Test func passesTheConformanceSuiteWithASharedKey() async throws {
        let emulator = try FileRESTEmulator()
        try await StoreConformance.run(on: try await emulator.store())
    }

    @Test func passesTheConformanceSuiteWithASASUnderAPrefixWithSmallListingPages() async throws {
        let emulator = try FileRESTEmulator()
        let sas = emulator.signer.accountSAS(SASConstraints(permissions: "rwdlc", expiry: "2099-01-01T00:00:00Z"),
                                             resourceTypes: "co")
        // Three entries per List Directories and Files page, so every listing follows the service's markers.
        let store = try await emulator.store(prefix: "tenants/ünï cørn", credentials: .sas(sas), listPageSize: 3)
        try await StoreConformance.run(on: store)
    }

    @Test func racingWritersOnSeparateConnectionsHaveExactlyOneWinner() async throws {
        let emulator = try FileRESTEmulator()
        let first = try await emulator.store(share: "race")
        let stores = [first] + (try await (0..<3).asyncMap { _ in try await emulator.store(share: "race", client: try HTTPClient()) })
        for round in 0..<10 {
            let key = "log/\(String(format: "%08d", round))"
            let outcomes = await withTaskGroup(of: (Int, StoreError.Code?).self) { group in
                for writer in 0..<16 {
                    group.addTask {
                        do {
                            try await stores[writer % stores.count].putIfAbsent(key, bytes: Array("writer \(writer)".utf8))
                            return (writer, nil)
                        } catch let error as StoreError {
                            return (writer, error.code)
                        } catch {
                            return (writer, .permanent)
                        }
                    }
                }
                var outcomes: [(Int, StoreError.Code?)] = []
                for await outcome in group { outcomes.append(outcome) }
                return outcomes
            }
            let winners = outcomes.filter { $0.1 == nil }.map(\.0)
            #expect(winners.count == 1, "round \(round): winners \(winners)")
            #expect(outcomes.allSatisfy { $0.1 == nil || $0.1 == .alreadyExists }, "round \(round): \(outcomes)")
            if let winner = winners.first {
                #expect(try await first.get(key) == Array("writer \(winner)".utf8))
            }
        }
        #expect(try await first.listAll(prefix: "log/").count == 10, "losers leave no temporary files behind")
    }

    @Test func readersNeverSeeAPartialObject() async throws {
        let emulator = try FileRESTEmulator()
        let store = try await emulator.store()
        // 5 MiB: two Put Range calls, so a reader that could see the file mid-write would see a mix.
        let old = [UInt8](repeating: 1, count: 5 << 20), new = [UInt8](repeating: 2, count: 5 << 20)
        try await store.put("big", bytes: old)
        let writing = Task { for _ in 0..<3 { try await store.put("big", bytes: new); try await store.put("big", bytes: old) } }
        for _ in 0..<25 {
            let bytes = try await store.get("big")
            #expect(bytes == old || bytes == new, "a read saw a mix of two versions")
            #expect(try await store.listAll(prefix: "").map(\.key) == ["big"], "a listing showed an upload in flight")
        }
        try await writing.value
    }

    @Test func keysWithCharactersAzureFilesRefusesRoundTrip() async throws {
        let emulator = try FileRESTEmulator()
        let store = try await emulator.store()
        // The emulator refuses these characters in names and trims trailing dots, as the service does.
        let keys = ["names/a\"b", "names/back\\slash", "names/c:o|l<o>n*s?", "names/trailing.", "names/trailing ",
                    "names/100%", "names/%41", "names/dir./inner", "names/odd\u{FFFF}char"]
        for (index, key) in keys.enumerated() {
            try await store.put(key, bytes: [UInt8(index)])
        }
        for (index, key) in keys.enumerated() {
            #expect(try await store.get(key) == [UInt8(index)], "\(key)")
        }
        let listed = try await store.listAll(prefix: "names/").map(\.key)
        #expect(listed == keys.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) })
        #expect(try await store.listAll(prefix: "names/trailing").map(\.key) == ["names/trailing ", "names/trailing."])
    }

    @Test func aWrongKeyIsUnauthorizedAndNeverRetried() async throws {
        let emulator = try FileRESTEmulator()
        _ = try await emulator.store(share: "locked")
        let sleeps = Atomic<Int>(0)
        let policy = RetryPolicy(maxAttempts: 5, baseDelay: .milliseconds(1), sleep: { _ in sleeps.add(1, ordering: .relaxed) })
        let wrongKey = SharedKeySigner(account: emulator.account, key: Array(repeating: 9, count: 64))
        let client = try HTTPClient()
        let store = try await FileRESTStore(
            location: FileRESTLocation(account: emulator.account, share: "locked", endpoint: emulator.endpoint),
            credentials: .sharedKey(wrongKey), client: client, retry: policy)
        do {
            try await store.put("k", bytes: [1])
            Issue.record("a wrong key was accepted")
        } catch let error as StoreError {
            #expect(error.code == .unauthorized)
            #expect(error.description.contains("AuthenticationFailed"), "\(error)")
            #expect(error.description.contains("Create File /locked/"), "\(error)")
        }
        #expect(sleeps.load(ordering: .relaxed) == 0)
        #expect(client.requestCount == 1)
    }

    @Test func serverBusyIsRetriedWithBackoff() async throws {
        let emulator = try FileRESTEmulator()
        let delays = Mutex<[Duration]>([])
        let policy = RetryPolicy(maxAttempts: 4, baseDelay: .milliseconds(10), sleep: { delay in delays.withLock { $0.append(delay) } })
        let store = try await emulator.store(retry: policy)
        try await emulator.injectFaults(count: 2)
        try await store.put("a/b", bytes: [1, 2, 3])
        #expect(try await store.get("a/b") == [1, 2, 3])
        #expect(delays.withLock { $0.count } == 2)
        #expect(delays.withLock { $0.allSatisfy { $0 <= .milliseconds(20) } }, "backoff stays under its ceiling")
    }

    @Test func persistentFailuresNameTheOperationThePathAndTheServiceCode() async throws {
        let emulator = try FileRESTEmulator()
        let store = try await emulator.store(share: "errors", retry: RetryPolicy(maxAttempts: 2, sleep: { _ in }))
        try await store.put("dir/file", bytes: [1])
        try await emulator.injectFaults(count: 2, status: 500, code: "InternalError")
        do {
            _ = try await store.get("dir/file")
            Issue.record("expected a failure")
        } catch let error as StoreError {
            #expect(error.code == .transient)
            #expect(error.operation == "get" && error.key == "dir/file")
            #expect(error.cause.contains("Get File /errors/dir/file: HTTP 500 InternalError"), "\(error)")
        }
        try await emulator.injectFaults(count: 1, status: 400, code: "InvalidHeaderValue")
        await StoreConformance.expectCode(.permanent) { _ = try await store.head("dir/file") }
    }

    @Test func aLostRenameAnswerIsResolvedByTheTemporarySource() async throws {
        let emulator = try FileRESTEmulator()
        let store = try await emulator.store(retry: RetryPolicy(maxAttempts: 3, sleep: { _ in }))
        // The rename takes effect but its answer is lost; the retry then finds the name taken (or the source
        // gone), and the store must still report the write that won as its own.
        try await emulator.injectFaults(count: 1, status: 500, code: "InternalError", operation: "RenameFile", afterApplying: true)
        try await store.putIfAbsent("log/1", bytes: [1])
        try await emulator.injectFaults(count: 1, status: 500, code: "InternalError", operation: "RenameFile", afterApplying: true)
        try await store.put("data/1", bytes: [2])
        #expect(try await store.get("log/1") == [1])
        #expect(try await store.get("data/1") == [2])
        await StoreConformance.expectCode(.alreadyExists) { try await store.putIfAbsent("log/1", bytes: [3]) }
        #expect(try await store.get("log/1") == [1])
        #expect(try await store.listAll(prefix: "").map(\.key) == ["data/1", "log/1"])
    }

    /// A writer cut off mid-write that could not remove its temporary file either (the connection gone)
    /// leaves it; listings never show it, and a sweep removes it once it is older than the sweep's age.
    @Test func aTemporaryFileLeftMidWriteIsRemovedOnceOldEnough() async throws {
        let emulator = try FileRESTEmulator()
        let store = try await emulator.store(retry: .never)
        try await store.put("packs/ab/kept", bytes: [1])
        try await emulator.injectFaults(count: 1, status: 500, code: "InternalError", operation: "PutRange")
        try await emulator.injectFaults(count: 1, status: 500, code: "InternalError", operation: "DeleteFile")
        await StoreConformance.expectCode(.transient) { try await store.put("packs/ab/cut", bytes: [2, 3]) }
        #expect(try await store.listAll(prefix: "").map(\.key) == ["packs/ab/kept"])
        #expect(try await store.removeAbandonedWrites(olderThan: 3600) == 0, "a write in flight is kept")
        try await Task.sleep(for: .seconds(1.1))
        #expect(try await store.removeAbandonedWrites(olderThan: 1) == 1)
        #expect(try await store.removeAbandonedWrites(olderThan: 0) == 0)
        #expect(try await store.get("packs/ab/kept") == [1])
    }

    @Test func aKeyBelowAnExistingFileIsAPermanentFailure() async throws {
        let emulator = try FileRESTEmulator()
        let store = try await emulator.store(retry: .never)
        try await store.put("a", bytes: [1])
        await StoreConformance.expectCode(.permanent) { try await store.put("a/b", bytes: [2]) }
        await StoreConformance.expectCode(.notFound) { _ = try await store.get("a/b") }
        #expect(try await store.listAll(prefix: "").map(\.key) == ["a"])
    }

    @Test func aMissingShareIsAPermanentErrorNotAMissingKey() async throws {
        let emulator = try FileRESTEmulator()
        let store = try FileRESTStore(
            location: FileRESTLocation(account: emulator.account, share: "never-made", endpoint: emulator.endpoint),
            credentials: .sharedKey(emulator.signer), retry: .never)
        await StoreConformance.expectCode(.permanent) { try await store.put("k", bytes: [1]) }
    }
}

/// `filerest://` URLs, credentials and name escaping, without a server.
@Suite struct FileRESTLocationTests {
    @Test func theDefaultEndpointIsTheAccountsFileService() throws {
        let location = try FileRESTLocation(url: "filerest://myaccount/myshare/some/prefix/")
        #expect(location.account == "myaccount" && location.share == "myshare" && location.prefix == "some/prefix")
        #expect(location.endpoint == "https://myaccount.file.core.windows.net")
        #expect(location.endpointPath == "")
        #expect(location.description == "filerest://myaccount/myshare/some/prefix")
    }

    @Test func anEndpointWithAPathPrefixesEveryRequest() throws {
        let location = try FileRESTLocation(url: "filerest://acct1/share?endpoint=http%3A%2F%2F127.0.0.1%3A10002%2Facct1")
        #expect(location.endpoint == "http://127.0.0.1:10002/acct1")
        #expect(location.endpointAuthority == "127.0.0.1:10002" && location.endpointPath == "/acct1")
        #expect(try FileRESTLocation(url: "filerest://acct1/share?endpoint=http://localhost:1/").endpoint == "http://localhost:1")
    }

    @Test(arguments: ["filerest://a/share", "filerest://UPPER/share", "filerest://acct/x", "filerest://acct/bad--share",
                      "filerest://acct", "filerest://acct/share/../up", "filerest://acct/share?sig=abc",
                      "filerest://acct/share?endpoint=ftp://host", "filerest://acct/share?endpoint=http://h/p?q=1"])
    func malformedURLsAreRefusedWithAReason(url: String) {
        #expect(throws: StoreError.self) { try FileRESTLocation(url: url) }
    }

    @Test func theStoreLocatorRoutesFileRESTURLsHere() {
        // A malformed filerest:// URL fails with this backend's own reason, so the locator sent it here.
        do {
            _ = try StoreLocator.open("filerest://UPPER/share")
            Issue.record("a malformed URL was accepted")
        } catch let error as StoreError {
            #expect(error.code == .permanent && error.cause.contains("account name"), "\(error)")
        } catch {
            Issue.record("unexpected \(error)")
        }
    }

    @Test func credentialsComeFromTheEnvironmentOrAPrivateFile() throws {
        let key = Data(repeating: 5, count: 64).base64EncodedString()
        guard case .sharedKey = try FileRESTCredentials.load(account: "acct", environment: ["AZURE_STORAGE_KEY": key], store: "s") else {
            Issue.record("expected a shared key")
            return
        }
        guard case .sas(let sas) = try FileRESTCredentials.load(account: "acct", environment: ["AZURE_STORAGE_SAS_TOKEN": "?sv=2025-11-05&sig=abc%2B"], store: "s") else {
            Issue.record("expected a SAS")
            return
        }
        #expect(sas["sig"] == "abc+")
        #expect(throws: StoreError.self) { try FileRESTCredentials.load(account: "acct", environment: [:], store: "s") }
        #expect(throws: StoreError.self) { try FileRESTCredentials.load(account: "acct", environment: ["AZURE_STORAGE_KEY": "not base64!"], store: "s") }

        let file = NSTemporaryDirectory() + "tiergate-filerest-key-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: file) }
        FileManager.default.createFile(atPath: file, contents: Data(key.utf8), attributes: [.posixPermissions: 0o644])
        #expect(throws: StoreError.self, "a key file others can read is refused") {
            try FileRESTCredentials.load(account: "acct", environment: ["AZURE_STORAGE_KEY_FILE": file], store: "s")
        }
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: file)
        guard case .sharedKey = try FileRESTCredentials.load(account: "acct", environment: ["AZURE_STORAGE_KEY_FILE": file], store: "s") else {
            Issue.record("expected a shared key from the file")
            return
        }
    }

    @Test func escapedNamesRoundTripAndAreValidAzureNames() {
        for component in ["plain", "a\"b\\c:d|e<f>g*h?i", "100%", "%41", "dot.", "space ", "ünï 名前 🎉", "a.b"] {
            let name = FileRESTPath.escapeName(component)
            #expect(FileRESTPath.unescapeName(name) == component)
            #expect(!name.contains { "\"\\:|<>*?".contains($0) } && !name.hasSuffix(".") && !name.hasSuffix(" "))
        }
        #expect(FileRESTPath.escapeName("dot.", partial: true) == "dot.")
        #expect(FileRESTPath.encode("a b/ü~") == "a%20b%2F%C3%BC~")
    }

    @Test func listingNamesTheServiceEncodesAreDecoded() throws {
        let xml = """
            <?xml version="1.0" encoding="utf-8"?><EnumerationResults ServiceEndpoint="http://h/" ShareName="s" DirectoryPath="">\
            <Prefix /><MaxResults>2</MaxResults><Entries><File><Name Encoded="true">odd%EF%BF%BFname</Name>\
            <Properties><Content-Length>12</Content-Length></Properties></File><Directory><Name>d &amp; e</Name>\
            <Properties /></Directory></Entries><NextMarker>abc</NextMarker></EnumerationResults>
            """
        let page = try #require(FileRESTXML.listingPage(Array(xml.utf8)))
        #expect(page.entries == [.init(name: "odd\u{FFFF}name", isDirectory: false, size: 12), .init(name: "d & e", isDirectory: true, size: 0)])
        #expect(page.nextMarker == "abc")
        #expect(FileRESTXML.listingPage(Array("<Error><Code>X</Code></Error>".utf8)) == nil)
        #expect(FileRESTXML.error(Array("<?xml version=\"1.0\"?><Error><Code>ServerBusy</Code><Message>busy\nRequestId:1</Message></Error>".utf8))?.code == "ServerBusy")
    }
}

extension Sequence {
    /// `transform` applied to each element in order, awaiting each.
    fileprivate func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var result: [T] = []
        for element in self { result.append(try await transform(element)) }
        return result
    }
}
