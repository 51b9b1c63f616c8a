import FleetCore
import FleetTestSupport
import Foundation
import Testing

/// The test fleet itself: real namespaces, real sshd, checked with OpenSSH's own client.
@Suite(
  "Test fleet", .serialized, .usesSharedFleet,
  .enabled(if: TestFleet.isSupported, "needs root, ip, sshd, unshare, nsenter"))
struct TestFleetTests {
  @Test("every node has its own hostname and address, and OpenSSH logs in with the fleet's keys")
  func nodesAreDistinctHosts() async throws {
    let fleet = try await TestFleet.shared(nodes: 5)
    #expect(fleet.nodes.count >= 5)
    #expect(Set(fleet.nodes.map(\.name)).count == fleet.nodes.count)
    #expect(Set(fleet.nodes.map(\.address)).count == fleet.nodes.count)
    for node in fleet.nodes.prefix(5) {
      let viaSSH = try fleet.openSSH(node, "hostname; ip -o -4 addr show dev eth0")
      #expect(viaSSH.status == 0, "ssh to \(node) failed")
      let lines = viaSSH.output.split(separator: "\n")
      #expect(lines.first.map(String.init) == node.name)
      #expect(viaSSH.output.contains(" \(node.address)/24 "))
      let outOfBand = try fleet.run(on: node, "hostname")
      #expect(outOfBand.status == 0)
      #expect(outOfBand.output == node.name + "\n")
    }
  }

  @Test("the ECDSA key works with its passphrase and the RSA key is authorized")
  func clientKeysAreAuthorized() async throws {
    let fleet = try await TestFleet.shared(nodes: 5)
    let node = fleet.node(1)
    let rsa = try fleet.openSSH(node, "echo rsa-ok", key: fleet.rsaKey)
    #expect(rsa.status == 0)
    #expect(rsa.output == "rsa-ok\n")

    // The ECDSA key is encrypted: without its passphrase BatchMode ssh cannot use it ...
    let locked = try fleet.openSSH(node, "true", key: fleet.ecdsaKey)
    #expect(locked.status == 255)
    // ... and with it (fed through SSH_ASKPASS, never argv) it logs in.
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/ssh")
    process.arguments = [
      "-i", fleet.ecdsaKey, "-o", "IdentitiesOnly=yes", "-o", "UserKnownHostsFile=\(fleet.knownHosts)",
      "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=30", "root@\(node.address)", "echo ecdsa-ok",
    ]
    var env = ProcessInfo.processInfo.environment
    env["SSH_ASKPASS"] = fleet.askpass
    env["SSH_ASKPASS_REQUIRE"] = "force"
    env["DISPLAY"] = ":0"
    process.environment = env
    let out = Pipe()
    process.standardOutput = out
    process.standardError = FileHandle.nullDevice
    process.standardInput = FileHandle.nullDevice
    try process.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    #expect(process.terminationStatus == 0)
    #expect(String(decoding: data, as: UTF8.self) == "ecdsa-ok\n")
    #expect(!fleet.ecdsaPassphrase.isEmpty)
  }

  @Test("a file written to /etc on node 1 is seen neither on node 2 nor on the host")
  func etcIsPerNode() async throws {
    let fleet = try await TestFleet.shared(nodes: 5)
    let name = "fleetsync-isolation-\(UInt32.random(in: 0...UInt32.max))"
    let path = try ShellQuote.quote("/etc/\(name)")
    let write = try fleet.openSSH(fleet.node(1), "echo written-on-n1 > \(path)")
    #expect(write.status == 0)
    defer { _ = try? fleet.run(on: fleet.node(1), "rm -f \(path)") }
    #expect(try fleet.run(on: fleet.node(1), "cat \(path)").output == "written-on-n1\n")
    #expect(try fleet.run(on: fleet.node(2), "test -e \(path)").status == 1)
    #expect(try fleet.openSSH(fleet.node(2), "test -e \(path)").status == 1)
    #expect(!FileManager.default.fileExists(atPath: "/etc/\(name)"))
    // The write landed in node 1's overlay upper dir, which is how the host can see it.
    #expect(FileManager.default.fileExists(atPath: "\(fleet.stateDir)/nodes/n1/etc-up/\(name)"))
    #expect(try fleet.run(on: fleet.node(1), "command -v rsync").status == 0)
  }

  @Test("cut makes a node unreachable and restore brings it back", .disturbsSharedFleet)
  func cutAndRestore() async throws {
    let fleet = try await TestFleet.shared(nodes: 5)
    let node = fleet.node(3)
    try fleet.cut(node)
    let whileCut = try fleet.openSSH(node, "true", connectTimeout: 2)
    try fleet.restore(node)
    #expect(whileCut.status == 255)
    #expect(try await eventually { try fleet.openSSH(node, "true").status == 0 })
    // Another node was never affected.
    #expect(try fleet.openSSH(fleet.node(4), "true").status == 0)
    // The spare address answers nothing.
    let spare = TestFleet.Node(name: "spare", address: fleet.unusedAddress, index: 0)
    #expect(!fleet.nodes.map(\.address).contains(spare.address))
    #expect(try fleet.openSSH(spare, "true", connectTimeout: 2).status == 255)
  }

  @Test("sshd-kill refuses new connections, sshd-start serves them again", .disturbsSharedFleet)
  func sshdKillAndStart() async throws {
    let fleet = try await TestFleet.shared(nodes: 5)
    let node = fleet.node(4)
    try fleet.killSSHD(node)
    let whileKilled = try fleet.openSSH(node, "true", connectTimeout: 2)
    // The node itself is alive: only its sshd is gone.
    let alive = try fleet.run(on: node, "hostname")
    try fleet.startSSHD(node)
    #expect(whileKilled.status == 255)
    #expect(alive.output == node.name + "\n")
    #expect(try fleet.openSSH(node, "hostname").output == node.name + "\n")
  }

  @Test("reset-hostkey changes the node's host key and updates known_hosts", .disturbsSharedFleet)
  func resetHostKey() async throws {
    let fleet = try await TestFleet.shared(nodes: 5)
    let node = fleet.node(5)
    let stale = try fleet.resetHostKey(node)
    defer { try? FileManager.default.removeItem(atPath: stale) }
    #expect(try fleet.openSSH(node, "true", knownHosts: stale).status == 255)
    #expect(try fleet.openSSH(node, "hostname").output == node.name + "\n")
    let before = try String(contentsOfFile: stale, encoding: .utf8)
    let after = try String(contentsOfFile: fleet.knownHosts, encoding: .utf8)
    let line = { (text: String) in text.split(separator: "\n").filter { $0.hasPrefix(node.address + " ") } }
    #expect(line(before).count == 2)
    #expect(line(after).count == 2)
    #expect(line(before) != line(after))
  }

  @Test(
    "a systemd node boots systemd as PID 1, runs a transient unit, and down leaves nothing behind",
    // systemd, as a node's init, watches files with inotify.
    .dependsOnInotifyLimits, .enabled(if: TestFleet.systemdSupported, "needs systemd and a cgroup2 hierarchy")
  )
  func systemdNode() throws {
    // A fleet of its own (not one of the shared fleet's ids), so the shared fleet stays plain.
    let id = (TestFleet.sharedID + 4) % 10
    let fleet = try TestFleet.up(id: id, nodes: 2, systemd: 1)
    defer { try? fleet.down() }
    let node = fleet.node(1)
    let plain = fleet.node(2)
    #expect(fleet.nodes.map(\.systemd) == [true, false])
    #expect(node.address == "10.231.\(id).11" && plain.address == "10.231.\(id).12")

    // Seen over SSH, as fleetsync's provisioning sees the node.
    #expect(try fleet.openSSH(node, "hostname").output == node.name + "\n")
    let state = try fleet.openSSH(node, "systemctl is-system-running").output
      .trimmingCharacters(in: .whitespacesAndNewlines)
    #expect(["running", "degraded", "starting"].contains(state), "systemctl is-system-running: \(state)")
    #expect(try fleet.openSSH(node, "cat /proc/1/comm").output == "systemd\n")
    #expect(try fleet.openSSH(node, "test -d /run/systemd/system").status == 0)
    #expect(try fleet.openSSH(plain, "test -d /run/systemd/system").status == 1)

    // /proc/sys is read-only in the node but for net and the inotify limits, which fleetsync sets.
    for key in ["max_user_watches", "max_user_instances", "max_queued_events"] {
      let path = "/proc/sys/fs/inotify/\(key)"
      let same = try fleet.openSSH(node, "v=$(cat \(path)) && echo \"$v\" > \(path)")
      #expect(same.status == 0, "\(path) must be writable in a systemd node: \(same.output)")
    }
    #expect(
      try fleet.openSSH(node, "v=$(cat /proc/sys/vm/swappiness) && echo \"$v\" > /proc/sys/vm/swappiness")
        .status != 0)

    let started = try fleet.openSSH(node, "systemd-run --unit fleetsync-probe sleep 60")
    #expect(started.status == 0)
    #expect(
      try eventuallyBlocking {
        try fleet.openSSH(node, "systemctl is-active fleetsync-probe").output == "active\n"
      })
    // The unit's process lives in the node's PID namespace, under the node's own cgroup.
    let mainPID = try fleet.openSSH(node, "systemctl show -p MainPID --value fleetsync-probe").output
      .trimmingCharacters(in: .whitespacesAndNewlines)
    #expect((Int(mainPID) ?? 0) > 1)
    #expect(
      try fleet.openSSH(node, "cat /proc/\(mainPID)/cgroup").output
        .contains("0::/system.slice/fleetsync-probe.service"))
    #expect(try fleet.openSSH(plain, "systemctl is-active fleetsync-probe").output != "active\n")

    // The node sees neither the host's /tmp nor its /run.
    let marker = "/tmp/fleetsync-systemd-node-\(UUID().uuidString)"
    #expect(FileManager.default.createFile(atPath: marker, contents: Data("host".utf8)))
    defer { try? FileManager.default.removeItem(atPath: marker) }
    #expect(try fleet.openSSH(node, "test -e \(marker)").status == 1)
    #expect(try fleet.openSSH(node, "test -e /run/netns/\(node.name)").status == 1)
    #expect(FileManager.default.fileExists(atPath: marker))

    // The node's cgroup is part of the fleet until down removes it with everything else.
    #expect(try TestFleet.leftovers(id: id).contains { $0.hasPrefix("cgroup: ") })
    try fleet.down()
    #expect(try TestFleet.leftovers(id: id) == [])
  }

  @Test("down after a crash leaves nothing behind, and check-clean notices leftovers")
  func downLeavesNothing() throws {
    // A fleet of its own, so tests using the shared fleet keep running.
    let id = (TestFleet.sharedID + 9) % 10
    let fleet = try TestFleet.up(id: id, nodes: 2)
    #expect(fleet.nodes.map(\.address) == ["10.231.\(id).11", "10.231.\(id).12"])
    // A process started inside a node (as a test's helper would be) must also go.
    let started = try fleet.run(on: fleet.node(1), "sleep 600 >/dev/null 2>&1 &")
    #expect(started.status == 0)
    let leftovers = try TestFleet.leftovers(id: id)
    #expect(leftovers.contains { $0.hasPrefix("netns: fs\(id)-n1") })
    #expect(leftovers.contains { $0.hasPrefix("link: fsbr\(id)") })
    #expect(leftovers.contains { $0.hasPrefix("process: ") && $0.contains("sleep 600") })

    // While this process (its owner) lives, another test process's `up` must not replace it.
    let other = Process()
    other.executableURL = URL(fileURLWithPath: try #require(TestFleet.scriptPath))
    other.arguments = ["--id", String(id), "up", "1"]
    other.environment = ProcessInfo.processInfo.environment.merging(["FLEETSYNC_TESTFLEET_OWNER": "1"]) { $1 }
    other.standardOutput = FileHandle.nullDevice
    other.standardError = FileHandle.nullDevice
    try other.run()
    other.waitUntilExit()
    #expect(other.terminationStatus == 3)
    #expect(try fleet.openSSH(fleet.node(2), "hostname").output == fleet.node(2).name + "\n")

    // Simulate a crash mid-way: the holder of node 2 dies, the fleet description is gone.
    let pid = try String(contentsOfFile: "\(fleet.stateDir)/nodes/n2/holder.pid", encoding: .utf8)
    #expect(kill(pid_t(pid.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0, SIGKILL) == 0)
    try FileManager.default.removeItem(atPath: "\(fleet.stateDir)/fleet.json")

    try fleet.down()
    #expect(try TestFleet.leftovers(id: id) == [])
    // A node of a fleet that is gone is an error, not a command's exit status.
    #expect(throws: FleetError.self) { try fleet.run(on: fleet.node(1), "true") }
    // Idempotent.
    try fleet.down()
    #expect(try TestFleet.leftovers(id: id) == [])
  }
}
