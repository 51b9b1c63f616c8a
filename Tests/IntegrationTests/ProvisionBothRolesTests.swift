import FleetCore
import FleetTestSupport
import Foundation
import Testing

/// Mutual backup between two real hosts, each a source and a backup (one manifest, both roles), and
/// one machine reached under two names refused before anything is written. `up` raises the
/// machine's inotify limits (the nodes share the kernel); the test puts back what it read before.
@Suite(.serialized, .disturbsSharedFleet, .dependsOnInotifyLimits, .enabled(if: TestFleet.isSupported))
struct ProvisionBothRolesTests {
  /// Where the test keeps its data on the nodes: protected directories and received backups side by side.
  static let root = "/srv/both-roles"

  static func defaults(_ fleet: TestFleet, knownHosts: String? = nil) -> String {
    """
    defaults:
      ssh: { identity: \(fleet.clientKey), known_hosts: \(knownHosts ?? fleet.knownHosts), connect_timeout: 30 }
      watch: { batch_delay_ms: 50 }

    """
  }

  /// A and B each protect `root/data` and keep the other's backup in `root/backup/OTHER`.
  static func mutualInventory(_ fleet: TestFleet) -> String {
    let (a, b) = (fleet.node(1).address, fleet.node(2).address)
    return defaults(fleet) + """
      sources:
        nfs-a:
          address: \(a)
          directories: { data: { path: \(root)/data, to: [nfs-b/from-a] } }
        nfs-b:
          address: \(b)
          directories: { data: { path: \(root)/data, to: [nfs-a/from-b] } }
      backups:
        nfs-a:
          address: \(a)
          daemons: { main: { modules: { from-b: \(root)/backup/nfs-b } } }
        nfs-b:
          address: \(b)
          daemons: { main: { modules: { from-a: \(root)/backup/nfs-a } } }

      """
  }

  /// Reads the machine's inotify limits, and puts them back when the returned closure is called.
  static func saveInotifyLimits() -> () -> Void {
    let keys = ["max_user_watches", "max_user_instances", "max_queued_events"]
    let before = keys.map {
      (try? String(contentsOfFile: "/proc/sys/fs/inotify/\($0)", encoding: .utf8)) ?? ""
    }
    return {
      for (key, value) in zip(keys, before) where !value.isEmpty {
        try? value.write(toFile: "/proc/sys/fs/inotify/\(key)", atomically: false, encoding: .utf8)
      }
    }
  }

  static func tempDir() throws -> String {
    let dir = NSTemporaryDirectory() + "fleetsync-both-roles-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
  }

  @Test func mutualBackupUpTwiceReplicatesBothWaysAndDownLeavesTheNodesClean() async throws {
    let fleet = try await TestFleet.shared(nodes: 2)
    let nodes = [fleet.node(1), fleet.node(2)]
    let restoreLimits = Self.saveInotifyLimits()
    defer { restoreLimits() }
    let dir = try Self.tempDir()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let inv = dir + "/fleet.yaml"
    try Self.mutualInventory(fleet).write(toFile: inv, atomically: true, encoding: .utf8)
    for (node, name) in zip(nodes, ["nfs-a", "nfs-b"]) {
      _ = try fleet.run(
        on: node,
        "rm -rf \(Self.root) && mkdir -p \(Self.root)/data && echo seed-\(name) > \(Self.root)/data/seed")
    }
    defer {
      _ = try? CLI.run("fleetsync", ["down", "-i", inv])
      for node in nodes { _ = try? fleet.run(on: node, "rm -rf \(Self.root)") }
    }
    let before = try nodes.map { try ProvisionFleetTests.snapshot(fleet, $0) }

    // up: both roles on both hosts.
    let up = try CLI.run("fleetsync", ["up", "-i", inv])
    try #require(up.status == 0, "up failed:\n\(up.stdout)\n\(up.stderr)")
    #expect(up.stdout.contains("up: ok=0 changed=2 failed=0 unreachable=0"), "\(up.stdout)")
    for node in nodes {
      let manifest = try fleet.run(on: node, "cat /etc/fleetsync/manifest.json").output
      #expect(
        manifest.contains("\"rsyncd@main\"") && manifest.contains("\"watch@data:"), "\(node): \(manifest)")
    }

    // Replication both ways: the seeds (initial full sync), then new files.
    for (node, other, name, from) in [
      (nodes[0], nodes[1], "nfs-a", "nfs-a"), (nodes[1], nodes[0], "nfs-b", "nfs-b"),
    ] {
      _ = try fleet.run(on: node, "echo written-on-\(name) > \(Self.root)/data/new-\(name).txt")
      try waitForBlocking("\(name)'s files on the other host") {
        try fleet.run(
          on: other,
          "grep -q seed-\(name) \(Self.root)/backup/\(from)/seed && grep -q written-on-\(name) \(Self.root)/backup/\(from)/new-\(name).txt"
        ).status == 0
      }
    }

    // A second up changes nothing and restarts nothing.
    let pids = try nodes.map { try ProvisionFleetTests.pids(fleet, $0) }
    #expect(pids.allSatisfy { $0.split(separator: "\n").count == 2 }, "\(pids)")
    let again = try CLI.run("fleetsync", ["up", "-i", inv])
    #expect(again.status == 0, "\(again.stdout)\(again.stderr)")
    #expect(again.stdout.contains("up: ok=2 changed=0 failed=0 unreachable=0"), "\(again.stdout)")
    #expect(
      try nodes.map { try ProvisionFleetTests.pids(fleet, $0) } == pids, "a second up restarted something")

    // down: every instance of both roles is gone, the nodes are as before (received backups stay).
    let book = try JSONDecoder().decode(
      [String: [String: Int]].self, from: Data(contentsOf: URL(fileURLWithPath: dir + "/fleet.state.json")))
    let ports = (book["ports"] ?? [:]).sorted { $0.key < $1.key }
    #expect(ports.count == 4, "\(ports)")
    func listening(_ host: String, _ port: Int) throws -> Bool {
      let node = host == "nfs-a" ? nodes[0] : nodes[1]
      return try !fleet.run(on: node, "ss -Hltn 'sport = :\(port)'").output.isEmpty
    }
    for (key, port) in ports {
      #expect(try listening(String(key.prefix { $0 != "/" }), port), "\(key) before down")
    }
    let down = try CLI.run("fleetsync", ["down", "-i", inv])
    #expect(down.status == 0 && down.stdout.contains("down: ok=0 changed=2"), "\(down.stdout)\(down.stderr)")
    for (index, node) in nodes.enumerated() {
      let after = try ProvisionFleetTests.snapshot(fleet, node)
      let added = Set(after.split(separator: "\n")).subtracting(before[index].split(separator: "\n"))
        .filter { !$0.hasPrefix(Self.root + "/") && $0 != "/run/motd.dynamic" }.sorted()
      let removed = Set(before[index].split(separator: "\n")).subtracting(after.split(separator: "\n"))
        .sorted()
      #expect(added.isEmpty && removed.isEmpty, "\(node.name) after down: added \(added), removed \(removed)")
    }
    for (key, port) in ports {
      #expect(try !listening(String(key.prefix { $0 != "/" }), port), "\(key) still listens after down")
    }
    #expect(try fleet.run(on: nodes[1], "test -f \(Self.root)/backup/nfs-a/seed").status == 0, "data kept")
  }

  /// Node 1 reached as source `nfs-a` on port 22 and as backup `bk-alias` on a second sshd (port
  /// 2222): the inventory allows one address with two ports (two containers behind one address), the
  /// facts show one machine, and `up` is refused before it writes anything.
  @Test func oneMachineUnderTwoNamesIsRefusedBeforeAnyWrite() async throws {
    let fleet = try await TestFleet.shared(nodes: 2)
    let node = fleet.node(1)
    let pidFile = "/run/fleetsync-test-alias-sshd.pid"
    let started = try fleet.run(
      on: node,
      "/usr/sbin/sshd -p 2222 -o PidFile=\(pidFile) -E /run/fleetsync-test-alias-sshd.log "
        + "-o HostKey=/etc/ssh/ssh_host_ed25519_key -o HostKey=/etc/ssh/ssh_host_ecdsa_key "
        + "-o PermitRootLogin=prohibit-password -o UseDNS=no </dev/null >/dev/null 2>&1")
    try #require(started.status == 0)
    defer { _ = try? fleet.run(on: node, "kill $(cat \(pidFile)) && rm -f \(pidFile)") }
    let dir = try Self.tempDir()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    // The node's host keys, also for its second port.
    let known = try String(contentsOfFile: fleet.knownHosts, encoding: .utf8).split(separator: "\n")
      .filter { $0.hasPrefix(node.address + " ") }
    let knownHosts =
      (known + known.map { "[\(node.address)]:2222" + $0.dropFirst(node.address.count) })
      .joined(separator: "\n") + "\n"
    try knownHosts.write(toFile: dir + "/known_hosts", atomically: true, encoding: .utf8)
    let inv = dir + "/fleet.yaml"
    try
      (Self.defaults(fleet, knownHosts: dir + "/known_hosts") + """
        backups:
          bk-alias:
            address: \(node.address)
            ssh: { port: 2222 }
            daemons: { main: { modules: { from-a: \(Self.root)/backup/nfs-a } } }
        sources:
          nfs-a:
            address: \(node.address)
            directories: { data: { path: \(Self.root)/data, to: [bk-alias/from-a] } }

        """).write(toFile: inv, atomically: true, encoding: .utf8)
    _ = try fleet.run(on: node, "mkdir -p \(Self.root)/data")
    defer { _ = try? fleet.run(on: node, "rm -rf \(Self.root)") }

    for command in ["up", "down"] {
      let result = try CLI.run("fleetsync", [command, "-i", inv])
      #expect(result.status == 64, "\(command): exit \(result.status)\n\(result.stdout)\(result.stderr)")
      #expect(
        result.stderr.contains("bk-alias and nfs-a are one machine under two names"),
        "\(command): \(result.stderr)")
      #expect(result.stderr.contains("Nothing was changed on any host"))
    }
    #expect(try fleet.run(on: node, "test -e /etc/fleetsync").status != 0, "the node was written to")
    #expect(!FileManager.default.fileExists(atPath: dir + "/fleet.secrets"), "secrets were generated")
  }
}
