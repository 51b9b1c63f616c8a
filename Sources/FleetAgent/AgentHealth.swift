import FleetHealth
import FleetWatch
import FleetWire
import Foundation
import Synchronization

/// The engine the agent runs right now (replaced on a successful SIGHUP reload), or, while none
/// could be made yet, the status the agent shows as it waits (see ``StartFailure``).
///
/// Thread-safe: the engine reference, the waiting status and the counters are guarded by `state`.
final class CurrentEngine: Sendable {
  struct State {
    /// The running engine; `nil` while the agent waits for a transient start error to pass.
    var engine: WatchEngine?
    /// What `/status` shows while there is no engine: the waiting state, the reason, the heartbeat
    /// of the retry loop.
    var waiting: WatchStatus
    var settings: AgentSettings
    var reloads: UInt64 = 0
    var failedReloads: UInt64 = 0
  }

  private let state: Mutex<State>

  init(engine: WatchEngine, settings: AgentSettings) {
    state = Mutex(State(engine: engine, waiting: WatchStatus(), settings: settings))
  }

  /// An agent without an engine yet: it shows `waiting` until ``started(_:)``.
  init(waiting: WatchStatus, settings: AgentSettings) {
    state = Mutex(State(engine: nil, waiting: waiting, settings: settings))
  }

  var engine: WatchEngine? { state.withLock { $0.engine } }

  var snapshot: State { state.withLock { $0 } }

  /// The engine's status snapshot, or the waiting status while there is no engine.
  func status() -> WatchStatus {
    let (engine, waiting) = state.withLock { ($0.engine, $0.waiting) }
    return engine?.status() ?? waiting
  }

  func replace(with engine: WatchEngine, settings: AgentSettings) {
    state.withLock {
      $0.engine = engine
      $0.settings = settings
      $0.reloads += 1
    }
  }

  func reloadFailed() {
    state.withLock { $0.failedReloads += 1 }
  }

  /// Records a start attempt that failed transiently: `/status` shows `waiting` (its heartbeat is
  /// the attempt's time, so a retry loop that hangs shows as stalled).
  func stillWaiting(_ waiting: WatchStatus) {
    state.withLock { $0.waiting = waiting }
  }

  /// The engine could be made at last; it replaces the waiting status.
  func started(_ engine: WatchEngine) {
    state.withLock { $0.engine = engine }
  }

  /// A SIGHUP while there is no engine yet: the next start attempt uses `settings`.
  func reloadedWhileWaiting(settings: AgentSettings) {
    state.withLock {
      $0.settings = settings
      $0.reloads += 1
    }
  }

  /// Whether the engine's event loop (or, before there is one, the start retry loop) is alive at
  /// `now` (see ``WatchStatus/isStalled(at:)``): the systemd watchdog is pinged only then.
  func isAlive(at now: Date = Date()) -> Bool {
    !status().isStalled(at: now)
  }
}

/// Answers the health endpoint from the current engine's status snapshot.
struct AgentHealthSource: HealthSource {
  let current: CurrentEngine
  let metrics = SnapshotMetrics()

  func health() -> HealthVerdict {
    Self.verdict(for: current.status(), now: Date())
  }

  /// The `/healthz` verdict for one status snapshot: a stalled event loop first, then a
  /// replication lag over its bound, then the engine's own verdict, then a target that is down.
  static func verdict(for status: WatchStatus, now: Date) -> HealthVerdict {
    if status.isStalled(at: now) {
      return .unhealthy("engine event loop stalled: no heartbeat for \(Int(status.heartbeatAge(at: now))) s")
    }
    // A change held back longer than max-lag, whatever the reason (a failing path, the target down).
    if let lag = status.lagProblem { return .unhealthy(lag) }
    // The engine tolerates a few retries; the agent also reports red while the backup cannot
    // happen at all: the target is unreachable or refuses the login (until a transfer succeeds).
    let targetDown = status.consecutiveFailures > 0 && status.lastErrorKind?.meansTargetDown == true
    if status.isHealthy(at: now) && !targetDown {
      let notes = [heldDeletes(status), status.massChangeAlarm?.summary].compactMap { $0 }
      return notes.isEmpty ? .healthy : .degraded(notes.joined(separator: "; also: "))
    }
    var reason = "state \(status.state.rawValue)"
    if let kind = status.lastErrorKind { reason += ", last error (\(kind.rawValue))" }
    if let message = status.lastError { reason += ": \(message)" }
    return .unhealthy(reason)
  }

  /// What a healthy engine holding deletes back (the delete limit) tells `/healthz`: creates and
  /// changes flow, so it stays 200, but a person has to look.
  static func heldDeletes(_ status: WatchStatus) -> String? {
    guard let held = status.deletesHeld, held > 0 else { return nil }
    let limit = status.deleteLimit.map { " (the limit allows \($0) now)" } ?? ""
    return
      "\(held) delete(s) on the backup held by max-delete\(limit); check why the files are gone from the "
      + "source, then `fleetsync resume --deletes` (see /status deletesHeldPaths)"
  }

  func statusJSON() -> [UInt8] {
    let snapshot = current.snapshot
    let document = AgentStatusDocument(
      engine: current.status(), source: snapshot.settings.watch.source,
      target: snapshot.settings.watch.target.url, healthy: health().isHealthy, reloads: snapshot.reloads,
      failedReloads: snapshot.failedReloads)
    do {
      return try document.json()
    } catch {
      return Array("{\"error\":\"status could not be encoded\"}\n".utf8)
    }
  }

  func metricsText() -> [UInt8] {
    let snapshot = current.snapshot
    let status = current.status()
    let prefix = "fleetsync_watch_"
    metrics.recordLevel(prefix + "up", help: "1 when /healthz reports healthy", health().isHealthy ? 1 : 0)
    metrics.recordLevel(prefix + "watches", help: "inotify watches held", Double(status.watches))
    metrics.recordLevel(prefix + "queue_depth", help: "paths waiting to be sent", Double(status.queueDepth))
    metrics.recordLevel(prefix + "in_flight", help: "paths in running transfers", Double(status.inFlight))
    metrics.recordLevel(
      prefix + "lag_seconds", help: "age of the oldest path not yet sent", status.oldestPendingAgeSeconds ?? 0
    )
    metrics.recordLevel(
      prefix + "failing_paths", help: "paths that cannot be sent to the backup (rsync exit 23)",
      Double(status.failingPathCount ?? 0))
    metrics.recordLevel(
      prefix + "mass_change_alarm", help: "1 while a mass-change alarm stands (pruning of versions held)",
      status.massChangeAlarm == nil ? 0 : 1)
    metrics.recordLevel(
      prefix + "consecutive_failures", help: "transfer failures since the last success",
      Double(status.consecutiveFailures))
    metrics.recordLevel(
      prefix + "last_success_timestamp_seconds", help: "Unix time of the last successful transfer",
      status.lastSuccess?.timeIntervalSince1970 ?? 0)
    metrics.recordLevel(
      prefix + "heartbeat_age_seconds", help: "seconds since the engine loop last showed life",
      Date().timeIntervalSince(status.heartbeat))
    metrics.recordTotal(prefix + "files_sent_total", help: "files sent", status.filesSent)
    metrics.recordTotal(prefix + "bytes_sent_total", help: "bytes sent", status.bytesSent)
    metrics.recordTotal(prefix + "transfers_total", help: "rsync transfers run", status.transfers)
    metrics.recordTotal(
      prefix + "failed_transfers_total", help: "rsync transfers that failed", status.failedTransfers)
    metrics.recordTotal(prefix + "retries_total", help: "transfer retries", status.retries)
    metrics.recordTotal(prefix + "overflows_total", help: "inotify queue overflows", status.overflows)
    metrics.recordTotal(prefix + "full_syncs_total", help: "full tree syncs run", status.fullSyncs)
    metrics.recordTotal(prefix + "reloads_total", help: "successful config reloads", snapshot.reloads)
    metrics.recordTotal(
      prefix + "failed_reloads_total", help: "rejected config reloads", snapshot.failedReloads)
    return metrics.exposition()
  }
}
