import FleetTestSupport
import Foundation
import Testing

/// Two nodes of the provisioning fleet (``ProvisionFleetTests/fleetID``): `bk1` (node 0) keeps the
/// directory `/srv/data/a` of `s1` (node 1) in module `s1-a` of daemon `main`, as the inventory
/// written to ``inventory`` says. ``tearDown()`` takes the fleet down and puts back the machine's
/// inotify limits, which `up` raises.
final class TwoNodeFleet {
  let fleet: TestFleet
  let backup: TestFleet.Node
  let source: TestFleet.Node
  /// The inventory file, in a directory of its own.
  let inventory: String
  private let directory: String
  private let sysctlBefore: [(key: String, value: String)]

  /// Boots the nodes and writes the inventory; `directoryOptions` are added to directory `a`'s entry
  /// (e.g. `, excludes: ["*.tmp"]`). With `systemd`, both nodes boot systemd.
  init(_ label: String, directoryOptions: String = "", systemd: Bool = false) throws {
    sysctlBefore = ["max_user_watches", "max_user_instances", "max_queued_events"].map {
      ($0, (try? String(contentsOfFile: "/proc/sys/fs/inotify/\($0)", encoding: .utf8)) ?? "")
    }
    fleet = try TestFleet.up(id: ProvisionFleetTests.fleetID, nodes: 2, systemd: systemd ? 2 : 0)
    (backup, source) = (fleet.nodes[0], fleet.nodes[1])
    directory = NSTemporaryDirectory() + "fleetsync-\(label)-\(UUID().uuidString)"
    inventory = directory + "/fleet.yaml"
    do {
      try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
      try """
      \(fleet.inventoryDefaults)
      backups:
        bk1:
          address: \(backup.address)
          daemons:
            main:
              modules:
                s1-a: /srv/backup/s1/a
      sources:
        s1:
          address: \(source.address)
          directories:
            a: { path: /srv/data/a, to: [bk1/s1-a]\(directoryOptions) }

      """.write(toFile: inventory, atomically: true, encoding: .utf8)
    } catch {
      tearDown()
      throw error
    }
  }

  /// Runs `fleetsync ARGS -i INVENTORY`.
  func fleetsync(_ args: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
    try CLI.run("fleetsync", args + ["-i", inventory])
  }

  /// Runs `command` on `node` and returns its output, trimmed; it must succeed.
  @discardableResult
  func on(_ node: TestFleet.Node, _ command: String) throws -> String {
    let out = try fleet.run(on: node, command)
    try #require(out.status == 0, "on \(node): \(command): \(out.output)")
    return out.output.trimmingCharacters(in: .whitespacesAndNewlines)
  }

  /// Takes the fleet down, restores the inotify limits and removes the inventory.
  func tearDown() {
    try? fleet.down()
    for (key, value) in sysctlBefore where !value.isEmpty {
      try? value.write(toFile: "/proc/sys/fs/inotify/\(key)", atomically: false, encoding: .utf8)
    }
    try? FileManager.default.removeItem(atPath: directory)
  }
}

extension TestFleet {
  /// The `defaults` section of the fleet tests' inventories: this fleet's client key and known hosts,
  /// and a short batch delay.
  var inventoryDefaults: String {
    """
    defaults:
      ssh:
        identity: \(clientKey)
        known_hosts: \(knownHosts)
        connect_timeout: 30
      watch:
        batch_delay_ms: 50
    """
  }
}
