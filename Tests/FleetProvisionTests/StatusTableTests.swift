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
    #expect(
      cells(lines[0]) == [
        "HOST", "INSTANCE", "PORT", "STATE", "RESTARTS", "UPTIME", "LAG", "QUEUE", "LAST OK", "LAST ERROR",
        "DETAIL",
      ])
    #expect(
      cells(lines[1]) == [
        "nfs1", "watch@home:bk1:home", "9700", "healthy", "-", "-", "1.5s", "1234", "-", "-", "watching",
      ])
    #expect(
      cells(lines[2]) == [
        "nfs1", "watch@proj:bk1:proj", "9701", "down", "-", "-", "0s", "-", "-", "-", "not running",
      ])
    #expect(cells(lines[3]) == ["bk1", "rsyncd@main", "8730", "healthy", "-", "-"])
    #expect(cells(lines[4]) == ["bk2", "-", "-", "unreachable", "cannot connect"])
  }

  @Test func showsRestartsUptimeAndWhenTheLastTransferAndErrorWere() {
    let now = Date(timeIntervalSince1970: 1_000_000)
    var watcher = hosts[0].services[0]
    watcher.restarts = 2
    watcher.uptimeSeconds = 3 * 86400 + 5
    watcher.lastSuccess = now.addingTimeInterval(-4)
    watcher.lastError = "rsync: connection refused"
    watcher.lastErrorAt = now.addingTimeInterval(-3 * 3600)
    var daemon = hosts[1].services[0]
    daemon.restarts = 0
    daemon.uptimeSeconds = 600
    let lines = StatusTable.render(
      [HostStatus(host: "nfs1", roles: [.source], error: nil, services: [watcher, daemon])], now: now)
    #expect(
      cells(lines[1]) == [
        "nfs1", "watch@home:bk1:home", "9700", "healthy", "2", "3d", "1.5s", "1234", "4s ago", "3h ago",
        "watching",
      ])
    #expect(cells(lines[2]) == ["nfs1", "rsyncd@main", "8730", "healthy", "0", "10m"])
    #expect(
      StatusTable.span(119) == "119s" && StatusTable.span(7199) == "119m"
        && StatusTable.span(172_799) == "47h")
    #expect(StatusTable.summary(hosts) == "2/3 instances healthy; not read: bk2")
  }

  @Test func aHostIsOkOnlyWhenItWasReadAndEveryInstanceIsHealthy() {
    #expect(StatusTable.outcome(hosts[1]) == .ok)
    #expect(StatusTable.outcome(hosts[0]) == .failed("not healthy: watch@proj:bk1:proj"))
    #expect(StatusTable.outcome(hosts[2]).word == "unreachable")
    #expect(ExitStatus(hosts.map(StatusTable.outcome)) == .failedAndUnreachable)
  }
}
