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

/// The engine's delete limit: the ``DeleteBudget`` behind a lock, the operator's release request
/// (`request.release-deletes` in the state directory) and the recount of held deletes.
///
/// Shared by the transfer workers, which ask it about every count of deletes, and the transfer
/// loop, which asks it at every wake (at least once a second) whether a whole-tree count is due.
final class DeleteGate: Sendable {
  private let budget: Mutex<DeleteBudget>
  private let logger: Logger
  /// The release request file.
  let requestPath: String
  /// How often held deletes are counted again by a full sync.
  let reviewInterval: UInt64

  /// The gate for `config`; nil when its limit is `unlimited`.
  init?(config: WatchConfig, logger: Logger, window: UInt64 = DeleteBudget.defaultWindow.saturatingNanos) {
    guard !config.maxDelete.isUnlimited else { return nil }
    budget = Mutex(DeleteBudget(limit: config.maxDelete, window: window))
    self.logger = logger
    requestPath = config.stateDir + "/" + OperatorRequest.releaseDeletes.fileName
    reviewInterval = config.deleteReviewInterval.saturatingNanos
  }

  /// Whether a whole-tree count should run now: an operator asked to release held deletes (the
  /// request file appeared), or held deletes are due for a recount.
  func countDue(now: UInt64) -> Bool {
    let asked = access(requestPath, F_OK) == 0
    return budget.withLock { b in
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
    budget.withLock { $0.fullSyncCounted(listed: listed, created: created, deletes: deletes) }
  }

  /// Decides on `count` counted deletes of `paths` (nil: the whole tree); logs a hold and removes
  /// the release request once a whole-tree count has acted on it.
  func decide(deletes count: Int, paths: [String]?) -> DeleteBudget.Decision {
    budget.withLock { b in
      // A request withdrawn meanwhile (`fleetsync-watch resume` gave up waiting) releases nothing.
      if b.releaseRequested && access(requestPath, F_OK) != 0 { b.releaseRequested = false }
      let releasing = paths == nil && b.releaseRequested
      let decision = b.decide(deletes: count, paths: paths, now: monotonicNanos(), date: Date())
      if releasing { unlink(requestPath) }
      switch decision {
      case .hold:
        let message =
          "deletes held: \(count) file(s) would be deleted on the backup, more than max_delete "
          + "\(b.limit) allows (\(b.allowed ?? 0) within \(DeleteBudget.windowText), "
          + "\(b.used(now: monotonicNanos())) used); check why the files are gone, then release with "
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
    budget.withLock { $0.show(examples: paths) }
  }

  /// Copies what is held, and the limit in force, into a status snapshot.
  func fill(_ status: inout WatchStatus) {
    budget.withLock { b in
      status.deleteLimit = b.allowed
      status.deletesHeld = b.held?.count
      status.deletesHeldSince = b.held?.since
      status.deletesHeldPaths = b.held?.paths
    }
  }
}
