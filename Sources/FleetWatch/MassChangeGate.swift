import FleetCore
import FleetWire
import Foundation
import Logging
import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// The engine's mass-change alarm: the ``MassChangeDetector`` fed by every rsync run's `--stats`,
/// the alarm kept in the state directory (``MassChangeRecord``), the prune-hold marker on the
/// backup (``MassChangeMarker``) and the operator's clear request (`request.clear-mass-change`).
///
/// Transfer tasks report each run (``note(_:overwrites:)``); the transfer loop calls
/// ``tick(_:)`` at every wake, which takes the clear request and hands back the job that writes or
/// removes the marker when one is due; the loop runs it beside the transfers, never in its way,
/// until it lands (backing off while the daemon refuses).
final class MassChangeGate: Sendable {
  private struct State {
    var detector: MassChangeDetector
    /// The record as last read or written; nil until read.
    var record: MassChangeRecord?
    /// When the marker may be tried again (monotonic ns), and the delay after the next failure.
    var retryAt: UInt64 = 0
    var retryDelay: UInt64 = MassChangeGate.firstRetry
    /// Whether a marker job runs.
    var busy = false
  }

  static let firstRetry: UInt64 = 1_000_000_000
  static let lastRetry: UInt64 = 60_000_000_000

  private let state: Mutex<State>
  private let logger: Logger
  private let stateDir: String
  private let marker: MassChangeMarker
  /// The clear request file.
  let requestPath: String

  /// The gate for `config`. With `off` it raises no alarm, but one that stands (saved before the
  /// setting changed) is still shown, held and cleared.
  init(config: WatchConfig, logger: Logger) {
    state = Mutex(State(detector: MassChangeDetector(limit: config.massChange)))
    self.logger = logger
    stateDir = config.stateDir
    marker = MassChangeMarker(config: config)
    requestPath = config.stateDir + "/" + OperatorRequest.clearMassChange.fileName
  }

  /// Counts what one rsync run deleted and overwrote on the backup (`overwrites` false: only its
  /// deletes count, as when it re-sends what a counting run already sent), and raises the alarm
  /// when the window reaches the threshold.
  func note(_ stdout: String, overwrites: Bool = true) {
    let stats = MassChangeStats(stats: stdout)
    let files = stats.deleted + (overwrites ? stats.overwritten : 0)
    guard files > 0 else { return }
    let now = monotonicNanos()
    withRecord { s in
      s.detector.record(files, now: now)
      guard s.record?.alarm == nil, let trigger = s.detector.check(now: now) else { return }
      let alarm = MassChangeAlarm(
        since: Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down)), count: trigger.count,
        threshold: trigger.threshold, normal: trigger.normal,
        windowSeconds: s.detector.limit.windowSeconds, pruneHeld: false)
      s.record?.alarm = alarm
      s.retryAt = 0
      s.retryDelay = Self.firstRetry
      let message =
        "\(alarm.summary); replication goes on and versions keep the old copies; the prune hold "
        + "\(marker.destination)\(marker.name) is being written"
      logger.error(
        "\(message)",
        metadata: ["deleted": "\(stats.deleted)", "overwritten": "\(stats.overwritten)"])
    }
  }

  /// Takes an operator's clear request; returns the job that writes or removes the prune-hold
  /// marker when one is due and none runs.
  func tick(_ command: RsyncCommand) -> (@Sendable () async -> Void)? {
    let asked = access(requestPath, F_OK) == 0
    let now = monotonicNanos()
    let work: (place: Bool, why: String)? = withRecord { s in
      if asked {
        if let alarm = s.record?.alarm {
          s.record?.alarm = nil
          s.detector.absorb(now: now)
          s.retryAt = 0
          s.retryDelay = Self.firstRetry
          logger.notice(
            "mass-change alarm cleared by an operator; pruning of versions may resume",
            metadata: ["raised": "\(alarm.since.formatted(.iso8601))", "count": "\(alarm.count)"])
        }
        unlink(requestPath)
      }
      guard let record = s.record, !s.busy, now >= s.retryAt else { return nil }
      if let alarm = record.alarm, !alarm.pruneHeld {
        s.record?.markerOnBackup = true
        s.busy = true
        return (true, alarm.summary)
      }
      guard record.alarm == nil && record.markerOnBackup else { return nil }
      s.busy = true
      return (false, "")
    }
    guard let work else { return nil }
    return {
      let problem =
        work.place ? await self.marker.place(command, why: work.why) : await self.marker.remove(command)
      self.finished(place: work.place, problem: problem)
    }
  }

  /// Records how a marker job ended: the marker landed, or when to try again.
  private func finished(place: Bool, problem: String?) {
    withRecord { s in
      s.busy = false
      guard problem == nil else {
        s.retryAt = monotonicNanos() + s.retryDelay
        let message =
          "the mass-change prune hold cannot be \(place ? "written" : "removed") yet: \(problem ?? ""); "
          + "retrying in \(s.retryDelay / 1_000_000_000) s; check that the rsync daemon is up and the "
          + "module's filter allows /.fleetsync-versions/.hold-*"
        logger.warning("\(message)")
        s.retryDelay = min(Self.lastRetry, s.retryDelay * 2)
        return
      }
      s.retryDelay = Self.firstRetry
      if place {
        // Cleared meanwhile: the next tick removes it again.
        s.record?.alarm?.pruneHeld = true
        logger.notice(
          "mass-change prune hold written", metadata: ["marker": "\(marker.destination)\(marker.name)"])
      } else if s.record?.alarm == nil {
        s.record?.markerOnBackup = false
        logger.notice(
          "mass-change prune hold removed", metadata: ["marker": "\(marker.destination)\(marker.name)"])
      }
    }
  }

  /// Copies the alarm and the window's count into a status snapshot.
  func fill(_ status: inout WatchStatus) {
    let now = monotonicNanos()
    withRecord { s in
      status.massChangeAlarm = s.record?.alarm
      status.massChangeRecent = s.detector.limit.isOff ? nil : s.detector.windowCount(now: now)
    }
  }

  /// Runs `body` on the state, the record read from the state directory at the first call, and
  /// saves the record when `body` changed it.
  private func withRecord<R>(_ body: (inout State) -> R) -> R {
    state.withLock { s in
      if s.record == nil { s.record = load() }
      let before = s.record
      let result = body(&s)
      if let record = s.record, record != before { save(record) }
      return result
    }
  }

  private func load() -> MassChangeRecord {
    do {
      return try MassChangeRecord.load(stateDir: stateDir)
    } catch {
      // Unknown is not clear: keep an alarm, so pruning stays held until someone looks.
      let message =
        "the mass-change alarm's record \(stateDir)/\(MassChangeRecord.fileName) cannot be read (\(error)): "
        + "raising the alarm to keep pruning held; check the state directory's disk (`df`, `dmesg`), "
        + "then clear it with `fleetsync resume --mass-change`"
      logger.error("\(message)")
      let alarm = MassChangeAlarm(
        since: Date(), count: 0, threshold: 0, normal: 0, windowSeconds: 0, pruneHeld: false)
      return MassChangeRecord(alarm: alarm, markerOnBackup: true)
    }
  }

  private func save(_ record: MassChangeRecord) {
    do {
      try record.save(stateDir: stateDir)
    } catch {
      let message =
        "the mass-change alarm cannot be saved to \(stateDir)/\(MassChangeRecord.fileName) (\(error)): a "
        + "restart would forget it; check that the state directory is writable and not full (`df`, `ls -ld`)"
      logger.error("\(message)")
    }
  }
}
