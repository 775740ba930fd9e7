import CoreMetrics
import Foundation
import Prometheus
import Synchronization
import Telemetry

/// The daemon's metrics: swift-metrics handles everywhere (names and help in ``MetricName``), exported in
/// the Prometheus text format from one registry. Only `serve` bootstraps it; elsewhere the handles do nothing.
public enum DaemonMetrics {
    /// The registry every handle of this process writes to, once bootstrapped.
    static let registry = PrometheusCollectorRegistry()
    private static let bootstrapped = Mutex(false)

    /// Makes swift-metrics write to ``registry``. Idempotent; call before any handle is made.
    public static func bootstrap() {
        bootstrapped.withLock { done in
            guard !done else { return }
            done = true
            MetricsSystem.bootstrap(Factory(registry: registry))
            CoreMetrics.Gauge(label: MetricName.up).record(1)
        }
    }

    private static let networkLimit = Mutex<CoreMetrics.Gauge?>(nil)

    /// The network limit in force (bytes per second; nil: none), set at each scrape.
    static func recordNetworkLimit(_ bytesPerSecond: Int64?) {
        networkLimit.withLock { gauge in
            if gauge == nil { gauge = CoreMetrics.Gauge(label: MetricName.networkLimit) }
            gauge?.record(bytesPerSecond ?? 0)
        }
    }

    /// The current values, in the Prometheus text exposition format.
    static func exposition() -> [UInt8] { registry.emitToBuffer() }

    /// swift-metrics to the registry, with each metric's help text (the stock factory writes none).
    struct Factory: MetricsFactory {
        let registry: PrometheusCollectorRegistry
        /// Store requests take milliseconds (file://) to seconds (a far object store); recalls up to minutes.
        let buckets: [Duration] = [.milliseconds(1), .milliseconds(5), .milliseconds(25), .milliseconds(100), .milliseconds(250),
                                   .seconds(1), .seconds(2.5), .seconds(10), .seconds(60)]

        private func descriptor(_ label: String) -> MetricNameDescriptor {
            MetricNameDescriptor(metricName: label, helpText: MetricName.help[label])
        }

        func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
            registry.makeCounter(descriptor: descriptor(label), labels: dimensions)
        }

        func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> any FloatingPointCounterHandler {
            registry.makeCounter(descriptor: descriptor(label), labels: dimensions)
        }

        func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
            registry.makeGauge(descriptor: descriptor(label), labels: dimensions)
        }

        func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
            registry.makeDurationHistogram(descriptor: descriptor(label), labels: dimensions, buckets: buckets)
        }

        func destroyCounter(_ handler: any CounterHandler) {
            if let counter = handler as? Prometheus.Counter { registry.unregisterCounter(counter) }
        }

        func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) {
            if let counter = handler as? Prometheus.Counter { registry.unregisterCounter(counter) }
        }

        func destroyRecorder(_ handler: any RecorderHandler) {
            if let gauge = handler as? Prometheus.Gauge { registry.unregisterGauge(gauge) }
        }

        func destroyTimer(_ handler: any TimerHandler) {
            if let histogram = handler as? DurationHistogram { registry.unregisterDurationHistogram(histogram) }
        }
    }
}
