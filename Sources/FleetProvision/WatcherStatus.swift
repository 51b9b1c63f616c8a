import FleetWatch
import FleetWire
import Foundation

extension ServiceStatus {
  /// Fills lag, queue depth and detail from the body of a watcher's `GET /status` on `host`, decoded
  /// as the agent encodes it (`FleetWire.AgentStatusDocument` of the engine's `WatchStatus`).
  ///
  /// With `clock` (the host's time, seconds since the epoch), a heartbeat older than the engine's
  /// stall threshold sets ``stalledSeconds``.
  mutating func read(watcherStatus json: some StringProtocol, host: String = "<host>", clock: Int? = nil) {
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
    eventBackend = status.eventBackend
    // Where its events come from, beside a healthy state: `watching (fanotify)`.
    let shown = healthy ? eventBackend.map { "\(state) (\($0))" } ?? state : state
    detail = healthy ? shown : [state, status.lastError].compactMap { $0 }.joined(separator: ": ")
    if !healthy, let lag = status.lagProblem { detail = "\(state): \(lag)" }
    failingPathCount = status.failingPathCount ?? 0
    failingPaths = status.failingPaths ?? []
    senderConfined = status.senderConfined
    let hostNow = clock.map { Date(timeIntervalSince1970: TimeInterval($0)) }
    if let hostNow, !healthy, status.isStalled(at: hostNow) {
      let age = Int(status.heartbeatAge(at: hostNow))
      stalledSeconds = age
      detail = "\(status.state.rawValue): event loop stalled, no heartbeat for \(age) s"
    }
    lastSuccess = status.lastSuccess
    lastError = status.lastError
    lastErrorAt = status.lastErrorAt
    if let hold = status.sourceHold { detail = "\(state) (\(hold.kind.rawValue)): \(hold.message)" }
    if let held = Self.heldDeletes(status, instance: service.instance, host: host) { detail += "; " + held }
    if let alarm = Self.massChange(status, instance: service.instance, host: host) { detail += "; " + alarm }
  }
}
