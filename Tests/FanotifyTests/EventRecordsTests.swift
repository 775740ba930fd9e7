@testable import Fanotify
import Testing

/// The parser of the bytes read from a fanotify descriptor, fed hand-built records.
@Suite struct EventRecordsTests {
    private func metadata(length: Int, version: UInt8 = 3, fd: Int32, pid: Int32, mask: UInt64 = 0x10_0000) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes += withUnsafeBytes(of: UInt32(length).littleEndian, Array.init)
        bytes += [version, 0]
        bytes += withUnsafeBytes(of: UInt16(24).littleEndian, Array.init)
        bytes += withUnsafeBytes(of: mask.littleEndian, Array.init)
        bytes += withUnsafeBytes(of: fd.littleEndian, Array.init)
        bytes += withUnsafeBytes(of: pid.littleEndian, Array.init)
        return bytes
    }

    private func rangeRecord(offset: UInt64, count: UInt64) -> [UInt8] {
        var bytes: [UInt8] = [6, 0]
        bytes += withUnsafeBytes(of: UInt16(24).littleEndian, Array.init)
        bytes += [0, 0, 0, 0]
        bytes += withUnsafeBytes(of: offset.littleEndian, Array.init)
        bytes += withUnsafeBytes(of: count.littleEndian, Array.init)
        return bytes
    }

    @Test func readsMetadataAndTheRangeRecordOfEachEvent() {
        let buffer = metadata(length: 48, fd: 7, pid: 100) + rangeRecord(offset: 8192, count: 4096)
            + metadata(length: 24, fd: 8, pid: 101)
        let events = buffer.withUnsafeBytes(EventRecords.parse)
        #expect(events == [
            RawEvent(fd: 7, pid: 100, mask: 0x10_0000, range: ByteRange(offset: 8192, count: 4096), understood: true),
            RawEvent(fd: 8, pid: 101, mask: 0x10_0000, range: nil, understood: true),
        ])
    }

    @Test func skipsInfoRecordsOfOtherTypes() {
        // A pidfd record (type 4, 8 bytes) before the range record.
        let pidfd: [UInt8] = [4, 0, 8, 0, 9, 0, 0, 0]
        let buffer = metadata(length: 56, fd: 5, pid: 1) + pidfd + rangeRecord(offset: 1, count: 2)
        let events = buffer.withUnsafeBytes(EventRecords.parse)
        #expect(events.map(\.range) == [ByteRange(offset: 1, count: 2)])
    }

    @Test func stopsAtATruncatedOrMalformedRecord() {
        let whole = metadata(length: 24, fd: 5, pid: 1)
        #expect((whole + metadata(length: 48, fd: 6, pid: 1)).withUnsafeBytes(EventRecords.parse).map(\.fd) == [5])
        #expect((whole + [1, 2, 3]).withUnsafeBytes(EventRecords.parse).map(\.fd) == [5])
        #expect(metadata(length: 10, fd: 5, pid: 1).withUnsafeBytes(EventRecords.parse).isEmpty)
    }

    @Test func anUnknownMetadataVersionIsMarkedNotUnderstood() {
        let events = metadata(length: 24, version: 4, fd: 5, pid: 1).withUnsafeBytes(EventRecords.parse)
        #expect(events.map(\.understood) == [false])
    }

    @Test(arguments: [
        (ByteRange(offset: 8192, count: 4096), ByteRange(offset: 0, count: 65536)),
        (ByteRange(offset: 65536, count: 1), ByteRange(offset: 65536, count: 65536)),
        (ByteRange(offset: 100_000, count: 100_000), ByteRange(offset: 65536, count: 134_464)),
        (ByteRange(offset: 190_000, count: 50000), ByteRange(offset: 131_072, count: 68928)),
    ])
    func alignmentWidensToBlocksAndClipsToTheFileSize(range: ByteRange, aligned: ByteRange) {
        #expect(range.aligned(to: 65536, limit: 200_000) == aligned)
    }
}
