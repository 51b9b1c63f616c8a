import Foundation
import Logging
import Synchronization

extension TransferLoop {
  /// Shows the quarantine in the status (count, the first few, the lag they cause); returns
  /// whether it is not empty.
  func publish(_ quarantine: PathQuarantine) -> Bool {
    let now = monotonicNanos()
    let wall = Date()
    let failing = quarantine.failing
    core.failingSince.withLock { $0 = quarantine.oldestSince }
    let shown = failing.prefix(WatchStatus.failingPathsShown).map { entry in
      WatchStatus.FailingPath(
        path: entry.sends.first.map(Self.shown) ?? "", error: entry.error, failures: entry.failures,
        nextRetryAt: entry.transfer != nil
          ? nil : wall.addingTimeInterval(entry.retryAt > now ? Double(entry.retryAt - now) / 1e9 : 0))
    }
    core.update {
      $0.failingPathCount = failing.count
      $0.failingPaths = Array(shown)
    }
    return !quarantine.isEmpty
  }

  /// How `/status` names a path: relative to the source, `.` for the root, a `/` after a tree.
  static func shown(_ path: SyncPath) -> String {
    switch path {
    case .root: "."
    case .entry(let p): p.description
    case .tree(let p): p.description + "/"
    }
  }

  func quarantined(_ path: SyncPath, failures: Int, retryIn: Duration, error: String) {
    logger.log(
      level: failures == 1 ? .warning : .error,
      "a path did not reach the backup; it is retried on its own while the rest flows (check it on the backup: owner, mode, a directory in its way)",
      metadata: [
        "path": "\(Self.shown(path))", "failures": "\(failures)", "retryIn": "\(retryIn)",
        "error": "\(error)",
      ])
  }
}
