import FleetHealth
import FleetWatch
import Foundation
import Testing

@testable import FleetAgent

/// The agent's `/healthz` rules on status snapshots decoded from the engine's own JSON form.
@Suite("Agent health verdict")
struct AgentHealthVerdictTests {
  static func status(
    state: String = "watching", heartbeatAge: TimeInterval = 0, failures: Int = 0, kind: String? = nil,
    now: Date
  ) throws -> WatchStatus {
    var fields: [String: Any] = [
      "state": state, "watches": 10, "queueDepth": 0, "inFlight": 0, "consecutiveFailures": failures,
      "filesSent": 0, "bytesSent": 0, "transfers": 1, "failedTransfers": failures, "retries": failures,
      "overflows": 0, "fullSyncs": 1,
      "heartbeat": now.addingTimeInterval(-heartbeatAge).timeIntervalSinceReferenceDate,
    ]
    if let kind {
      fields["lastErrorKind"] = kind
      fields["lastError"] = "rsync failed for module data"
    }
    return try JSONDecoder().decode(WatchStatus.self, from: JSONSerialization.data(withJSONObject: fields))
  }

  @Test func freshAndWatchingIsHealthy() throws {
    let now = Date()
    let verdict = AgentHealthSource.verdict(for: try Self.status(now: now), now: now, heartbeatMaxAge: 5)
    #expect(verdict == .healthy)
  }

  @Test func staleHeartbeatIsUnhealthyAndStopsTheWatchdog() throws {
    let now = Date()
    let verdict = AgentHealthSource.verdict(
      for: try Self.status(heartbeatAge: 7, now: now), now: now, heartbeatMaxAge: 5)
    #expect(!verdict.isHealthy)
    #expect(verdict.reason == "engine event loop stalled: no heartbeat for 7 s")
  }

  @Test(arguments: ["unreachable", "auth"])
  func targetDownIsUnhealthyAtTheFirstFailure(kind: String) throws {
    let now = Date()
    let verdict = AgentHealthSource.verdict(
      for: try Self.status(state: "retrying", failures: 1, kind: kind, now: now), now: now, heartbeatMaxAge: 5
    )
    #expect(!verdict.isHealthy)
    #expect(verdict.reason.contains("last error (\(kind)): rsync failed for module data"))
  }

  @Test func anOldErrorAfterASuccessDoesNotCount() throws {
    let now = Date()
    let status = try Self.status(failures: 0, kind: "unreachable", now: now)
    let verdict = AgentHealthSource.verdict(for: status, now: now, heartbeatMaxAge: 5)
    #expect(verdict.isHealthy == status.isHealthy)
  }
}
