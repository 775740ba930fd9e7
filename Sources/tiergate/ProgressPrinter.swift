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
        let line = "\(progress.phase): \(progress.items)\(total) files, \(ByteFormat.string(progress.bytes)), \(Int(rate)) files/s, \(String(format: "%.1f", mbps)) MB/s"
        shown.withLock { $0 = true }
        FileHandle.standardError.write(Data((isTerminal ? "\r\u{1b}[K" + line : line + "\n").utf8))
    }

    func finish() {
        if shown.withLock({ $0 }) && isTerminal { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}
