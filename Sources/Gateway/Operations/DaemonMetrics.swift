import CoreMetrics
import Foundation
import Metrics
import Prometheus
import Synchronization
import Telemetry

/// The daemon's metrics: swift-metrics handles everywhere (names in ``MetricName``), exported in the
/// Prometheus text format from one registry. Only `serve` bootstraps it; elsewhere the handles do nothing.
public enum DaemonMetrics {
    /// The registry every handle of this process writes to, once bootstrapped.
    static let registry = PrometheusCollectorRegistry()
    private static let bootstrapped = Mutex(false)

    /// Makes swift-metrics write to ``registry``. Idempotent; call before any handle is made.
    public static func bootstrap() {
        bootstrapped.withLock { done in
            guard !done else { return }
            done = true
            var factory = PrometheusMetricsFactory(registry: registry)
            // Store requests take milliseconds (file://) to seconds (a far object store); recalls up to minutes.
            factory.defaultDurationHistogramBuckets = [.milliseconds(1), .milliseconds(5), .milliseconds(25), .milliseconds(100),
                                                       .milliseconds(250), .seconds(1), .seconds(2.5), .seconds(10), .seconds(60)]
            MetricsSystem.bootstrap(factory)
            CoreMetrics.Gauge(label: MetricName.up).record(1)
        }
    }

    /// The current values, in the Prometheus text exposition format.
    static func exposition() -> [UInt8] { registry.emitToBuffer() }
}
