import Foundation

/// A point-in-time snapshot of the engine, for the health endpoint and metrics.
public struct WatchStatus: Sendable, Codable, Equatable {
  /// What the engine is doing.
  public enum State: String, Sendable, Codable {
    /// Validating, opening the journal, adding watches.
    case starting
    /// The reconciling full sync at start runs.
    case initialSync
    /// Changes are replicated as they happen.
    case watching
    /// The last transfer failed; the engine waits until ``WatchStatus/nextRetryAt``.
    case retrying
    /// Changes may be missed by inotify (out of watches); periodic full syncs cover the gap.
    case degraded
    /// The engine was cancelled and is winding down.
    case stopping
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
  /// Age of the oldest change not yet replicated: the replication lag.
  public var oldestPendingAgeSeconds: Double?
  /// When a transfer last succeeded.
  public var lastSuccess: Date?
  /// The last error, for people; never holds a secret.
  public var lastError: String?
  /// The last error's kind: `auth`, `unreachable`, `timeout`, `partial`, `watchLimit`, `overflow`, `rsync`, `io`.
  public var lastErrorKind: String?
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

  /// Failures in a row after which retrying no longer counts as healthy.
  public static let unhealthyFailureCount = 10
  /// How old the heartbeat may be before the event loop counts as stalled.
  public static let heartbeatStallSeconds: Double = 10

  /// Whether the engine does its job: watching (or syncing) and transfers succeed or retry within
  /// bounds. False on an auth failure, when out of watches, or when the event loop stalled.
  public var isHealthy: Bool {
    switch state {
    case .starting, .initialSync, .watching, .retrying: break
    case .degraded, .stopping: return false
    }
    if -heartbeat.timeIntervalSinceNow > Self.heartbeatStallSeconds { return false }
    if consecutiveFailures > 0 && lastErrorKind == "auth" { return false }
    if lastErrorKind == "watchLimit" { return false }
    return consecutiveFailures < Self.unhealthyFailureCount
  }
}
