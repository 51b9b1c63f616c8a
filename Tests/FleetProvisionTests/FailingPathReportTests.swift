import FleetInventory
import FleetWatch
import FleetWire
import Foundation
import Testing

@testable import FleetProvision

/// How `up` and `status` report a watcher's paths that cannot be sent.
@Suite struct FailingPathReportTests {
  static func statusJSON(failing: Int) throws -> String {
    var engine = WatchStatus(state: .watching)
    engine.failingPathCount = failing
    engine.failingPaths = (0..<min(failing, WatchStatus.failingPathsShown)).map {
      WatchStatus.FailingPath(
        path: "dir/f\($0)",
        error: "rsync: [receiver] mkstemp \"dir/.f\($0).AbCdEf\" (in m) failed: Permission denied (13)",
        failures: 3, nextRetryAt: Date(timeIntervalSince1970: 1_800_000_000))
    }
    let document = AgentStatusDocument(
      engine: engine, source: "/srv/a", target: "rsync://fs-m@bk1:8730/m", healthy: true, reloads: 0,
      failedReloads: 0)
    return String(decoding: try document.json().dropLast(), as: UTF8.self)
  }

  @Test func theWaitScriptChecksAWatchersPathsAfterItAnswers() {
    let watch = DesiredService(name: ServiceName(.watch, "a:bk1:m"), port: 9700, configHash: "")
    let rsyncd = DesiredService(name: ServiceName(.rsyncd, "main"), port: 8730, configHash: "")
    let script = HealthProbe.waitScript([rsyncd, watch], seconds: 7)
    #expect(script.contains("settled 9700"))
    #expect(!script.contains("settled 8730"))
  }

  @Test func aFailingLineBecomesAReasonWithWhatToDo() throws {
    let json = try Self.statusJSON(failing: 2)
    #expect(json.contains("\"failingPathCount\":2"), "the wait script greps for this: \(json)")
    let failures = HealthProbe.failures(in: "watch@a:bk1:m \(HealthProbe.failingMarker)\(json)\n")
    let reason = try #require(failures["watch@a:bk1:m"])
    #expect(
      reason.hasPrefix(
        "2 paths cannot be sent to rsync://fs-m@bk1:8730/m (first \"dir/f0\": rsync: [receiver] mkstemp"))
    #expect(reason.contains("`uid`/`gid`") && reason.contains("run `fleetsync up` again"))
  }

  @Test func statusListsTheFirstFailingPathsBelowTheTable() throws {
    var row = ServiceStatus(
      service: ServiceName(.watch, "a:bk1:m"), port: 9700, running: true, healthy: true, lagSeconds: nil,
      queueDepth: nil, detail: "")
    row.read(watcherStatus: try Self.statusJSON(failing: 12))
    #expect(row.failingPathCount == 12 && row.failingPaths.count == 10)
    let lines = StatusTable.render([HostStatus(host: "s1", roles: [.source], error: nil, services: [row])])
    #expect(lines.count == 2 + 2 + 10 + 1)
    #expect(lines[3].hasPrefix("s1 watch@a:bk1:m: 12 paths cannot be sent to the backup"))
    #expect(
      lines[4].hasPrefix("  dir/f0  (3 failures, next retry ") && lines[4].contains("Permission denied (13)"))
    #expect(lines.last == "  … and 2 more")
  }

  @Test func statusWarnsAboutAWatcherWhoseSenderIsNotConfined() throws {
    func row(confined: Bool?) throws -> ServiceStatus {
      var engine = WatchStatus(state: .watching)
      engine.senderConfined = confined
      let document = AgentStatusDocument(
        engine: engine, source: "/srv/a", target: "rsync://fs-m@bk1:8730/m", healthy: true, reloads: 0,
        failedReloads: 0)
      var row = ServiceStatus(
        service: ServiceName(.watch, "a:bk1:m"), port: 9700, running: true, healthy: true, lagSeconds: nil,
        queueDepth: nil, detail: "")
      row.read(watcherStatus: String(decoding: try document.json(), as: UTF8.self))
      return row
    }
    let open = try row(confined: false)
    #expect(open.senderConfined == false)
    let lines = StatusTable.render([HostStatus(host: "s1", roles: [.source], error: nil, services: [open])])
    #expect(lines.contains { $0.hasPrefix("not confined to the source") && $0.contains("s1 watch@a:bk1:m") })
    for confined in [true, nil] as [Bool?] {
      let quiet = StatusTable.render([
        HostStatus(host: "s1", roles: [.source], error: nil, services: [try row(confined: confined)])
      ])
      #expect(!quiet.contains { $0.contains("not confined") })
    }
  }
}
