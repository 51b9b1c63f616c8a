import FleetCore
import FleetInventory
import FleetWatch
import FleetWire
import Foundation
import Testing

@testable import FleetProvision

@Suite("/status: a source hold, as the agent serves it and `fleetsync status` shows it")
struct SourceHoldStatusTests {
  @Test func theHoldAndItsReasonReachTheStatusTable() throws {
    var status = WatchStatus(state: .sourceHeld, heartbeat: Date(timeIntervalSince1970: 1_800_000_000))
    let message =
      "held: the source /srv/a is another directory than the one replicated so far; accept it: "
      + "touch '/var/lib/fleetsync/watch/a/request.accept-source'"
    status.sourceHold = SourceHold(
      kind: .otherDirectory, message: message, since: Date(timeIntervalSince1970: 1_799_999_000))
    #expect(!status.isHealthy(at: status.heartbeat))
    let document = AgentStatusDocument(
      engine: status, source: "/srv/a", target: "rsync://h/m", healthy: false, reloads: 0, failedReloads: 0)
    let json = String(decoding: try document.json(), as: UTF8.self)
    #expect(json.contains(#""sourceHold":{"kind":"otherDirectory""#))
    #expect(try AgentStatusDocument<WatchStatus>.decode(json: json) == document)

    var row = ServiceStatus(
      service: ServiceName(.watch, "a:h:m"), port: 9700, running: true, healthy: false, lagSeconds: nil,
      queueDepth: nil, detail: "")
    row.read(watcherStatus: json)
    #expect(row.detail == "sourceHeld (otherDirectory): " + message)
    let table = StatusTable.render([HostStatus(host: "nfs1", roles: [.source], error: nil, services: [row])])
    #expect(table[1].contains("unhealthy") && table[1].hasSuffix(row.detail))
  }
}
