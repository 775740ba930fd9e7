import Backends
import CloudShare
import Foundation
import Logging
import Metrics
import ServiceLifecycle
import Telemetry

/// The daemon's garbage collection: runs the collector (``GarbageCollector``) of every share this
/// server's endpoints sync with, on config.json's `gc` schedule (``CollectionSchedule``), one share at a
/// time, at background priority and through the server's network limit, and logs one line per run. It
/// shares nothing with the sync passes but the store, so they never wait for it. The share's lease keeps
/// the collectors of different servers apart: a run that finds it held waits for its next turn. On
/// SIGTERM a run in progress is cancelled; it releases its lease, and the next run finishes its work
/// (every step is idempotent).
final class CollectionService: Service {
    let shares: [String]
    let interval: Double
    let options: GarbageCollector.Options
    let networkLimit: NetworkLimit
    let logger: Logger
    private let succeeded = Counter(label: MetricName.gcRuns, dimensions: [("result", "success")])
    private let busy = Counter(label: MetricName.gcRuns, dimensions: [("result", "busy")])
    private let failed = Counter(label: MetricName.gcRuns, dimensions: [("result", "error")])
    private let deletedBytes = Counter(label: MetricName.gcDeletedBytes)

    /// A service collecting `shares` (URLs) every `interval` seconds (± 10 %).
    init(shares: [String], interval: Double, options: GarbageCollector.Options, networkLimit: NetworkLimit, logger: Logger) {
        var unique: [String] = []
        for share in shares where !unique.contains(share) { unique.append(share) }
        self.shares = unique
        self.interval = interval
        self.options = options
        self.networkLimit = networkLimit
        self.logger = logger
    }

    func run() async throws {
        let work = Task(priority: .background) { await self.loop() }
        await cancelWhenGracefulShutdown {
            await withTaskCancellationHandler { await work.value } onCancel: { work.cancel() }
        }
    }

    private func loop() async {
        // The first run comes a while after the start, so a restarted daemon syncs first.
        var wait = interval * Double.random(in: 0.05...0.25)
        while !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(Int64(wait * 1000)))
            for share in shares where !Task.isCancelled { await collect(share) }
            wait = interval * Double.random(in: 0.9...1.1)
        }
    }

    private func collect(_ url: String) async {
        var logger = logger
        logger[metadataKey: "share"] = .string(StoreLocator.redacted(url))
        let started = Date()
        do {
            let report = try await GarbageCollector(store: networkLimit.wrap(try StoreLocator.open(url)), options: options).run()
            succeeded.increment()
            deletedBytes.increment(by: Int(report.deleted.bytes))
            logger.info("garbage collection: \(Self.summary(report)) in \(String(format: "%.1f", Date().timeIntervalSince(started))) s")
        } catch let error as CollectorBusy {
            busy.increment()
            logger.info("garbage collection skipped until the next run: \(error)")
        } catch {
            if Task.isCancelled {
                logger.info("garbage collection stopped by the shutdown; the next run finishes it")
            } else {
                failed.increment()
                logger.warning("garbage collection failed: \(error)")
            }
        }
    }

    /// One line: what was deleted, marked and kept, and which versions.
    static func summary(_ report: GarbageCollector.Report) -> String {
        func tally(_ tally: GarbageCollector.Tally) -> String { "\(tally.packs) packs (\(ByteFormat.string(tally.bytes)))" }
        let versions = report.retention.keepsEverything ? "every version kept"
            : (report.keptFrom == 0 ? "every version kept" : "versions kept from #\(report.keptFrom)")
            + (report.keptSelected > 0 ? " and \(report.keptSelected) older" : "") + (report.heldBy.map { ", held back by \($0)" } ?? "")
        return "log head \(report.logHead), \(versions); deleted \(tally(report.deleted)), marked \(tally(report.markedPending)) for deletion, "
            + "\(tally(report.awaitingDeletion)) awaiting deletion, kept \(tally(report.keptReferenced)) referenced, "
            + "\(ByteFormat.string(report.partlyUsedUnusedBytes)) unused inside partly used packs"
    }
}
