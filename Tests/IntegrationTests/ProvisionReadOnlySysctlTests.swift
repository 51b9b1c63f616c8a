import FleetCore
import FleetTestSupport
import Foundation
import Testing

/// `up` on a source whose /proc/sys is read-only (a container, some VPS): the host is fine, with a
/// warning, when its inotify limits already suffice, and fails with a message saying what to do when
/// they are below what the inventory asks; the other hosts are provisioned either way.
@Suite(.serialized, .dependsOnInotifyLimits, .enabled(if: TestFleet.isSupported))
struct ProvisionReadOnlySysctlTests {
  /// A fleet id no other suite uses.
  static let fleetID = 2

  static func inventory(_ fleet: TestFleet, watches: Int) -> String {
    """
    defaults:
      ssh: { identity: \(fleet.clientKey), known_hosts: \(fleet.knownHosts), connect_timeout: 5 }
    backups:
      bk:
        address: \(fleet.node(1).address)
        daemons: { main: { modules: { src-a: /srv/backup/src/a } } }
    sources:
      src:
        address: \(fleet.node(2).address)
        inotify: { max_user_watches: \(watches), max_user_instances: 1, max_queued_events: 1 }
        directories:
          a: { path: /srv/data/a, to: [bk/src-a] }
    """
  }

  @Test("a read-only /proc/sys fails a source only when its inotify limits are below the inventory's")
  func readOnlyProcSys() throws {
    let fleet = try TestFleet.up(id: Self.fleetID, nodes: 2)
    defer { try? fleet.down() }
    let src = fleet.node(2)
    _ = try fleet.run(
      on: src,
      "mkdir -p /srv/data/a && echo seed > /srv/data/a/seed"
        + " && mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys")
    #expect(try fleet.run(on: src, "echo 1 > /proc/sys/fs/inotify/max_queued_events").status != 0)
    let current = try Int(
      String(contentsOfFile: "/proc/sys/fs/inotify/max_user_watches", encoding: .utf8)
        .trimmingCharacters(in: .whitespacesAndNewlines))!

    let dir = NSTemporaryDirectory() + "fleetsync-rosysctl-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let inv = dir + "/fleet.yaml"

    // Asking for more than the host has: src fails with what to do; bk is provisioned all the same.
    try Self.inventory(fleet, watches: current + 1).write(toFile: inv, atomically: true, encoding: .utf8)
    let tooHigh = try CLI.run("fleetsync", ["up", "-i", inv])
    let text = tooHigh.stdout + tooHigh.stderr
    #expect(tooHigh.status == 2, "\(text)")
    #expect(text.contains("up: ok=0 changed=1 failed=1 unreachable=0"), "\(text)")
    #expect(text.contains("fs.inotify.max_user_watches is \(current)"), "\(text)")
    #expect(text.contains("\(current + 1)") && text.contains("read-only"), "\(text)")
    #expect(try fleet.run(on: src, "test -e /etc/fleetsync").status != 0, "the failed host was touched")
    #expect(try fleet.run(on: fleet.node(1), "test -e /etc/fleetsync/rsyncd/main.conf").status == 0)

    // What the host has suffices: src is provisioned, with a warning, and replicates.
    try Self.inventory(fleet, watches: 1).write(toFile: inv, atomically: true, encoding: .utf8)
    let enough = try CLI.run("fleetsync", ["up", "-i", inv])
    let okText = enough.stdout + enough.stderr
    #expect(enough.status == 0, "\(okText)")
    #expect(okText.contains("warning") && okText.contains("read-only"), "\(okText)")
    #expect(try fleet.run(on: src, "test -e /etc/sysctl.d/60-fleetsync.conf").status != 0)
    _ = try fleet.run(on: src, "echo later > /srv/data/a/later")
    #expect(
      try eventuallyBlocking {
        try fleet.run(on: fleet.node(1), "grep -q later /srv/backup/src/a/later").status == 0
      }, "a change on the read-only-sysctl source reached the backup")

    let down = try CLI.run("fleetsync", ["down", "-i", inv])
    #expect(down.status == 0, "\(down.stdout)\(down.stderr)")
  }
}
