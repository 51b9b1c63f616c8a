/// The exit statuses of `fleetsync`, and the one mapping from errors and host outcomes to them.
///
/// A command that an error stopped as a whole exits with the status of that error; a multi-host command
/// that ran exits with the status of its hosts' outcomes. `--help` prints ``helpText``.
public enum ExitStatus: Int32, Sendable, CaseIterable {
  /// Every host ok or changed.
  case ok = 0
  /// A local problem stopped the command (secrets or state file unusable, a bug, …).
  case localError = 1
  /// Some host failed (a step failed, an instance did not become healthy, `verify` found a backup
  /// differing from its source, the login or host key was refused); none unreachable.
  case someFailed = 2
  /// Some host unreachable (nothing was done there); none failed.
  case someUnreachable = 3
  /// Both failed and unreachable hosts.
  case failedAndUnreachable = 4
  /// A usage error: bad arguments or options (e.g. `--limit` naming no host, an unreadable `--hosts`
  /// file). Nothing was touched.
  case usage = 64
  /// The inventory is invalid (every problem listed as `FILE:LINE:COLUMN`); no host was contacted.
  case invalidInventory = 65
  /// Cancelled.
  case cancelled = 130

  /// The status of a command that `error` stopped as a whole, by what the error's code means.
  public init(_ error: FleetError) {
    switch error.code.meaning {
    case .invalidInput: self = .usage
    case .invalidInventory: self = .invalidInventory
    case .cancelled: self = .cancelled
    case .unreachable, .auth, .failed: self = .localError
    }
  }

  /// The status of a multi-host command from its hosts' outcomes.
  ///
  /// A refused login or host key counts as failed, not unreachable: like a failed step, it needs a
  /// person to act on that host, while "unreachable" means the network or the host is down and
  /// running the command again later may be all it takes.
  public init(_ outcomes: some Sequence<HostOutcome>) {
    var failed = false
    var unreachable = false
    for outcome in outcomes {
      switch outcome {
      case .ok, .changed: break
      case .failed, .auth: failed = true
      case .unreachable: unreachable = true
      }
    }
    switch (failed, unreachable) {
    case (false, false): self = .ok
    case (true, false): self = .someFailed
    case (false, true): self = .someUnreachable
    case (true, true): self = .failedAndUnreachable
    }
  }

  /// What the status means, for people.
  public var summary: String {
    switch self {
    case .ok: "every host ok or changed"
    case .localError: "a local problem (secrets or state file unusable, ...)"
    case .someFailed: "some host failed (a step failed, not healthy, drift found, login or host key refused)"
    case .someUnreachable: "some host unreachable (nothing was done there), none failed"
    case .failedAndUnreachable: "both failed and unreachable hosts"
    case .usage: "usage error"
    case .invalidInventory: "invalid inventory (no host was contacted)"
    case .cancelled: "cancelled"
    }
  }

  /// Every status with its summary, one per line, in numeric order: for `--help`.
  public static var helpText: String {
    let lines = allCases.map { status in
      let number = String(status.rawValue)
      return "  " + number + String(repeating: " ", count: 5 - number.count) + status.summary
    }
    return "Exit statuses:\n" + lines.joined(separator: "\n")
  }
}
