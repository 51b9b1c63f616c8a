import FleetTestSupport
import Foundation
import Testing

/// Issue 11, "Restart, proven for real", the outages: a backup or a source cut off the network while
/// `fleetsync supervise` runs, and nodes rebooted; on nodes with systemd and without it.
extension ProvisionFleetTests {
  /// The backup cut off: the watcher says it cannot reach its target and is left, pass after pass,
  /// never restarted; what was written meanwhile arrives once the backup is back (the journal). Then
  /// the source cut off: `status` says unreachable (exit 3), supervise tries it again with a backoff
  /// that doubles, and when it is back finds it healthy with no restart.
  @Test(arguments: [false, true])
  func anUnreachableTargetIsLeftAndAnUnreachableHostIsRetried(systemd: Bool) throws {
    guard !systemd || TestFleet.systemdSupported else { return }
    let d = try DetectionFleet("detect-net", systemd: systemd)
    defer { d.tearDown() }
    try d.useConnectTimeout(10)
    let supervise = try SuperviseRun(inventory: d.setup.inventory)
    let watcher = try d.watcherPid()
    let systemdRestarts = systemd ? try d.systemdRestarts() : ""
    let name = "watch@\(DetectionFleet.instance)"

    // A pass lasts as long as its slowest host: the SSH connect timeout while the cut host's address
    // is still cached here (then it fails at once, and its backoff skips it in most passes).
    let passes: Duration = .seconds(300)
    try d.fleet.cut(d.backup)
    for i in 1...3 { try d.on(d.source, "echo \(i) > /srv/data/a/during-\(i)") }
    try waitForBlocking("five passes that leave the degraded watcher", within: passes) {
      supervise.actions("s1", name, "leave") >= 5
    }
    #expect(supervise.log().contains("cannot reach the rsync daemon"), "\(supervise.log())")
    #expect(try d.watcherPid() == watcher, "a watcher whose target is down is not restarted")
    try d.fleet.restore(d.backup)
    try waitForBlocking("what was written meanwhile on the backup") {
      try d.fleet.run(on: d.backup, "cd /srv/backup/s1/a && test -f during-1 && test -f during-3").status == 0
    }
    try d.waitAllHealthy()

    try d.fleet.cut(d.source)
    let status = try d.fleetsync(["status"])
    #expect(status.status == 3 && status.stdout.contains("unreachable"), "\(status.stdout)\(status.stderr)")
    try waitForBlocking("three tries of the source", within: passes) {
      Self.backoffs(supervise.log(), host: "s1").count >= 3
    }
    #expect(
      Self.backoffs(supervise.log(), host: "s1").prefix(3) == ["1s", "2s", "4s"], "\(supervise.log())")
    #expect(supervise.value(#"fleetsync_supervise_hosts{outcome="unreachable"}"#) >= 1)
    try d.fleet.restore(d.source)
    try waitForBlocking("supervise finds the source ok again", within: passes) {
      supervise.outcome("s1") == "ok"
    }

    for action in ["start", "restart"] {
      #expect(supervise.actions("s1", name, action) == 0, "\(action): \(supervise.metrics())")
    }
    #expect(!supervise.log().contains("] restarted") && !supervise.log().contains("] started"))
    #expect(try d.watcherPid() == watcher)
    if systemd {
      #expect(try d.systemdRestarts() == systemdRestarts)
    } else {
      #expect(!(try d.watcherLog().contains("is hung")))
    }
    try d.arrives("after-outages")
    try supervise.stop()
  }

  /// A node rebooted the hard way (every process killed at once, then booted on the same disks):
  /// with systemd, the enabled units start at boot; without it, the boot script's rc link does, run
  /// as sysvinit runs it. Everything is healthy again without `heal`, and a new file arrives.
  @Test(arguments: [false, true])
  func rebootedNodesComeBackByThemselves(systemd: Bool) throws {
    guard !systemd || TestFleet.systemdSupported else { return }
    let d = try DetectionFleet("detect-reboot", systemd: systemd)
    defer { d.tearDown() }
    let before = [try d.watcherPid(), try d.daemonPid()]
    try d.fleet.reboot(d.backup)
    try d.fleet.reboot(d.source)
    if !systemd {
      for node in [d.backup, d.source] {
        let boot = try d.fleet.run(
          on: node,
          "for s in /etc/rc2.d/S*fleetsync; do env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \"$s\" start </dev/null; done"
        )
        #expect(boot.status == 0, "\(node): \(boot.output)")
      }
    }
    try d.waitAllHealthy()
    let after = [try d.watcherPid(), try d.daemonPid()]
    #expect(
      after.allSatisfy { !$0.isEmpty } && zip(before, after).allSatisfy { $0 != $1 }, "\(before) \(after)")
    try d.arrives("after-reboot")
  }

  /// The backoffs supervise logged for `host` not reached, in order (`1s`, `2s`, …).
  static func backoffs(_ log: String, host: String) -> [String] {
    log.split(separator: "\n").filter { $0.contains("host not reached") && $0.contains(" host=\(host) ") }
      .compactMap { line in line.firstMatch(of: #/ backoff=(\S+)/#).map { String($0.1) } }
  }
}
