import CloudShare
@testable import Gateway
import Hashing
import Testing

@Suite struct EntryRecordTests {
    /// A record's file id reads back exactly as given, in memory and through the database's encoding,
    /// whether it is 32 lowercase hex digits (held in two numbers) or any other string.
    @Test(arguments: ["00112233445566778899aabbccddeeff", "00112233445566778899AABBCCDDEEFF", "0011223344556677",
                      "", "ünïcode ☃ id", NamespaceEntry.newFileID()])
    func theFileIDReadsBackExactly(_ fileID: String) throws {
        var record = EntryRecord(kind: .file, fileID: fileID, size: 7, mtime: 1, ctime: 2, inode: 3, mode: 0o644, uid: 4, gid: 5,
                                 fingerprint: Fingerprint128(high: 6, low: 7), version: 8, residency: .partial)
        #expect(record.fileID == fileID)
        let back = try #require(EntryRecord(encoded: record.encoded))
        #expect(back == record && back.fileID == fileID)
        record.fileID = "d1"
        #expect(record.fileID == "d1" && record != back)
    }
}
