/// What goes in and out of a ``TransferDispatcher``.
extension TransferDispatcher {
  enum Event: Equatable {
    /// Changes arrived, or time passed (a timer the dispatcher asked for, a retry being due): look again.
    case wake
    /// A reconciling full sync was asked for (SIGUSR1, an inotify queue overflow).
    case fullSyncRequested
    /// Paths to recheck (found by the catch-up scan at start).
    case recheck([SyncPath])
    /// A transfer ended.
    case finished(id: Int, outcome: TransferOutcome)
    /// The engine stops: nothing new starts, and outcomes from now on say nothing about the target.
    case stop
  }

  /// What the engine records (status, logs) because of an event.
  enum Effect: Equatable {
    /// The first full sync started, or was deferred (and the engine is not degraded).
    case initialSyncStarted
    /// The full sync at start waits for an idle moment (see ``startFullSyncNotAfter``).
    case startFullSyncDeferred
    /// A full sync started.
    case fullSyncStarted
    /// A full sync ended well enough (ok, or partial) to count as done.
    case fullSyncFinished(TransferOutcome)
    /// A transfer ended with this outcome.
    case finished(TransferOutcome)
    /// A transfer did not fail: no backoff is pending.
    case steady
    /// Nothing new starts for `delay` (the `failures`-th step of the backoff) because of `outcome`.
    case backingOff(delay: Duration, failures: Int, outcome: TransferOutcome)
    /// `path` did not reach the backup (its `failures`-th time alone); retried alone in `retryIn`.
    case quarantined(path: SyncPath, failures: Int, retryIn: Duration, error: String)
    /// `path`, which had failed `failures` times, reached the backup.
    case released(path: SyncPath, failures: Int)
  }
}
