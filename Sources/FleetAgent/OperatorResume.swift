import FleetCore
import FleetWatch
import FleetWire
import Foundation

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// `fleetsync-watch resume`: hands operator requests (``FleetWire/OperatorRequest``) to the
/// watcher of one config and waits, bounded, for its engine to act on them.
///
/// Each request is written atomically into the watcher's state directory; the engine removes it
/// once it has acted. A request not taken within the wait is withdrawn (removed again), so an
/// operator's word never lingers to act later on something the operator did not see.
public enum OperatorResume {
  /// How one request fared.
  public enum Outcome: String, Sendable, Equatable {
    /// The engine acted on it and removed it.
    case taken
    /// Not taken within the wait; withdrawn.
    case withdrawn
  }

  /// The exit status when a request was not taken (EX_TEMPFAIL: try again once the watcher runs).
  public static let notTakenStatus: Int32 = 75
  /// How long to wait for the engine by default.
  public static let defaultWait = Duration.seconds(120)

  /// Writes the requests asked for (release held deletes, accept the source, clear the mass-change
  /// alarm) for the watcher of
  /// `configFile`, waits up to `wait`, prints one line per request to `output`; returns the exit
  /// status (0 all taken, 75 some withdrawn, 64 usage, 1 failure).
  public static func main(
    configFile: String, releaseDeletes: Bool, acceptSource: Bool, clearMassChange: Bool = false,
    wait: Duration, output: @Sendable (String) -> Void, errorOutput: @Sendable (String) -> Void
  ) async -> Int32 {
    let requests =
      (releaseDeletes ? [OperatorRequest.releaseDeletes] : []) + (acceptSource ? [.acceptSource] : [])
      + (clearMassChange ? [.clearMassChange] : [])
    guard !requests.isEmpty else {
      errorOutput(
        "fleetsync-watch: error: say what to resume: --deletes (apply the deletes the delete limit holds) "
          + "and/or --accept-source (accept the source as it is now) and/or --mass-change (clear the "
          + "mass-change alarm)")
      return AgentExitStatus.usage
    }
    let stateDir: String
    do {
      stateDir = try AgentSettings.load(file: configFile).watch.stateDir
    } catch {
      errorOutput("fleetsync-watch: error: \(WatchAgent.describe(error))")
      return AgentExitStatus.usage
    }
    var written: [OperatorRequest] = []
    for request in requests {
      do {
        try write(request, into: stateDir)
        written.append(request)
      } catch {
        errorOutput("fleetsync-watch: error: \(WatchAgent.describe(error))")
        _ = withdraw(written, from: stateDir)
        return AgentExitStatus.failure
      }
    }
    let outcomes = await waitForEngine(written, in: stateDir, wait: wait)
    for request in written {
      let outcome = outcomes[request] ?? .withdrawn
      output("\(request.rawValue): \(message(request, outcome, stateDir: stateDir, wait: wait))")
    }
    return outcomes.values.allSatisfy { $0 == .taken } ? AgentExitStatus.success : notTakenStatus
  }

  /// Writes one request file (mode 600), atomically.
  static func write(_ request: OperatorRequest, into stateDir: String) throws {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: stateDir, isDirectory: &isDirectory), isDirectory.boolValue
    else {
      throw FleetError(
        .agentConfig,
        "the watcher's state directory \(stateDir) does not exist: has this watcher ever run? "
          + "(`fleetsync up` sets it up; `systemctl status 'fleetsync-watch@*'` shows what runs)")
    }
    let body = "requested \(Date().formatted(.iso8601)) by fleetsync-watch resume (pid \(getpid()))\n"
    try AtomicFile.write(Array(body.utf8), to: stateDir + "/" + request.fileName, mode: 0o600)
  }

  /// Polls until the engine removed each request or `wait` passed; withdraws what is left.
  static func waitForEngine(_ requests: [OperatorRequest], in stateDir: String, wait: Duration) async
    -> [OperatorRequest: Outcome]
  {
    let deadline = ContinuousClock.now + wait
    var left = requests
    while !left.isEmpty && ContinuousClock.now < deadline {
      try? await Task.sleep(for: .milliseconds(100))
      left.removeAll { access(stateDir + "/" + $0.fileName, F_OK) != 0 }
    }
    var outcomes = Dictionary(uniqueKeysWithValues: requests.map { ($0, Outcome.taken) })
    for request in withdraw(left, from: stateDir) { outcomes[request] = .withdrawn }
    return outcomes
  }

  /// Removes request files; returns those it removed (the others the engine took meanwhile).
  static func withdraw(_ requests: [OperatorRequest], from stateDir: String) -> [OperatorRequest] {
    requests.filter { unlink(stateDir + "/" + $0.fileName) == 0 }
  }

  static func message(_ request: OperatorRequest, _ outcome: Outcome, stateDir: String, wait: Duration)
    -> String
  {
    switch (request, outcome) {
    case (.releaseDeletes, .taken):
      "taken: the watcher counted the deletes again and applied the held ones "
        + "(unless many more are gone now: then they are held anew; its /status says)"
    case (.acceptSource, .taken):
      "taken: the watcher accepts the source as it is now"
    case (.clearMassChange, .taken):
      "taken: the mass-change alarm is cleared (if one stood) and its prune hold is being removed; "
        + "its /status says"
    case (_, .withdrawn):
      "not taken within \(wait.components.seconds) s, withdrawn: is the watcher running? "
        + "check `systemctl status 'fleetsync-watch@*'` and its log, then run this again "
        + "(state directory \(stateDir))"
    }
  }
}
