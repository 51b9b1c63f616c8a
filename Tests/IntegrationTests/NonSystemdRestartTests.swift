import FleetCore
import FleetTestSupport
import Foundation
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// Hosts without systemd on the test fleet: `up` installs and enables the boot script; a watcher
/// made to hang (SIGSTOP) is restarted by its supervisor; a simulated reboot (every fleetsync
/// process killed, /run emptied, the boot script run as rc runs it) brings the instances back, a
/// watcher whose source is not there yet waits and then replicates; `down` removes the boot script.
@Suite(.serialized, .dependsOnInotifyLimits, .enabled(if: TestFleet.isSupported))
struct NonSystemdRestartTests {
  /// A fleet id no other suite uses.
  static let fleetID = 1
  static let instance = "a:bk:s-a"
  static let watchPid = "/run/fleetsync/watch-\(instance).pid"

  static func inventory(_ fleet: TestFleet) -> String {
    """
    defaults:
      ssh: { identity: \(fleet.clientKey), known_hosts: \(fleet.knownHosts), connect_timeout: 30 }
      watch: { batch_delay_ms: 50 }
    backups:
      bk:
        address: \(fleet.node(2).address)
        daemons: { main: { modules: { s-a: /srv/backup/s/a } } }
    sources:
      s:
        address: \(fleet.node(1).address)
        directories:
          a: { path: /srv/data/a, to: [bk/s-a] }
    """
  }

  /// The pid of the watcher process its supervisor runs (empty when there is none).
  static func watcherPid(_ fleet: TestFleet) throws -> String {
    try fleet.run(
      on: fleet.node(1), "pgrep -P \"$(cat '\(watchPid)')\" -f 'fleetsync-watch run' 2>/dev/null | head -n 1"
    ).output.trimmingCharacters(in: .whitespacesAndNewlines)
  }

  /// The pids of `node`'s instances: each pid file's process and its children.
  static func instancePids(_ fleet: TestFleet, _ node: TestFleet.Node) throws -> [Int32] {
    try fleet.run(
      on: node,
      "for f in /run/fleetsync/*.pid; do [ -f \"$f\" ] && p=$(cat \"$f\") && echo $p && pgrep -P $p; done; true"
    ).output.split(separator: "\n").compactMap { Int32($0) }
  }

  /// Writes `name` on the source and waits until the backup has it.
  static func expectReplicated(_ fleet: TestFleet, _ name: String) throws {
    _ = try fleet.run(on: fleet.node(1), "echo \(name) > /srv/data/a/\(name)")
    try waitForBlocking("\(name) on the backup") {
      try fleet.run(on: fleet.node(2), "grep -q \(name) /srv/backup/s/a/\(name)").status == 0
    }
  }

  /// What `/etc/rc2.d` holds of fleetsync on `node` (rc links of the boot script).
  static func rcLinks(_ fleet: TestFleet, _ node: TestFleet.Node) throws -> String {
    try fleet.run(on: node, "ls /etc/rc2.d /etc/rc0.d 2>/dev/null | grep fleetsync").output
  }

  @Test func bootScriptAndHungWatcherOnHostsWithoutSystemd() throws {
    let fleet = try TestFleet.up(id: Self.fleetID, nodes: 2)
    defer { try? fleet.down() }
    let sysctlKeys = ["max_user_watches", "max_user_instances", "max_queued_events"]
    let sysctlBefore = sysctlKeys.map {
      (try? String(contentsOfFile: "/proc/sys/fs/inotify/\($0)", encoding: .utf8)) ?? ""
    }
    defer {
      for (key, value) in zip(sysctlKeys, sysctlBefore) where !value.isEmpty {
        try? value.write(toFile: "/proc/sys/fs/inotify/\(key)", atomically: false, encoding: .utf8)
      }
    }
    let dir = NSTemporaryDirectory() + "fleetsync-nosystemd-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let inv = dir + "/fleet.yaml"
    try Self.inventory(fleet).write(toFile: inv, atomically: true, encoding: .utf8)
    _ = try fleet.run(on: fleet.node(1), "mkdir -p /srv/data/a && echo seed > /srv/data/a/seed")

    // up installs the boot script and enables it on both hosts.
    let up = try CLI.run("fleetsync", ["up", "-i", inv])
    try #require(up.status == 0, "up failed:\n\(up.stdout)\n\(up.stderr)")
    for node in fleet.nodes {
      #expect(try fleet.run(on: node, "test -x /etc/init.d/fleetsync").status == 0, "\(node.name)")
      let links = try Self.rcLinks(fleet, node)
      #expect(links.contains("S") && links.contains("K"), "\(node.name): rc links \(links)")
    }
    try Self.expectReplicated(fleet, "first")

    // A hung watcher (stopped: the kernel still accepts on its port, nobody answers) is restarted.
    let hung = try Self.watcherPid(fleet)
    try #require(!hung.isEmpty, "no watcher process")
    _ = try fleet.run(on: fleet.node(1), "kill -STOP \(hung)")
    try waitForBlocking("the supervisor restarts the hung watcher") {
      let now = try Self.watcherPid(fleet)
      return !now.isEmpty && now != hung
    }
    #expect(try fleet.run(on: fleet.node(1), "kill -0 \(hung)").status != 0, "the hung watcher is gone")
    let log = try fleet.run(on: fleet.node(1), "cat '/var/log/fleetsync/watch-\(Self.instance).log'").output
    #expect(log.contains("is hung: stopping it to start it again"), "\(log)")
    try Self.expectReplicated(fleet, "after-hang")

    // A reboot: every fleetsync process dies, /run is empty; the source's filesystem is late. (The
    // nodes share the machine's pid space: only the processes of this node's pid files are killed.)
    let before = try fleet.nodes.map { try Self.instancePids(fleet, $0) }
    for node in fleet.nodes {
      _ = try fleet.run(
        on: node,
        """
        for f in /run/fleetsync/*.pid; do p=$(cat "$f"); pkill -KILL -P "$p"; kill -KILL "$p"; done
        rm -rf /run/fleetsync; true
        """)
    }
    for pid in before.joined() {
      try waitForBlocking("pid \(pid) gone") { kill(pid, 0) != 0 }
    }
    _ = try fleet.run(
      on: fleet.node(1), "mv /srv/data/a /srv/data/a.late && echo during > /srv/data/a.late/during")
    // rc runs each S link of the runlevel with `start`, in a bare environment.
    for node in fleet.nodes {
      let boot = try fleet.run(
        on: node,
        "for s in /etc/rc2.d/S*fleetsync; do env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \"$s\" start </dev/null; done"
      )
      #expect(boot.status == 0, "\(node.name): \(boot.output)")
    }
    // The watcher is up, waiting for its source: unhealthy with the reason, not restarted.
    let watch =
      "/var/lib/fleetsync/bin/fleetsync-watch check --config '/etc/fleetsync/watch/\(Self.instance).conf'"
    try waitForBlocking("the watcher waits for its source") {
      try fleet.run(on: fleet.node(1), watch).output.contains("waitingForSource")
    }
    let waiting = try Self.watcherPid(fleet)
    let status = try CLI.run("fleetsync", ["status", "-i", inv])
    #expect(status.stdout.contains("waitingForSource"), "\(status.stdout)")
    let json = try CLI.run("fleetsync", ["status", "-i", inv, "--json"])
    #expect(json.status != 0, "an unhealthy instance fails its host: \(json.stdout)")
    let document = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
    let watcher = (document?["hosts"] as? [[String: Any]] ?? []).flatMap {
      $0["instances"] as? [[String: Any]] ?? []
    }
    .first { $0["kind"] as? String == "watch" }
    #expect(document?["ok"] as? Bool == false, "\(json.stdout)")
    #expect(
      watcher?["state"] as? String == "unhealthy" && watcher?["running"] as? Bool == true, "\(json.stdout)")
    #expect((watcher?["detail"] as? String)?.contains("waitingForSource") == true, "\(json.stdout)")
    _ = try fleet.run(on: fleet.node(1), "mv /srv/data/a.late /srv/data/a")
    try waitForBlocking("the file written during the outage on the backup") {
      try fleet.run(on: fleet.node(2), "test -f /srv/backup/s/a/during").status == 0
    }
    #expect(try Self.watcherPid(fleet) == waiting, "a waiting watcher is not restarted")
    try Self.expectReplicated(fleet, "after-boot")
    let healthy = try CLI.run("fleetsync", ["status", "-i", inv])
    #expect(healthy.status == 0, "\(healthy.stdout)\(healthy.stderr)")

    // down stops everything and removes the boot script and its links.
    let running = try fleet.nodes.map { try Self.instancePids(fleet, $0) }
    #expect(running.allSatisfy { !$0.isEmpty }, "instances on each node: \(running)")
    let down = try CLI.run("fleetsync", ["down", "-i", inv])
    #expect(down.status == 0, "\(down.stdout)\(down.stderr)")
    for node in fleet.nodes {
      #expect(try fleet.run(on: node, "test -e /etc/init.d/fleetsync").status != 0, "\(node.name)")
      #expect(try Self.rcLinks(fleet, node).isEmpty, "\(node.name)")
    }
    for pid in running.joined() {
      try waitForBlocking("pid \(pid) gone after down") { kill(pid, 0) != 0 }
    }
  }
}
