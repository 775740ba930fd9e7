import Foundation
import Gateway
import Synchronization

/// Prints progress of long jobs on one rewritten line of standard error (only on a terminal).
final class ProgressPrinter: Sendable {
    static let shared = ProgressPrinter()
    private let shown = Mutex(false)
    private let isTerminal = isatty(2) != 0

    @Sendable func print(_ progress: JobProgress) {
        let rate = progress.elapsed > 0 ? Double(progress.items) / progress.elapsed : 0
        let mbps = progress.elapsed > 0 ? Double(progress.bytes) / progress.elapsed / 1e6 : 0
        let total = progress.totalItems.map { "/\($0)" } ?? ""
        guard progress.items > 0 || progress.bytes > 0 || progress.totalItems != nil else {
            // A step that has no counts yet (walking the source, reading the share's log) says what it does.
            shown.withLock { $0 = true }
            FileHandle.standardError.write(Data((isTerminal ? "\r\u{1b}[K" + progress.phase + "…" : progress.phase + "…\n").utf8))
            return
        }
        let bytes = ByteFormat.string(progress.bytes) + (progress.totalBytes.map { " of " + ByteFormat.string($0) } ?? "")
        var line = "\(progress.phase): \(progress.items)\(total) \(progress.unit), \(bytes), \(Int(rate)) \(progress.unit)/s, \(String(format: "%.1f", mbps)) MB/s"
        if let left = progress.secondsLeft, left.isFinite, left >= 0 {
            line += left >= 3600 ? String(format: ", ETA %dh%02dm", Int(left) / 3600, Int(left) % 3600 / 60)
                                 : String(format: ", ETA %dm%02ds", Int(left) / 60, Int(left) % 60)
        }
        shown.withLock { $0 = true }
        FileHandle.standardError.write(Data((isTerminal ? "\r\u{1b}[K" + line : line + "\n").utf8))
    }

    func finish() {
        if shown.withLock({ $0 }) && isTerminal { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}
