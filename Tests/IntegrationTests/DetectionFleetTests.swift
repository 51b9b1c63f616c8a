import FleetTestSupport
import Foundation
import Testing

/// Issue 11, "Restart, proven for real": each way an instance fails, on nodes with systemd and on nodes
/// without it, found and repaired by what should repair it (systemd, the pid-file supervisor, `heal`,
/// `supervise`), or reported and left when a restart cannot help; and afterwards a new file arrives.
/// What each path does is in docs/provisioning.md ("What each failure gets").
extension ProvisionFleetTests {
  /// A watcher killed (SIGKILL) or stopped (SIGSTOP) comes back by itself: systemd restarts it (the
  /// watchdog for the stopped one), or its pid-file supervisor does. An rsync daemon killed comes back
  /// by systemd, or by `heal` without systemd (nothing else watches it there); one stopped gives no
  /// greeting and `heal` restarts it.
  @Test(arguments: [false, true])
  func killedOrStoppedInstancesComeBack(systemd: Bool) throws {
    guard !systemd || TestFleet.systemdSupported else { return }
    let d = try DetectionFleet("detect-kill", systemd: systemd)
    defer { d.tearDown() }

    let killed = try d.watcherPid()
    try d.on(d.source, "kill -KILL \(killed)")
    try d.waitReplaced("the killed watcher", killed, d.watcherPid)
    try d.arrives("after-watcher-kill")

    // Only the watcher stops: its supervisor (or systemd's watchdog) sees it hung and restarts it.
    let stopped = try d.watcherPid()
    try d.on(d.source, "kill -STOP \(stopped)")
    try d.waitReplaced("the stopped watcher", stopped, d.watcherPid)
    try d.arrives("after-watcher-stop")
    #expect(try d.watcherLog().contains(systemd ? "Watchdog timeout" : "is hung: stopping it"))

    let daemon = try d.daemonPid()
    try d.on(d.backup, "kill -KILL \(daemon)")
    if systemd {
      try d.waitReplaced("the killed rsync daemon", daemon, d.daemonPid)
    } else {
      try waitForBlocking("status sees the daemon down") {
        try d.fleetsync(["status", "--limit", "bk1"]).stdout.contains("not running")
      }
      let heal = try d.fleetsync(["heal", "--limit", "bk1"])
      #expect(heal.status == 0 && heal.stdout.contains("start"), "\(heal.stdout)\(heal.stderr)")
    }
    try d.arrives("after-daemon-kill")

    let hung = try d.daemonPid()
    try d.on(d.backup, "kill -STOP \(hung)")
    try waitForBlocking("status sees the daemon not answering") {
      try d.fleetsync(["status", "--limit", "bk1"]).stdout.contains("not answering")
    }
    let heal = try d.fleetsync(["heal", "--limit", "bk1", "--json"])
    #expect(heal.status == 0, "\(heal.stdout)\(heal.stderr)")
    #expect(heal.stdout.contains(#""action" : "restart""#), "\(heal.stdout)")
    #expect(try d.daemonPid() != hung)
    try d.arrives("after-daemon-stop")
    try d.waitAllHealthy()
  }

  /// The watcher's health port closed while it runs (a rule in the node's network namespace
  /// refuses connections to it on the loopback; the watcher goes on replicating): status says it does
  /// not answer and it is restarted once, by `heal` (or, without systemd, perhaps first by its
  /// supervisor). The restarted one does not answer either, so nobody restarts it again: `heal` leaves
  /// it and says why, and so does the supervisor. Once the port opens, it is healthy by itself.
  @Test(arguments: [false, true])
  func aClosedHealthPortIsRestartedOnceThenReportedNotLooped(systemd: Bool) throws {
    guard !systemd || TestFleet.systemdSupported else { return }
    let d = try DetectionFleet("detect-port", systemd: systemd)
    defer { d.tearDown() }
    let conf = "'/etc/fleetsync/watch/\(DetectionFleet.instance).conf'"
    let port = try d.on(d.source, "sed -n 's/^health-port = //p' \(conf)")
    let mark = "'/run/fleetsync/watch-\(DetectionFleet.instance).unanswered'"
    let before = try d.watcherPid()
    // Policy routing before the local table: TCP to 127.0.0.1:PORT is refused ("prohibit").
    try d.on(
      d.source,
      "ip rule add pref 100 lookup local && ip rule del pref 0 && "
        + "ip rule add pref 10 to 127.0.0.1 ipproto tcp dport \(port) prohibit")
    try waitForBlocking("status sees the watcher not answering") {
      try d.fleetsync(["status"]).stdout.contains("not answering")
    }
    let first = try d.fleetsync(["heal", "--deadline", "15", "--json"])
    #expect(first.status == 2, "not healthy after the restart: \(first.stdout)\(first.stderr)")
    let byHeal = first.stdout.contains(#""action" : "restart""#)
    #expect(byHeal || !systemd, "\(first.stdout)")
    try d.waitReplaced("the watcher restarted once", before, d.watcherPid)
    let restarted = try d.watcherPid()
    #expect(try d.on(d.source, "cat \(mark)").hasSuffix(byHeal ? " heal" : " fleetsync-supervise"))

    // Not again, by heal or by the node's own supervisor; the watcher replicates all along.
    let second = try d.fleetsync(["heal", "--deadline", "15"])
    #expect(second.status == 2 && second.stdout.contains("leave"), "\(second.stdout)\(second.stderr)")
    #expect(second.stdout.contains("a restart does not fix this"), "\(second.stdout)")
    if !systemd {
      try waitForBlocking("the supervisor says it does not restart it again") {
        try d.watcherLog().contains("does not answer, also since a restart for that")
      }
      #expect(try d.watcherLog().components(separatedBy: "is hung: stopping it").count <= 2)
    }
    try d.arrives("while-port-closed")
    #expect(try d.watcherPid() == restarted, "restarted once, not in a loop")
    #expect(try d.fleetsync(["status"]).stdout.contains("also since a restart for that"))

    // The port opens: healthy by itself; the next heal has nothing to do and drops the mark.
    try d.on(d.source, "ip rule del pref 10")
    try d.waitAllHealthy()
    let third = try d.fleetsync(["heal"])
    #expect(third.status == 0 && third.stdout.contains("heal: ok=2"), "\(third.stdout)\(third.stderr)")
    #expect(try d.fleet.run(on: d.source, "test -e \(mark)").status != 0, "the mark goes once it answers")
    #expect(try d.watcherPid() == restarted)
  }
}
