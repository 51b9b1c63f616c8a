import FleetCore
import FleetHealth
import FleetWatch
import FleetWire
import Foundation
import Logging
import Testing

@testable import FleetAgent
@testable import FleetProvision

/// A status with every field set; dates in whole seconds, as ISO 8601 carries them.
private func busyStatus() -> WatchStatus {
  let now = Date(timeIntervalSince1970: 1_800_000_000)
  var status = WatchStatus(state: .retrying, heartbeat: now)
  status.watches = 1234
  status.watchSetupSeconds = 0.75
  status.queueDepth = 42
  status.inFlight = 7
  status.oldestPendingAgeSeconds = 3.5
  status.lastSuccess = now.addingTimeInterval(-60)
  status.lastError = "rsync: connection refused by 10.0.0.21"
  status.consecutiveFailures = 3
  status.nextRetryAt = now.addingTimeInterval(4)
  status.filesSent = 10
  status.bytesSent = 1 << 40
  status.transfers = 20
  status.failedTransfers = 3
  status.retries = 3
  status.overflows = 1
  status.fullSyncs = 2
  return status
}

@Suite("/status: what the agent serves, the controller reads")
struct AgentStatusFormatTests {
  @Test func everyFieldSurvivesTheTrip() throws {
    let sent = AgentStatusDocument(
      engine: busyStatus(), source: "/srv/with space", target: "rsync://fs-home@[fd00::22]:8730/home",
      healthy: false, reloads: 2, failedReloads: 1)
    let json = String(decoding: try sent.json(), as: UTF8.self)
    #expect(
      json.hasSuffix("}\n") && !json.dropLast().contains("\n"), "one line, as the status probe reads it")
    #expect(try AgentStatusDocument<WatchStatus>.decode(json: json) == sent)
  }

  /// The agent's real `/status` body (a real engine, as the agent wires it) read by the controller.
  @Test func theControllerReadsTheAgentsRealStatus() throws {
    let scratch = NSTemporaryDirectory() + "fleetsync-status-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: scratch + "/source", withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: scratch) }
    let settings = try AgentSettings.parse(
      "source = \(scratch)/source\ntarget = rsync://fs-home@127.0.0.1:9/home\nstate-dir = \(scratch)/state\n",
      file: "w.conf")
    let engine = try WatchEngine(config: settings.watch, logger: Logger(label: "test"))
    let source = AgentHealthSource(
      current: CurrentEngine(engine: engine, settings: settings))
    let json = String(decoding: source.statusJSON(), as: UTF8.self)

    let document = try AgentStatusDocument<WatchStatus>.decode(json: json)
    #expect(document.source == scratch + "/source")
    #expect(document.target == "rsync://fs-home@127.0.0.1:9/home")
    #expect(document.healthy == source.health().isHealthy)
    #expect(document.engine.state == engine.status().state)
    #expect(document.engine.queueDepth == engine.status().queueDepth)

    var row = ServiceStatus(
      service: ServiceName(.watch, "home:bk1:home"), port: 9700, running: true, healthy: true,
      lagSeconds: nil,
      queueDepth: nil, detail: "")
    row.read(watcherStatus: json.dropLast())
    #expect(row.queueDepth == engine.status().queueDepth)
    #expect(row.detail == engine.status().state.rawValue)
  }

  @Test func theControllerShowsLagQueueAndTheLastErrorOfAnUnhealthyWatcher() throws {
    let json = try AgentStatusDocument(
      engine: busyStatus(), source: "/srv/a", target: "rsync://h/m", healthy: false, reloads: 0,
      failedReloads: 0
    ).json()
    var row = ServiceStatus(
      service: ServiceName(.watch, "a:h:m"), port: 9700, running: true, healthy: false, lagSeconds: nil,
      queueDepth: nil, detail: "")
    row.read(watcherStatus: String(decoding: json, as: UTF8.self))
    #expect(row.lagSeconds == 3.5)
    #expect(row.queueDepth == 42)
    #expect(row.detail == "retrying: rsync: connection refused by 10.0.0.21")
  }

  @Test func aHealthyWatcherShowsWhereItsEventsComeFrom() throws {
    var row = ServiceStatus(
      service: ServiceName(.watch, "a:h:m"), port: 9700, running: true, healthy: true, lagSeconds: nil,
      queueDepth: nil, detail: "")
    var status = busyStatus()
    status.state = .watching
    status.eventBackend = "fanotify"
    let json = try AgentStatusDocument(
      engine: status, source: "/srv/a", target: "rsync://h/m", healthy: true, reloads: 0, failedReloads: 0
    ).json()
    row.read(watcherStatus: String(decoding: json, as: UTF8.self))
    #expect(row.detail == "watching (fanotify)")
    #expect(row.eventBackend == "fanotify")
  }

  @Test func aStatusTheControllerCannotReadSaysSo() {
    var row = ServiceStatus(
      service: ServiceName(.watch, "a:h:m"), port: 9700, running: true, healthy: true, lagSeconds: nil,
      queueDepth: nil, detail: "")
    row.read(watcherStatus: #"{"state":"watching"}"#)
    #expect(row.queueDepth == nil)
    #expect(row.detail.contains("`fleetsync up` installs the matching agent"))
  }
}
