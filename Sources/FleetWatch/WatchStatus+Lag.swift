import Foundation

extension WatchStatus {
  /// A path that did not reach the backup and is retried on its own (see `PathQuarantine`).
  public struct FailingPath: Sendable, Codable, Equatable {
    /// The path, relative to the source (`.` for the source root's own attributes; a trailing `/`
    /// for a directory sent whole).
    public var path: String
    /// What rsync said about it.
    public var error: String
    /// How many times in a row it failed.
    public var failures: Int
    /// When it is retried next; nil while its retry runs.
    public var nextRetryAt: Date?

    /// Makes an entry.
    public init(path: String, error: String, failures: Int, nextRetryAt: Date?) {
      self.path = path
      self.error = error
      self.failures = failures
      self.nextRetryAt = nextRetryAt
    }
  }

  /// The most failing paths listed in ``failingPaths``; ``failingPathCount`` counts them all.
  public static let failingPathsShown = 10

  /// The default replication lag bound: five minutes.
  public static let defaultMaxLag: Duration = .seconds(300)

  /// Why the replication lag is unhealthy, for people, or nil while it is within ``maxLagSeconds``.
  ///
  /// Whatever holds a change back counts: the target down, a path that keeps failing, a backlog.
  public var lagProblem: String? {
    guard let bound = maxLagSeconds, let lag = oldestPendingAgeSeconds, lag > bound else { return nil }
    var text = "replication lag \(Int(lag)) s is over max-lag \(Int(bound)) s"
    if let count = failingPathCount, count > 0, let first = failingPaths?.first {
      text +=
        "; \(count) path\(count == 1 ? "" : "s") cannot be sent to the backup, first \"\(first.path)\": "
      text += "\(first.error) (check the path on the backup: owner, mode, a directory in the way)"
    } else if let lastError {
      text += "; last error: \(lastError)"
    }
    return text
  }
}
