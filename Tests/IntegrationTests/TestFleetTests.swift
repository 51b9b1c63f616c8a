import FleetCore
import FleetTestSupport
import Foundation
import Testing

/// The test fleet itself: real namespaces, real sshd, checked with OpenSSH's own client.
@Suite("Test fleet", .serialized, .enabled(if: TestFleet.isSupported, "needs root, ip, sshd, unshare, nsenter"))
struct TestFleetTests {
  /// Polls `condition` every 100 ms until it holds or `seconds` pass; returns whether it held.
  func eventually(within seconds: Double, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    repeat {
      if try condition() { return true }
      Thread.sleep(forTimeInterval: 0.1)
    } while Date() < deadline
    return try condition()
  }

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
    let askpass = "\(fleet.stateDir)/askpass-\(UInt32.random(in: 0...UInt32.max))"
    try "#!/bin/sh\ncat \(try ShellQuote.quote(fleet.stateDir + "/passphrase"))\n"
      .write(toFile: askpass, atomically: true, encoding: .utf8)
    defer { try? FileManager.default.removeItem(atPath: askpass) }
    try FileManager.default.setAttributes([.posixPermissions: 0o700], ofItemAtPath: askpass)
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/ssh")
    process.arguments = [
      "-i", fleet.ecdsaKey, "-o", "IdentitiesOnly=yes", "-o", "UserKnownHostsFile=\(fleet.knownHosts)",
      "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=5", "root@\(node.address)", "echo ecdsa-ok",
    ]
    var env = ProcessInfo.processInfo.environment
    env["SSH_ASKPASS"] = askpass
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

  @Test("cut makes a node unreachable and restore brings it back")
  func cutAndRestore() async throws {
    let fleet = try await TestFleet.shared(nodes: 5)
    let node = fleet.node(3)
    try fleet.cut(node)
    let whileCut = try fleet.openSSH(node, "true", connectTimeout: 2)
    try fleet.restore(node)
    #expect(whileCut.status == 255)
    #expect(try eventually(within: 20) { try fleet.openSSH(node, "true").status == 0 })
    // Another node was never affected.
    #expect(try fleet.openSSH(fleet.node(4), "true").status == 0)
  }

  @Test("sshd-kill refuses new connections, sshd-start serves them again")
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

  @Test("reset-hostkey changes the node's host key and updates known_hosts")
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

    // Simulate a crash mid-way: the holder of node 2 dies, the fleet description is gone.
    let pid = try String(contentsOfFile: "\(fleet.stateDir)/nodes/n2/holder.pid", encoding: .utf8)
    #expect(kill(pid_t(pid.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0, SIGKILL) == 0)
    try FileManager.default.removeItem(atPath: "\(fleet.stateDir)/fleet.json")

    try fleet.down()
    #expect(try TestFleet.leftovers(id: id) == [])
    // Idempotent.
    try fleet.down()
    #expect(try TestFleet.leftovers(id: id) == [])
  }
}
