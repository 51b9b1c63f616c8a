import FleetCore
import FleetInventory
import Foundation
import Testing

@testable import FleetProvision

@Suite struct StatusTableTests {
  private let hosts = [
    HostStatus(
      host: "nfs1", roles: [.source], error: nil,
      services: [
        ServiceStatus(
          service: ServiceName(.watch, "home:bk1:home"), port: 9700, running: true, healthy: true,
          lagSeconds: 1.5, queueDepth: 1234, detail: "watching"),
        ServiceStatus(
          service: ServiceName(.watch, "proj:bk1:proj"), port: 9701, running: false, healthy: false,
          lagSeconds: nil, queueDepth: nil, detail: "not running"),
      ]),
    HostStatus(
      host: "bk1", roles: [.backup], error: nil,
      services: [
        ServiceStatus(
          service: ServiceName(.rsyncd, "main"), port: 8730, running: true, healthy: true, lagSeconds: nil,
          queueDepth: nil, detail: "")
      ]),
    HostStatus(
      host: "bk2", roles: [.backup],
      error: FleetError(FleetError.Code("ssh.unreachable", meaning: .unreachable), "cannot connect"),
      services: []),
  ]

  /// Splits a table line into its cells (columns are separated by two or more spaces).
  private func cells(_ line: String) -> [String] {
    line.split(separator: "  ", omittingEmptySubsequences: true).map {
      $0.trimmingCharacters(in: .whitespaces)
    }.filter { !$0.isEmpty }
  }

  @Test func showsEveryInstanceWithLagAndQueueDepth() throws {
    let lines = StatusTable.render(hosts)
    #expect(lines.count == 5)
    #expect(cells(lines[0]) == ["HOST", "INSTANCE", "PORT", "STATE", "LAG", "QUEUE", "DETAIL"])
    #expect(
      cells(lines[1]) == ["nfs1", "watch@home:bk1:home", "9700", "healthy", "1.5s", "1234", "watching"])
    #expect(
      cells(lines[2]) == ["nfs1", "watch@proj:bk1:proj", "9701", "down", "0s", "-", "not running"])
    #expect(cells(lines[3]) == ["bk1", "rsyncd@main", "8730", "healthy"])
    #expect(cells(lines[4]) == ["bk2", "-", "-", "unreachable", "cannot connect"])
  }

  @Test func aHostIsOkOnlyWhenItWasReadAndEveryInstanceIsHealthy() {
    #expect(StatusTable.outcome(hosts[1]) == .ok)
    #expect(StatusTable.outcome(hosts[0]) == .failed("not healthy: watch@proj:bk1:proj"))
    #expect(StatusTable.outcome(hosts[2]).word == "unreachable")
    #expect(ExitStatus(hosts.map(StatusTable.outcome)) == .failedAndUnreachable)
  }
}
