import FleetCore
import FleetProvision
import Foundation
import Prometheus
import Synchronization

/// What `supervise` exposes on `/metrics` for Prometheus, recorded after every pass.
///
/// - `fleetsync_supervise_instances{state}`: instances by state (`healthy`, `unhealthy`, `down`), and
///   `fleetsync_supervise_hosts{outcome}`: hosts by outcome of the last pass;
/// - `fleetsync_supervise_lag_seconds{host,instance}`: each watcher's replication lag;
/// - `fleetsync_supervise_actions_total{host,instance,action}`: starts, restarts and leaves;
/// - `fleetsync_supervise_passes_total` and `fleetsync_supervise_last_pass_timestamp_seconds`.
public final class SuperviseMetrics: Sendable {
  private let registry = PrometheusCollectorRegistry()
  /// Gauges of label sets seen in the last pass, to drop those that are gone.
  private let lags = Mutex<[String: Gauge]>([:])
  private let passes: Counter
  private let lastPass: Gauge

  /// Metrics with their own registry.
  public init() {
    passes = registry.makeCounter(
      descriptor: Self.name("fleetsync_supervise_passes_total", "Check passes done."))
    lastPass = registry.makeGauge(
      descriptor: Self.name(
        "fleetsync_supervise_last_pass_timestamp_seconds", "When the last pass ended (Unix time)."))
  }

  /// Records one pass's reports.
  public func record(_ reports: [HealReport], at now: Date = Date()) {
    var byState = ["healthy": 0, "unhealthy": 0, "down": 0]
    var byOutcome = ["ok": 0, "changed": 0, "failed": 0, "auth": 0, "unreachable": 0]
    var seen: [String: Double] = [:]
    for report in reports {
      byOutcome[report.outcome.word, default: 0] += 1
      for service in report.status?.services ?? [] {
        let state = service.healthy ? "healthy" : (service.running ? "unhealthy" : "down")
        byState[state, default: 0] += 1
        if service.service.kind == .watch, let lag = service.lagSeconds {
          seen["\(report.host)\t\(service.service.instance)"] = lag
        }
      }
      for action in report.actions {
        registry.makeCounter(
          descriptor: Self.name(
            "fleetsync_supervise_actions_total", "Starts, restarts and instances left alone, by instance."),
          labels: [("host", report.host), ("instance", action.instance), ("action", action.action)]
        ).increment()
      }
    }
    for (state, count) in byState {
      registry.makeGauge(
        descriptor: Self.name("fleetsync_supervise_instances", "Instances by state, last pass."),
        labels: [("state", state)]
      ).set(Double(count))
    }
    for (outcome, count) in byOutcome {
      registry.makeGauge(
        descriptor: Self.name("fleetsync_supervise_hosts", "Hosts by outcome, last pass."),
        labels: [("outcome", outcome)]
      ).set(Double(count))
    }
    recordLags(seen)
    passes.increment()
    lastPass.set(now.timeIntervalSince1970)
  }

  private func recordLags(_ seen: [String: Double]) {
    lags.withLock { lags in
      for (key, gauge) in lags where seen[key] == nil {
        registry.unregisterGauge(gauge)
        lags[key] = nil
      }
      for (key, lag) in seen {
        let parts = key.split(separator: "\t", maxSplits: 1).map(String.init)
        let gauge =
          lags[key]
          ?? registry.makeGauge(
            descriptor: Self.name(
              "fleetsync_supervise_lag_seconds", "Replication lag of each watcher, last pass."),
            labels: [("host", parts[0]), ("instance", parts[1])])
        gauge.set(lag)
        lags[key] = gauge
      }
    }
  }

  private static func name(_ name: String, _ help: String) -> MetricNameDescriptor {
    MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
  }

  /// The Prometheus text exposition.
  public func exposition() -> [UInt8] { registry.emitToBuffer() }
}
