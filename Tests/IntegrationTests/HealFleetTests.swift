import FleetTestSupport
import Foundation
import Testing

extension ProvisionFleetTests {
  /// `fleetsync heal` (issue 11) on real hosts, with systemd and with the pid-file supervisor: a hung
  /// watcher (SIGSTOP) is restarted, a stopped one started, and one that is unhealthy because its
  /// backup is down is left alone while the backup's daemon, which does not run, is started.
  @Test(arguments: [false, true])
  func healRestartsWhatHangsStartsWhatIsDownAndLeavesWhatARestartCannotFix(systemd: Bool) throws {
    guard !systemd || TestFleet.systemdSupported else { return }
    let setup = try TwoNodeFleet("heal", systemd: systemd)
    defer { setup.tearDown() }
    let fleetsync = setup.fleetsync
    let on = setup.on
    // The instance's own processes: a node without systemd shares the machine's pid namespace, where
    // other tests' watchers run too.
    let unit = "'fleetsync-watch@a:bk1:s1-a.service'"
    let pidFile = "'/run/fleetsync/watch-a:bk1:s1-a.pid'"
    func watcherPid() throws -> String {
      try on(
        setup.source,
        systemd
          ? "systemctl show -p MainPID --value \(unit)"
          : "pgrep -P \"$(cat \(pidFile))\" -f '[f]leetsync-watch run' | head -n 1")
    }
    func arrives(_ name: String) throws {
      _ = try on(setup.source, "echo \(name) > /srv/data/a/\(name)")
      try waitForBlocking("\(name) on the backup") {
        try setup.fleet.run(on: setup.backup, "test -f /srv/backup/s1/a/\(name)").status == 0
      }
    }
    /// The watcher's instance in `status --json`.
    func watcherStatus() throws -> [String: Any] {
      let out = try fleetsync(["status", "--json", "--limit", "s1"])
      let document = try JSONSerialization.jsonObject(with: Data(out.stdout.utf8)) as? [String: Any]
      let hosts = document?["hosts"] as? [[String: Any]] ?? []
      let instances = hosts.flatMap { $0["instances"] as? [[String: Any]] ?? [] }
      return try #require(instances.first { $0["instance"] as? String == "a:bk1:s1-a" }, "\(out.stdout)")
    }
    _ = try on(setup.source, "mkdir -p /srv/data/a")
    let up = try fleetsync(["up"])
    try #require(up.status == 0, "\(up.stdout)\(up.stderr)")
    #expect(try fleetsync(["heal"]).stdout.contains("heal: ok=2"), "all healthy: nothing to do")

    // Hung: the process runs, its health port answers nothing. The instance's own watchdog (systemd's
    // WatchdogSec, the supervisor's checks) would restart it after 30 s; this test is about heal, so
    // systemd's is turned off and the supervisor is stopped along with its watcher.
    if systemd {
      _ = try on(
        setup.source,
        "mkdir -p /run/systemd/system/\(unit).d && printf '[Service]\\nWatchdogSec=0\\n' "
          + ">/run/systemd/system/\(unit).d/heal-test.conf && systemctl daemon-reload && systemctl restart \(unit)"
      )
      try waitForBlocking("the watcher healthy again") { try fleetsync(["status"]).status == 0 }
    }
    let hung = try watcherPid()
    _ = try on(setup.source, systemd ? "kill -STOP \(hung)" : "kill -STOP \(hung) \"$(cat \(pidFile))\"")
    try waitForBlocking("status sees the hung watcher") {
      try fleetsync(["status"]).stdout.contains("not answering")
    }
    let restarted = try fleetsync(["heal", "--json"])
    #expect(restarted.status == 0, "\(restarted.stdout)\(restarted.stderr)")
    #expect(restarted.stdout.contains(#""action" : "restart""#), "\(restarted.stdout)")
    #expect(restarted.stdout.contains(#""healthyAfter" : true"#), "\(restarted.stdout)")
    #expect(try watcherPid() != hung)
    try arrives("after-hang")
    // `status` counts the restart, and shows how long the new process has run and when it last sent.
    let counted = try watcherStatus()
    #expect((counted["restarts"] as? Int ?? 0) >= 1, "\(counted)")
    #expect(counted["uptimeSeconds"] is Int && counted["lastSuccess"] is Int, "\(counted)")

    // Stopped, and nothing starts it again.
    _ = try on(setup.source, systemd ? "systemctl stop \(unit)" : "kill \"$(cat \(pidFile))\"")
    try waitForBlocking("the watcher is gone") { try fleetsync(["status"]).stdout.contains("not running") }
    let started = try fleetsync(["heal"])
    #expect(started.status == 0 && started.stdout.contains("start"), "\(started.stdout)\(started.stderr)")
    try arrives("after-stop")
    #expect((try watcherStatus()["restarts"] as? Int ?? 0) >= 2, "the start counts too")

    // The backup's daemon stopped: the watcher says its target is unreachable, and a restart of it
    // would not help; heal starts the daemon instead.
    let daemonUnit = "'fleetsync-rsyncd@main.service'"
    _ = try on(
      setup.backup,
      systemd ? "systemctl stop \(daemonUnit)" : "kill \"$(cat /run/fleetsync/rsyncd-main.pid)\"")
    let before = try watcherPid()
    _ = try on(setup.source, "echo pending > /srv/data/a/pending")
    var seen = ""
    var down = false
    try? waitForBlocking("status sees the target down") {
      seen = try fleetsync(["status", "--limit", "s1"]).stdout
      down = seen.contains("cannot reach the rsync daemon")
      return down
    }
    try #require(down, "\(seen)")
    let left = try fleetsync(["heal", "--limit", "s1"])
    #expect(left.status != 0 && left.stdout.contains("leave"), "\(left.stdout)\(left.stderr)")
    #expect(try watcherPid() == before, "a watcher whose backup is down is not restarted")
    let daemon = try fleetsync(["heal", "--limit", "bk1"])
    #expect(daemon.status == 0 && daemon.stdout.contains("start"), "\(daemon.stdout)\(daemon.stderr)")
    try waitForBlocking("the pending file on the backup") {
      try setup.fleet.run(on: setup.backup, "test -f /srv/backup/s1/a/pending").status == 0
    }
    #expect(try watcherPid() == before)

    // The daemon greets, but a watcher could not use its module: the module's filesystem is not
    // mounted (an empty mountpoint in its place), then its secrets file is not 0600. Status says which
    // module and why; heal leaves the daemon, which a restart does not fix.
    func daemonPid() throws -> String {
      try on(
        setup.backup,
        systemd ? "systemctl show -p MainPID --value \(daemonUnit)" : "cat /run/fleetsync/rsyncd-main.pid")
    }
    func backupStatus(saying: String) throws -> String {
      var seen = ""
      try? waitForBlocking("status says \(saying)") {
        seen = try fleetsync(["status", "--limit", "bk1"]).stdout
        return seen.contains(saying)
      }
      return seen
    }
    try waitForBlocking("the backup healthy") { try fleetsync(["status", "--limit", "bk1"]).status == 0 }
    let daemonBefore = try daemonPid()
    _ = try on(setup.backup, "mv /srv/backup/s1/a /srv/backup/s1/a.away && mkdir /srv/backup/s1/a")
    let unmounted = try backupStatus(saying: "module s1-a: chroot failed")
    #expect(unmounted.contains("is the backup filesystem mounted?"), "\(unmounted)")
    #expect(try fleetsync(["status", "--limit", "bk1"]).status != 0)
    let leftDaemon = try fleetsync(["heal", "--limit", "bk1"])
    #expect(leftDaemon.status != 0 && leftDaemon.stdout.contains("leave"), "\(leftDaemon.stdout)")
    #expect(try daemonPid() == daemonBefore, "a daemon whose module is not there is not restarted")
    _ = try on(
      setup.backup, "mv /srv/backup/s1/a /srv/backup/s1/a.empty && mv /srv/backup/s1/a.away /srv/backup/s1/a")
    _ = try on(setup.backup, "chmod 0644 /etc/fleetsync/rsyncd/main.secrets")
    let refused = try backupStatus(saying: "module s1-a: auth failed")
    #expect(refused.contains("is its secrets file 0600"), "\(refused)")
    #expect(!refused.contains(try on(setup.backup, "cut -d: -f2- /etc/fleetsync/rsyncd/main.secrets")))
    _ = try on(setup.backup, "chmod 0600 /etc/fleetsync/rsyncd/main.secrets")
    try waitForBlocking("the backup healthy again") {
      try fleetsync(["status", "--limit", "bk1"]).status == 0
    }
  }
}
