import CLinux

/// One event as read from the group, before the monitor resolves its path and status.
struct RawEvent: Equatable, Sendable {
    /// The event's file descriptor, or `CLINUX_FAN_NOFD` for a queue overflow.
    var fd: Int32
    var pid: Int32
    var mask: UInt64
    var range: ByteRange?
    /// False when the record's metadata version is not the one this parser knows: the event is then
    /// denied without reaching the handler, because its other fields cannot be trusted.
    var understood: Bool
}

/// Parses the byte stream read from a fanotify descriptor: a sequence of `fanotify_event_metadata`
/// records, each followed by info records (here: the 6.14 range record).
enum EventRecords {
    static let metadataLength = 24

    /// The events in `buffer`; a truncated or malformed tail is ignored (the kernel never splits events).
    static func parse(_ buffer: UnsafeRawBufferPointer) -> [RawEvent] {
        var events: [RawEvent] = []
        var position = 0
        while buffer.count - position >= metadataLength {
            let eventLength = Int(buffer.loadUnaligned(fromByteOffset: position, as: UInt32.self))
            guard eventLength >= metadataLength, eventLength <= buffer.count - position else { break }
            let version = buffer.loadUnaligned(fromByteOffset: position + 4, as: UInt8.self)
            let metadataLength = Int(buffer.loadUnaligned(fromByteOffset: position + 6, as: UInt16.self))
            let mask = buffer.loadUnaligned(fromByteOffset: position + 8, as: UInt64.self)
            let fd = buffer.loadUnaligned(fromByteOffset: position + 16, as: Int32.self)
            let pid = buffer.loadUnaligned(fromByteOffset: position + 20, as: Int32.self)
            let understood = version == UInt8(CLINUX_FANOTIFY_METADATA_VERSION) && metadataLength >= Self.metadataLength
                && metadataLength <= eventLength
            var range: ByteRange?
            if understood {
                var info = position + metadataLength
                let stop = position + eventLength
                while stop - info >= 4 {
                    let type = buffer.loadUnaligned(fromByteOffset: info, as: UInt8.self)
                    let length = Int(buffer.loadUnaligned(fromByteOffset: info + 2, as: UInt16.self))
                    guard length >= 4, length <= stop - info else { break }
                    if type == UInt8(CLINUX_FAN_EVENT_INFO_TYPE_RANGE), length >= 24 {
                        let offset = buffer.loadUnaligned(fromByteOffset: info + 8, as: UInt64.self)
                        let count = buffer.loadUnaligned(fromByteOffset: info + 16, as: UInt64.self)
                        range = ByteRange(offset: Int64(clamping: offset), count: Int64(clamping: count))
                    }
                    info += length
                }
            }
            events.append(RawEvent(fd: fd, pid: pid, mask: mask, range: range, understood: understood))
            position += eventLength
        }
        return events
    }
}
