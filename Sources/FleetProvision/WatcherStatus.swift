import FleetWatch
import FleetWire

extension ServiceStatus {
  /// Fills lag, queue depth and detail from the body of a watcher's `GET /status` on `host`, decoded
  /// as the agent encodes it (`FleetWire.AgentStatusDocument` of the engine's `WatchStatus`).
  mutating func read(watcherStatus json: some StringProtocol, host: String = "<host>") {
    let document: AgentStatusDocument<WatchStatus>
    do {
      document = try AgentStatusDocument<WatchStatus>.decode(json: json)
    } catch {
      detail = "its /status is not what this fleetsync reads; `fleetsync up` installs the matching agent"
      return
    }
    let status = document.engine
    lagSeconds = status.oldestPendingAgeSeconds
    queueDepth = status.queueDepth
    let state = status.state.rawValue
    detail = healthy ? state : [state, status.lastError].compactMap { $0 }.joined(separator: ": ")
    if !healthy, let lag = status.lagProblem { detail = "\(state): \(lag)" }
    failingPathCount = status.failingPathCount ?? 0
    failingPaths = status.failingPaths ?? []
    senderConfined = status.senderConfined
    lastSuccess = status.lastSuccess
    lastError = status.lastError
    lastErrorAt = status.lastErrorAt
    if let hold = status.sourceHold { detail = "\(state) (\(hold.kind.rawValue)): \(hold.message)" }
    if let held = Self.heldDeletes(status, instance: service.instance, host: host) { detail += "; " + held }
    if let alarm = Self.massChange(status, instance: service.instance, host: host) { detail += "; " + alarm }
  }
}
