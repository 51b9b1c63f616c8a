import FleetCore
import Foundation
import Testing

@testable import FleetProvision

/// `fleetsync status --json`: what the table shows, as a document machines read back.
@Suite struct StatusDocumentTests {
  @Test func aDownWatcherFailsItsHostAndShowsAsDown() async throws {
    let fleet = try FakeFleet(systemd: ["bk1"])
    _ = try await fleet.up()
    for host in fleet.hosts.values { host.heal() }
    fleet["nfs2"].change { $0.running = [:] }
    let document = StatusDocument(try await fleet.provisioner().status())
    #expect(!document.ok)
    let hosts = Dictionary(uniqueKeysWithValues: document.hosts.map { ($0.host, $0) })
    #expect(hosts["nfs1"]?.outcome == "ok" && hosts["nfs1"]?.error == nil)
    #expect(hosts["bk1"]?.roles == ["backup"])
    let nfs2 = try #require(hosts["nfs2"])
    #expect(nfs2.outcome == "failed" && nfs2.error?.contains("not healthy: watch@proj:bk1:proj") == true)
    let down = try #require(nfs2.instances.first { $0.instance == "proj:bk1:proj" })
    #expect(down.kind == "watch" && down.state == "down" && !down.running && !down.healthy)
    #expect(down.lagSeconds == nil, "a lag that could not be read is left out: \(down)")
    let daemon = try #require(hosts["bk1"]?.instances.first)
    #expect(daemon.kind == "rsyncd" && daemon.port == 8730 && daemon.state == "healthy")
    #expect(daemon.failingPaths == nil && daemon.queueDepth == nil)
    #expect(daemon.restarts == 0 && daemon.uptimeSeconds == 5, "as the fake node answers: \(daemon)")
    #expect(down.uptimeSeconds == nil, "an instance that does not run has no uptime: \(down)")

    let text = try document.json()
    #expect(try JSONDecoder().decode(StatusDocument.self, from: Data(text.utf8)) == document)
    #expect(!text.contains("\\/"), "paths are not escaped")
  }

  @Test func everyHostOkIsOk() async throws {
    let fleet = try FakeFleet(systemd: ["bk1"])
    _ = try await fleet.up()
    for host in fleet.hosts.values { host.heal() }
    let document = StatusDocument(try await fleet.provisioner().status())
    #expect(document.ok, "\(document)")
    #expect(document.hosts.flatMap(\.instances).allSatisfy { $0.state == "healthy" })
  }

  /// One remote command per host when the controller's port book knows the host's instances; a
  /// second one only for instances it does not know (its state file was lost).
  @Test func aStatusPassIsOneCommandPerHost() async throws {
    let fleet = try FakeFleet(systemd: ["bk1"])
    _ = try await fleet.up()
    for host in fleet.hosts.values { host.heal() }
    func statusCommands() async throws -> [String: Int] {
      let before = fleet.hosts.mapValues { $0.state.steps.count }
      _ = try await fleet.provisioner().status()
      return fleet.hosts.mapValues { $0.state.steps.count }.merging(before) { $0 - $1 }
    }
    #expect(try await statusCommands().values.allSatisfy { $0 == 1 })
    try FileManager.default.removeItem(atPath: try fleet.provisioner().stateFile)
    let again = try await statusCommands()
    #expect(again["nfs1"] == 2 && again["bk1"] == 2, "\(again)")
    let document = StatusDocument(try await fleet.provisioner().status())
    #expect(document.ok, "the second command probed what the book did not know: \(document)")
  }
}
