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

    /// The ACL digest reads back; a record written before it existed (encoding version 1) still reads, as
    /// a file without ACLs; a record of any other length or version does not.
    @Test func theACLDigestReadsBackAndAVersion1RecordStillReads() throws {
        var record = EntryRecord(kind: .directory, fileID: NamespaceEntry.newFileID(), size: 0, mtime: 1, ctime: 2, inode: 3, mode: 0o755,
                                 uid: 4, gid: 5, fingerprint: Fingerprint128(high: 0, low: 0), version: 8)
        record.aclDigest = EntryRecord.aclDigest(["system.posix_acl_default": "AgAAAAEABwD/////"])
        #expect(record.aclDigest != 0)
        #expect(EntryRecord.aclDigest(nil) == 0 && EntryRecord.aclDigest([:]) == 0)
        let encoded = record.encoded
        #expect(EntryRecord(encoded: encoded) == record)
        var version1 = Array(encoded.dropLast(8))
        version1[0] = 1
        var expected = record
        expected.aclDigest = 0
        #expect(EntryRecord(encoded: version1) == expected)
        #expect(EntryRecord(encoded: Array(encoded.dropLast(8))) == nil, "a version 2 record without its digest")
        #expect(EntryRecord(encoded: version1 + [0]) == nil)
        var version3 = encoded
        version3[0] = 3
        #expect(EntryRecord(encoded: version3) == nil)
    }
}
