import FleetWire
import Foundation
import Logging
import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// The source guard in the transfer loop: looked at before every dispatch (so before every
/// transfer, and at least every second), it says whether transfers may run, and keeps the hold,
/// the status, the log and the recorded identity (see ``SourceGuard`` for the policy).
///
/// It also acts on ``OperatorRequest/acceptSource``: the source as it is now becomes the recorded
/// source, and transfers resume with a full sync.
struct SourceGate {
  let core: EngineCore
  let excludes: ExcludeMatcher
  let probe: BackupProbe
  private(set) var hold: SourceHold?
  /// What the last check that let transfers run saw.
  private var passed: SourceIdentity?
  /// Transfers finished when the backup was last listed empty, while the source stayed empty since.
  private var backupEmptyAsOf: UInt64?

  /// The gate for `core`'s source; the backup is listed with `command` (the engine's, so confined).
  init(core: EngineCore, command: RsyncCommand) {
    self.core = core
    excludes = ExcludeMatcher(core.config.excludes)
    probe = BackupProbe(command: command)
  }

  /// What a check found.
  enum Result: Equatable {
    /// Transfers may run.
    case open
    /// Transfers may run again after a hold: a full sync must come first.
    case resumed
    /// Nothing may start.
    case held
  }

  /// Acts on an accept request, then looks at the source.
  mutating func check() async -> Result {
    acceptIfRequested()
    let config = core.config
    let record = core.sourceRecord.withLock { $0 }
    let now = SourceObservation.observe(config.source, excludes: excludes)
    var kind: SourceHold.Kind?
    var detail: String?
    switch SourceGuard.verdict(now, record: record) {
    case .pass(let id):
      passed = id
      if record?.empty == true && !id.empty { save(id, why: "the source now holds data") }
    case .checkBackup(let id):
      (kind, detail) = await backupVerdict()
      if kind == nil { passed = id }
    case .hold(let k):
      kind = k
    }
    if case .present(let id) = now, !id.empty { backupEmptyAsOf = nil }
    if kind == nil, let why = core.flags.withLock({ $0.sourceUnwatched }) {
      kind = .rewatching
      detail = why
    }
    guard let kind else { return release() }
    let message = SourceGuard.message(kind, config: config, record: record, now: now, detail: detail)
    if hold?.kind != kind {
      core.logger.log(
        level: kind == .rewatching ? .notice : .error, "\(message)",
        metadata: ["source": "\(config.source)", "hold": "\(kind.rawValue)"])
      hold = SourceHold(kind: kind, message: message, since: hold?.since ?? Date())
    } else {
      hold?.message = message
    }
    let current = hold
    core.update {
      $0.state = .sourceHeld
      $0.sourceHold = current
    }
    return .held
  }

  /// Ends a hold, if one lasts.
  private mutating func release() -> Result {
    guard let ended = hold else { return .open }
    hold = nil
    core.update { $0.sourceHold = nil }
    let steady = core.steadyState
    core.update { $0.state = steady }
    core.logger.notice(
      "the source \(core.config.source) is back; resuming with a full sync",
      metadata: ["held": "\(ended.kind.rawValue)", "since": "\(ended.since)"])
    return .resumed
  }

  /// Empty source, no record: hold unless the backup is empty too.
  private mutating func backupVerdict() async -> (SourceHold.Kind?, String?) {
    let finished = core.statusBox.withLock { $0.transfers }
    if backupEmptyAsOf == finished { return (nil, nil) }
    switch await probe.contents() {
    case .empty:
      backupEmptyAsOf = finished
      return (nil, nil)
    case .data: return (.backupNotEmpty, nil)
    case .unknown(let kind, let why):
      // A failed attempt to reach the backup, as a failed transfer would be: the status says why.
      core.update {
        $0.recordError(kind, why)
        $0.consecutiveFailures += 1
      }
      return (.backupUnknown, "Listing the backup failed: \(why)")
    }
  }

  /// After a full sync that counted as done: records the source's identity if none is recorded,
  /// provided the source is still what the check before it saw.
  mutating func fullSyncFinished() {
    guard core.sourceRecord.withLock({ $0 == nil }), let passed else { return }
    guard case .present(let id) = SourceObservation.observe(core.config.source, excludes: excludes),
      id.isSameDirectory(as: passed)
    else { return }
    save(id, why: "the first full sync succeeded")
  }

  /// Records `id` as the source, in memory and in the state directory.
  private func save(_ id: SourceIdentity, why: String) {
    do {
      try id.save(stateDir: core.config.stateDir)
      core.sourceRecord.withLock { $0 = id }
      core.logger.notice(
        "recorded the source's identity (\(why)): \(id.summary)",
        metadata: ["source": "\(core.config.source)"])
    } catch {
      let message =
        "cannot record the source's identity in \(core.config.stateDir): \(error); check that it is writable"
      core.logger.error("\(message)")
      core.recordError(kind: .io, message: message)
    }
  }

  /// `request.accept-source` in the state directory: the source as it is now becomes the source.
  private mutating func acceptIfRequested() {
    let request = core.config.stateDir + "/" + OperatorRequest.acceptSource.fileName
    guard access(request, F_OK) == 0 else { return }
    defer { unlink(request) }
    let now = SourceObservation.observe(core.config.source, excludes: excludes)
    guard case .present(let id) = now else {
      let message =
        "cannot accept the source \(core.config.source): the path holds \(now.summary); "
        + "mount or restore it, then ask again"
      core.logger.error("\(message)")
      core.recordError(kind: .io, message: message)
      return
    }
    save(id, why: "accepted by an operator")
    backupEmptyAsOf = nil
  }
}

extension EngineCore {
  /// Reads the recorded source identity from the state directory.
  ///
  /// A record that cannot be read counts as none: an empty source then waits for the backup to be
  /// listed empty (see ``SourceGuard``), so no data is lost by it.
  func loadSourceRecord() {
    do {
      let record = try SourceIdentity.load(stateDir: config.stateDir)
      sourceRecord.withLock { $0 = record }
    } catch {
      let message =
        "the recorded source identity in \(config.stateDir) cannot be read (\(error)); it is recorded anew "
        + "after the next full sync"
      logger.error("\(message)")
    }
  }
}
