import FleetCore
import FleetHealth
import FleetWatch
import FleetWire
import Foundation
import Testing

@testable import FleetAgent
@testable import FleetProvision

/// A standing mass-change alarm travels from the agent's `/status` to `fleetsync status`, which
/// names the command that clears it; `/healthz` says degraded with the reason; the agent's config
/// key reads the setting.
@Suite struct MassChangeStatusTests {
  private func alarmStatus() -> WatchStatus {
    let now = Date(timeIntervalSince1970: 1_800_000_000)
    var status = WatchStatus(state: .watching, heartbeat: now)
    status.massChangeAlarm = MassChangeAlarm(
      since: now, count: 4_000, threshold: 500, normal: 12, windowSeconds: 300, pruneHeld: true)
    status.massChangeRecent = 4_100
    return status
  }

  @Test func statusShowsTheAlarmAndTheCommandThatClearsIt() throws {
    let json = try AgentStatusDocument(
      engine: alarmStatus(), source: "/srv/nfs/home", target: "rsync://h/m", healthy: true, reloads: 0,
      failedReloads: 0
    ).json()
    let text = String(decoding: json, as: UTF8.self)
    #expect(text.contains("\"massChangeAlarm\""))
    let decoded = try AgentStatusDocument<WatchStatus>.decode(json: text)
    #expect(decoded.engine == alarmStatus())
    var row = ServiceStatus(
      service: ServiceName(.watch, "home:bk1:home"), port: 9700, running: true, healthy: true,
      lagSeconds: nil, queueDepth: nil, detail: "")
    row.read(watcherStatus: text, host: "nfs1")
    #expect(row.detail.hasPrefix("watching; MASS CHANGE: 4000 file(s) deleted or overwritten on the backup"))
    #expect(row.detail.contains("since 2027-01-15T08:00:00Z, pruning of versions held"))
    #expect(row.detail.hasSuffix("`fleetsync resume --mass-change --limit nfs1 --directory home`"))
  }

  @Test func theAlarmKeepsTheWatcherHealthyButDegraded() {
    let status = alarmStatus()
    let verdict = AgentHealthSource.verdict(for: status, now: status.heartbeat)
    #expect(verdict.isHealthy && verdict.isDegraded)
    #expect(verdict.reason.contains("mass change: 4000 file(s) deleted or overwritten"))
    #expect(verdict.reason.contains("fleetsync resume --mass-change"))
    var both = status
    both.deletesHeld = 3
    let reason = AgentHealthSource.verdict(for: both, now: both.heartbeat).reason
    #expect(reason.contains("mass change") && reason.contains("held by max-delete"))
    let quiet = WatchStatus(state: .watching, heartbeat: status.heartbeat)
    #expect(!AgentHealthSource.verdict(for: quiet, now: quiet.heartbeat).isDegraded)
  }

  @Test func theAgentReadsTheSettingAndRefusesABadOne() throws {
    let head = "source = /srv/data\ntarget = rsync://backup1/data\n"
    #expect(try AgentSettings.parse(head, file: "w.conf").watch.massChange == .default)
    #expect(try AgentSettings.parse(head + "mass-change = off\n", file: "w.conf").watch.massChange.isOff)
    let set = try AgentSettings.parse(head + "mass-change = 50,4x,2m\n", file: "w.conf")
    #expect(set.watch.massChange == MassChangeLimit(minFiles: 50, factor: 4, windowSeconds: 120))
    let error = #expect(throws: FleetError.self) {
      try AgentSettings.parse(head + "mass-change = lots\n", file: "w.conf")
    }
    #expect(error?.message.contains("w.conf:3: mass-change `lots`") == true, "\(error?.message ?? "")")
  }
}
