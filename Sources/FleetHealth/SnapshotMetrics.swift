import Prometheus
import Synchronization

/// Prometheus metrics fed from periodic snapshots of a process's own counters and levels.
///
/// A component that already keeps totals (files sent, failures) reports them here as they are:
/// ``recordTotal(_:help:_:)`` turns a growing total into counter increments (a total that drops,
/// e.g. after the component was re-created, counts from zero again, so the counter never goes
/// backwards), ``recordLevel(_:help:_:)`` sets a gauge. ``exposition()`` renders the text format
/// served at `GET /metrics`. Thread-safe: all state is in the registry or guarded by `state`.
public final class SnapshotMetrics: Sendable {
  /// The underlying registry, for metrics a caller wants to drive directly.
  public let registry: PrometheusCollectorRegistry

  private struct State {
    var counters: [String: (counter: Counter, lastTotal: UInt64)] = [:]
    var gauges: [String: Gauge] = [:]
  }

  private let state = Mutex(State())

  /// Makes an empty set of metrics with its own registry.
  public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
    self.registry = registry
  }

  /// Records the current value of a monotonically growing total as a Prometheus counter.
  public func recordTotal(_ name: String, help: String, _ total: UInt64) {
    state.withLock { state in
      var entry = state.counters[name] ?? (registry.makeCounter(descriptor: Self.descriptor(name, help)), 0)
      let delta = total >= entry.lastTotal ? total - entry.lastTotal : total
      if delta > 0 { entry.counter.increment(by: Int64(clamping: delta)) }
      entry.lastTotal = total
      state.counters[name] = entry
    }
  }

  /// Records the current value of a level (queue depth, lag, a 0/1 flag) as a Prometheus gauge.
  public func recordLevel(_ name: String, help: String, _ value: Double) {
    state.withLock { state in
      let gauge = state.gauges[name] ?? registry.makeGauge(descriptor: Self.descriptor(name, help))
      gauge.set(value)
      state.gauges[name] = gauge
    }
  }

  private static func descriptor(_ name: String, _ help: String) -> MetricNameDescriptor {
    MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
  }

  /// The Prometheus text exposition of every metric recorded so far.
  public func exposition() -> [UInt8] {
    registry.emitToBuffer()
  }
}
