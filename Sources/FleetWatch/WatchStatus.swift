import Foundation

/// A point-in-time snapshot of the engine, for the health endpoint and metrics.
public struct WatchStatus: Sendable, Codable, Equatable {
  /// What the engine is doing.
  public enum State: String, Sendable, Codable {
    /// Validating, opening the journal, adding watches.
    case starting
    /// The reconciling full sync at start runs, or waits for an idle moment (see
    /// ``WatchStatus/fullSyncWaitsUntil``); changes are replicated meanwhile.
    case initialSync
    /// Changes are replicated as they happen.
    case watching
    /// The last transfer failed; the engine waits until ``WatchStatus/nextRetryAt``.
    case retrying
    /// Changes may be missed by inotify (out of watches); periodic full syncs cover the gap.
    case degraded
    /// The engine was cancelled and is winding down.
    case stopping
    /// No engine yet: the source is missing, not a directory or unreadable (not mounted yet?); the
    /// agent retries until it is there. ``WatchStatus/lastError`` says what is wrong.
    case waitingForSource
    /// No engine yet: another start error that may pass (the state directory cannot be created or
    /// written, e.g. `/var` is full); the agent retries. ``WatchStatus/lastError`` says what is wrong.
    case startFailed
    /// The source is not the directory replicated so far: nothing is sent or deleted (see
    /// ``WatchStatus/sourceHold``).
    case sourceHeld
  }

  /// What the engine is doing.
  public var state: State
  /// Directories under inotify watch.
  public var watches: Int
  /// Seconds the initial recursive watch setup took.
  public var watchSetupSeconds: Double?
  /// Changed paths accepted (journaled) but not yet in a transfer.
  public var queueDepth: Int
  /// Paths in transfers that are running.
  public var inFlight: Int
  /// Age of the oldest change not yet replicated: the replication lag (quarantined paths included).
  public var oldestPendingAgeSeconds: Double?
  /// The replication lag above which the engine is unhealthy (`max-lag`); nil when none is set.
  public var maxLagSeconds: Double?
  /// Paths that keep failing to reach the backup (rsync exit 23), each retried alone with backoff.
  public var failingPathCount: Int?
  /// The first of them (at most ``failingPathsShown``), oldest first.
  public var failingPaths: [FailingPath]?
  /// When a transfer last succeeded.
  public var lastSuccess: Date?
  /// The last error, for people; never holds a secret.
  public var lastError: String?
  /// What kind of problem ``lastError`` is.
  public var lastErrorKind: ErrorKind?
  /// When ``lastError`` happened (absent in the status of agents older than this field).
  public var lastErrorAt: Date?
  /// Failed transfers since the last success.
  public var consecutiveFailures: Int
  /// When the next retry runs, while retrying.
  public var nextRetryAt: Date?
  /// Regular files rsync transferred.
  public var filesSent: UInt64
  /// Bytes of file data rsync transferred.
  public var bytesSent: UInt64
  /// rsync runs that finished (successful or not).
  public var transfers: UInt64
  /// rsync runs that failed.
  public var failedTransfers: UInt64
  /// Retries after failures.
  public var retries: UInt64
  /// inotify queue overflows seen.
  public var overflows: UInt64
  /// Reconciling full syncs completed.
  public var fullSyncs: UInt64
  /// Updated by the event loop at least every second while it is alive.
  public var heartbeat: Date
  /// Why nothing is sent, while the source guard holds (state ``State/sourceHeld``).
  public var sourceHold: SourceHold?
  /// Whether rsync's sender runs confined to the source (Landlock); false where this kernel cannot
  /// (paths are still checked against symlinks), nil before the engine ran.
  public var senderConfined: Bool?
  /// Where change events come from: `fanotify` or `inotify` (see ``FleetWire/EventBackend``); nil
  /// before the engine set up its watch.
  public var eventBackend: String?
  /// Files the delete limit keeps from being deleted on the backup; nil when none are held.
  public var deletesHeld: Int?
  /// When deletes were first held.
  public var deletesHeldSince: Date?
  /// A few of the paths whose deletion is held, as examples.
  public var deletesHeldPaths: [String]?
  /// The deletes `max-delete` allows now, against the module's files; nil when unlimited.
  public var deleteLimit: Int?
  /// The mass-change alarm, while it stands; nil otherwise.
  public var massChangeAlarm: MassChangeAlarm?
  /// Files deleted or overwritten on the backup within the mass-change window now; nil when the alarm is off.
  public var massChangeRecent: Int?
  /// The precision the last full sync compared mtimes at (see ``TimestampPrecision``): coarser than
  /// ``TimestampPrecision/nanosecond`` when the backup keeps no sub-second times; nil before the first
  /// full sync (and in the status of agents older than this field).
  public var fullSyncTimePrecision: TimestampPrecision?
  /// At a restart that caught up without it, the full sync at start waits for an idle moment, at
  /// most until this time; nil once it started (and when it did not wait).
  public var fullSyncWaitsUntil: Date?

  /// Makes a status; all counters start at zero.
  public init(state: State = .starting, heartbeat: Date = Date()) {
    self.state = state
    self.watches = 0
    self.queueDepth = 0
    self.inFlight = 0
    self.consecutiveFailures = 0
    self.filesSent = 0
    self.bytesSent = 0
    self.transfers = 0
    self.failedTransfers = 0
    self.retries = 0
    self.overflows = 0
    self.fullSyncs = 0
    self.heartbeat = heartbeat
  }

  /// Records an error: its message, its kind and when it happened (now).
  public mutating func recordError(_ kind: ErrorKind, _ message: String, at now: Date = Date()) {
    lastError = message
    lastErrorKind = kind
    lastErrorAt = now
  }

  /// Failures in a row after which retrying no longer counts as healthy.
  public static let unhealthyFailureCount = 10
  /// How old the heartbeat may be before the event loop counts as stalled.
  ///
  /// The one threshold for a stuck loop: ``isHealthy``, the agent's `/healthz` verdict and its
  /// systemd watchdog pings all go by ``isStalled(at:)``. The loop beats at least every 500 ms when
  /// idle; a large read batch with its journal `fdatasync` on a loaded machine can take seconds.
  public static let heartbeatStallSeconds: TimeInterval = 10

  /// Seconds between the last heartbeat and `now`.
  public func heartbeatAge(at now: Date) -> TimeInterval {
    now.timeIntervalSince(heartbeat)
  }

  /// Whether the event loop counts as stuck at `now`: no heartbeat for more than ``heartbeatStallSeconds``.
  public func isStalled(at now: Date) -> Bool {
    heartbeatAge(at: now) > Self.heartbeatStallSeconds
  }

  /// Whether the engine does its job now (see ``isHealthy(at:)``).
  public var isHealthy: Bool { isHealthy(at: Date()) }

  /// Whether the engine does its job at `now`: watching (or syncing) and transfers succeed or retry
  /// within bounds. False on an auth failure, when out of watches, when the event loop stalled, or
  /// while the source guard holds, or when a change has waited longer than ``maxLagSeconds`` to
  /// reach the backup.
  public func isHealthy(at now: Date) -> Bool {
    switch state {
    case .starting, .initialSync, .watching, .retrying: break
    case .degraded, .stopping, .sourceHeld: return false
    case .waitingForSource, .startFailed: return false
    }
    if isStalled(at: now) { return false }
    if consecutiveFailures > 0 && lastErrorKind == .auth { return false }
    if lastErrorKind == .watchLimit { return false }
    if lagProblem != nil { return false }
    return consecutiveFailures < Self.unhealthyFailureCount
  }
}

extension WatchStatus {
  /// What kind of problem ``WatchStatus/lastError`` is.
  ///
  /// The raw values are what `/status` shows and what controllers read: they never change.
  public enum ErrorKind: String, Sendable, Codable, CaseIterable {
    /// The rsync daemon refused the user or the password.
    case auth = "auth"
    /// The rsync daemon cannot be reached (rsync exit 10 or 35).
    case unreachable = "unreachable"
    /// rsync timed out connecting to or talking to the daemon.
    case timeout = "timeout"
    /// Some files changed or vanished while being sent (rsync exit 23 or 24); they are re-queued.
    case partial = "partial"
    /// Out of inotify watches or instances: periodic full syncs cover what cannot be watched.
    case watchLimit = "watchLimit"
    /// The inotify queue overflowed; a rescan and a full sync follow.
    case overflow = "overflow"
    /// rsync failed for another reason.
    case rsync = "rsync"
    /// A local problem: the journal or a transfer list cannot be written, rsync cannot be run,
    /// inotify events cannot be read, the source went away.
    case io = "io"

    /// Whether no backup can happen at all while this is the latest failure: the target cannot
    /// be reached or refuses the login.
    public var meansTargetDown: Bool {
      switch self {
      case .unreachable, .auth: true
      case .timeout, .partial, .watchLimit, .overflow, .rsync, .io: false
      }
    }
  }
}
