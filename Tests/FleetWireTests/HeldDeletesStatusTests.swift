import FleetHealth
import FleetWatch
import FleetWire
import Foundation
import Testing

@testable import FleetAgent
@testable import FleetProvision

/// Held deletes travel from the agent's `/status` to `fleetsync status`, which names the command
/// that releases them; the watcher stays healthy meanwhile (creates and changes still flow).
@Suite struct HeldDeletesStatusTests {
  private func heldStatus() -> WatchStatus {
    let now = Date(timeIntervalSince1970: 1_800_000_000)
    var status = WatchStatus(state: .watching, heartbeat: now)
    status.deletesHeld = 2_000
    status.deletesHeldSince = now
    status.deletesHeldPaths = ["bulk"]
    status.deleteLimit = 1_000
    return status
  }

  @Test func statusShowsHeldDeletesAndTheReleaseCommand() throws {
    let json = try AgentStatusDocument(
      engine: heldStatus(), source: "/srv/nfs/home", target: "rsync://h/m", healthy: true, reloads: 0,
      failedReloads: 0
    ).json()
    let decoded = try AgentStatusDocument<WatchStatus>.decode(json: String(decoding: json, as: UTF8.self))
    #expect(decoded.engine == heldStatus())
    var row = ServiceStatus(
      service: ServiceName(.watch, "home:bk1:home"), port: 9700, running: true, healthy: true,
      lagSeconds: nil,
      queueDepth: nil, detail: "")
    row.read(watcherStatus: String(decoding: json, as: UTF8.self), host: "nfs1")
    #expect(
      row.detail.hasPrefix("watching; DELETES HELD: 2000 file(s) (limit 1000) since 2027-01-15T08:00:00Z"))
    #expect(row.detail.contains("e.g. bulk"))
    #expect(row.detail.hasSuffix("`fleetsync resume --deletes --limit nfs1 --directory home`"))
  }

  @Test func heldDeletesKeepTheWatcherHealthyButDegraded() {
    let status = heldStatus()
    let verdict = AgentHealthSource.verdict(for: status, now: status.heartbeat)
    #expect(verdict.isHealthy && verdict.isDegraded)
  }
}
