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
}
