import FleetHealth
import FleetWatch
import Foundation
import Logging
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
    let verdict = AgentHealthSource.verdict(for: try Self.status(now: now), now: now)
    #expect(verdict == .healthy)
  }

  @Test func staleHeartbeatIsUnhealthy() throws {
    let now = Date()
    let age = WatchStatus.heartbeatStallSeconds + 2
    let verdict = AgentHealthSource.verdict(for: try Self.status(heartbeatAge: age, now: now), now: now)
    #expect(!verdict.isHealthy)
    #expect(verdict.reason == "engine event loop stalled: no heartbeat for \(Int(age)) s")
  }

  @Test(arguments: ["unreachable", "auth"])
  func targetDownIsUnhealthyAtTheFirstFailure(kind: String) throws {
    let now = Date()
    let verdict = AgentHealthSource.verdict(
      for: try Self.status(state: "retrying", failures: 1, kind: kind, now: now), now: now)
    #expect(!verdict.isHealthy)
    #expect(verdict.reason.contains("last error (\(kind)): rsync failed for module data"))
  }

  /// Held deletes keep the engine healthy (creates and changes flow) but degraded: a person must look.
  @Test func heldDeletesAreHealthyButDegraded() throws {
    let now = Date()
    var status = try Self.status(now: now)
    status.deletesHeld = 2000
    status.deleteLimit = 1000
    let verdict = AgentHealthSource.verdict(for: status, now: now)
    #expect(verdict.isHealthy && verdict.isDegraded)
    #expect(
      verdict.reason.contains("2000 delete(s) on the backup held by max-delete (the limit allows 1000 now)"))
    #expect(verdict.reason.contains("fleetsync resume --deletes"))
    status.deletesHeld = nil
    #expect(AgentHealthSource.verdict(for: status, now: now) == .healthy)
  }

  @Test func anOldErrorAfterASuccessDoesNotCount() throws {
    let now = Date()
    let status = try Self.status(failures: 0, kind: "unreachable", now: now)
    let verdict = AgentHealthSource.verdict(for: status, now: now)
    #expect(verdict.isHealthy == status.isHealthy(at: now))
  }

  /// The verdict, the watchdog, the engine's own health and the systemd status line agree on when
  /// the event loop is stalled, on either side of the one threshold.
  @Test(arguments: [-1.0, 1.0])
  func oneStallThresholdForVerdictWatchdogAndStatus(offset: TimeInterval) throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("agent-stall-\(UUID())").path
    try FileManager.default.createDirectory(atPath: dir + "/src", withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let config = WatchConfig(
      source: dir + "/src", target: try RsyncTarget.parse("rsync://h/m"), stateDir: dir + "/state")
    let engine = try WatchEngine(config: config, logger: Logger(label: "test"))
    let current = CurrentEngine(engine: engine, settings: AgentSettings(watch: config))
    let status = engine.status()
    let now = status.heartbeat.addingTimeInterval(WatchStatus.heartbeatStallSeconds + offset)
    let stalled = offset > 0

    #expect(status.isStalled(at: now) == stalled)
    #expect(AgentHealthSource.verdict(for: status, now: now).reason.contains("stalled") == stalled)
    #expect(current.isAlive(at: now) == !stalled)
    #expect(NotifierService.statusLine(status, now: now).contains("event loop stalled") == stalled)
    #expect(status.isHealthy(at: now) == !stalled)
  }

  /// `/status` keeps the strings controllers already read for every error kind.
  @Test func errorKindsKeepTheirJSONStrings() throws {
    let expected = ["auth", "unreachable", "timeout", "partial", "watchLimit", "overflow", "rsync", "io"]
    #expect(WatchStatus.ErrorKind.allCases.map(\.rawValue) == expected)
    for kind in WatchStatus.ErrorKind.allCases {
      var status = WatchStatus(state: .retrying)
      status.lastErrorKind = kind
      let json = try JSONSerialization.jsonObject(with: JSONEncoder().encode(status)) as? [String: Any]
      #expect(json?["lastErrorKind"] as? String == kind.rawValue)
    }
    #expect(Set(WatchStatus.ErrorKind.allCases.filter(\.meansTargetDown)) == [.unreachable, .auth])
  }
}
