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

/// The engine's delete limit: the ``DeleteBudget`` behind a lock, its tally saved in the state
/// directory, the operator's release request (`request.release-deletes` in the state directory)
/// and the recount of held deletes.
///
/// Shared by the transfer workers, which ask it about every count of deletes, and the transfer
/// loop, which asks it at every wake (at least once a second) whether a whole-tree count is due.
/// The saved tally is read at the first use, not when the gate is made: a SIGHUP reload makes
/// the new engine while the old one still runs, and reads what the old one saved last.
final class DeleteGate: Sendable {
  private struct State {
    var budget: DeleteBudget
    /// The tally as last read or written; nil until read.
    var saved: DeleteBudget.Tally?
  }

  private let state: Mutex<State>
  private let logger: Logger
  /// The release request file.
  let requestPath: String
  /// The saved tally (``DeleteBudget/File``).
  let tallyPath: String
  private let boot = DeleteBudget.currentBoot()
  /// How often held deletes are counted again by a full sync.
  let reviewInterval: UInt64

  /// The gate for `config`; nil when its limit is `unlimited`.
  init?(config: WatchConfig, logger: Logger, window: UInt64 = DeleteBudget.defaultWindow.saturatingNanos) {
    guard !config.maxDelete.isUnlimited else { return nil }
    state = Mutex(State(budget: DeleteBudget(limit: config.maxDelete, window: window)))
    self.logger = logger
    requestPath = config.stateDir + "/" + OperatorRequest.releaseDeletes.fileName
    tallyPath = config.stateDir + "/" + DeleteBudget.File.name
    reviewInterval = config.deleteReviewInterval.saturatingNanos
  }

  /// Whether a whole-tree count should run now: an operator asked to release held deletes (the
  /// request file appeared), or held deletes are due for a recount.
  func countDue(now: UInt64) -> Bool {
    let asked = access(requestPath, F_OK) == 0
    return withBudget { b in
      if asked && !b.releaseRequested {
        b.releaseRequested = true
        logger.notice(
          "release of held deletes requested; counting them again",
          metadata: ["held": "\(b.held?.count ?? 0)", "request": "\(requestPath)"])
        return true
      }
      return b.recountDue(now: now, interval: reviewInterval)
    }
  }

  /// A full sync listed `listed` files and created `created`, and counted `deletes`.
  func fullSyncCounted(listed: Int, created: Int, deletes: Int) {
    withBudget { $0.fullSyncCounted(listed: listed, created: created, deletes: deletes) }
  }

  /// Decides on `count` counted deletes of `paths` (nil: the whole tree); logs a hold and removes
  /// the release request once a whole-tree count has acted on it.
  func decide(deletes count: Int, paths: [String]?) -> DeleteBudget.Decision {
    withBudget { b in
      // A request withdrawn meanwhile (`fleetsync-watch resume` gave up waiting) releases nothing.
      if b.releaseRequested && access(requestPath, F_OK) != 0 { b.releaseRequested = false }
      let releasing = paths == nil && b.releaseRequested
      let decision = b.decide(deletes: count, paths: paths, now: monotonicNanos(), date: Date())
      if releasing { unlink(requestPath) }
      switch decision {
      case .hold:
        let message =
          "deletes held: \(count) file(s) and directories would be deleted on the backup, more than max_delete "
          + "\(b.limit) allows (\(b.allowed ?? 0) within \(DeleteBudget.windowText), \(usage(b))); "
          + "check why the files are gone, then release with "
          + "`fleetsync resume --deletes` or `fleetsync-watch resume --config CONFIG --deletes`"
        logger.warning(
          "\(message)",
          metadata: ["held": "\(b.held?.count ?? count)", "paths": "\(paths ?? [])"])
      case .apply(let cap) where releasing:
        logger.notice("held deletes released by an operator", metadata: ["deletes": "\(cap)"])
      case .apply: break
      }
      return decision
    }
  }

  /// Shows `paths` as examples of what a whole-tree hold keeps.
  func held(examples paths: [String]) {
    withBudget { $0.show(examples: paths) }
  }

  /// Copies what is held, and the limit in force, into a status snapshot.
  func fill(_ status: inout WatchStatus) {
    withBudget { b in
      status.deleteLimit = b.allowed
      status.deletesHeld = b.held?.count
      status.deletesHeldSince = b.held?.since
      status.deletesHeldPaths = b.held?.paths
    }
  }

  /// Runs `body` on the budget, read from the state directory at the first call, and saves the
  /// tally when `body` changed it (before the caller acts on a decision).
  private func withBudget<R>(_ body: (inout DeleteBudget) -> R) -> R {
    state.withLock { s in
      if s.saved == nil { load(&s) }
      let result = body(&s.budget)
      if s.budget.tally != s.saved {
        save(s.budget.tally)
        s.saved = s.budget.tally
      }
      return result
    }
  }

  private func load(_ s: inout State) {
    let now = DeleteBudget.Moment(monotonic: monotonicNanos(), date: Date())
    var tally: DeleteBudget.Tally
    do {
      tally =
        try DeleteBudget.loadTally(path: tallyPath, boot: boot, now: now, window: s.budget.window) ?? .init()
    } catch {
      // Unknown is not empty: count the window as full, so nothing more is deleted before it passes.
      tally = DeleteBudget.Tally(fullSince: now)
      let until = now.date.addingTimeInterval(Double(s.budget.window) / 1e9).formatted(.iso8601)
      let message =
        "the delete limit's saved tally \(tallyPath) cannot be read (\(error)): the deletes applied "
        + "before this start are unknown, so every delete is held until \(until) (the limit's "
        + "window is \(DeleteBudget.windowText)); check the state directory's disk (`df`, `dmesg`), then "
        + "look at what is held in /status and release it with `fleetsync resume --deletes` or "
        + "`fleetsync-watch resume --config CONFIG --deletes`; the file is rewritten at the next change"
      logger.error("\(message)")
    }
    s.budget = DeleteBudget(limit: s.budget.limit, window: s.budget.window, tally: tally)
    s.saved = tally
  }

  private func save(_ tally: DeleteBudget.Tally) {
    do {
      try DeleteBudget.save(tally, path: tallyPath, boot: boot)
    } catch {
      let message =
        "the delete limit's tally cannot be saved to \(tallyPath) (\(error)): a restart would forget "
        + "the deletes applied and held in the last \(DeleteBudget.windowText); check that the state "
        + "directory is writable and not full (`df`, `ls -ld`)"
      logger.error("\(message)")
    }
  }

  /// What the window has used, for the hold's log line.
  private func usage(_ b: DeleteBudget) -> String {
    let now = monotonicNanos()
    if b.windowFull(now: now) { return "counted full: the saved tally could not be read at start" }
    return "\(b.used(now: now)) used"
  }
}
