import FleetCore
import FleetWatch

/// Why the agent could not make its engine, and whether waiting can help: the one place that
/// decides which start errors are transient.
///
/// A transient error (the source is not mounted yet at boot, the state directory cannot be written
/// because `/var` is full) must not end the agent: the unit would not restart it after exit 64 and
/// protection would stay off until someone ran `fleetsync up`. The agent waits instead, unhealthy,
/// and retries. Everything else is a config that can never work: exit 64, nothing started.
enum StartFailure: Error, Equatable, CustomStringConvertible {
  /// The config can never work as it is (a bad value, a password file others can read): exit 64.
  case permanent(String)
  /// It may pass by itself: the agent waits in `state`, unhealthy, and retries.
  case transient(state: WatchStatus.State, reason: String)

  /// The error codes that may pass by themselves, and the state the agent waits in for each.
  static let transientCodes: [FleetError.Code: WatchStatus.State] = [
    // Missing, not a directory or unreadable: a data filesystem mounted late looks like this.
    .watchSource: .waitingForSource,
    // The journal's directory cannot be created or written: a full or read-only /var.
    .watchState: .startFailed,
  ]

  /// Classifies an error from making the engine (`WatchEngine.init`).
  init(_ error: any Error) {
    let message = WatchAgent.describe(error)
    if let fleet = error as? FleetError, let state = Self.transientCodes[fleet.code] {
      self = .transient(state: state, reason: message)
    } else {
      self = .permanent(message)
    }
  }

  /// The message for people.
  var description: String {
    switch self {
    case .permanent(let message), .transient(_, let message): message
    }
  }

  /// Whether waiting can help.
  var isTransient: Bool {
    if case .transient = self { return true }
    return false
  }
}
