import FleetTestSupport
import Foundation
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// The real `fleetsync` binary's exit statuses and recaps for hosts that cannot be reached in different
/// ways, and for usage errors (no test fleet needed: everything is on 127.0.0.1).
@Suite struct ExitStatusTests {
  /// A TCP port that is not an SSH server: it never says anything, or it hangs up at once.
  final class NotSSH {
    let fd: Int32
    let port: Int
    private var hangUp: Thread?

    init(hangsUp: Bool) throws {
      (fd, port) = try LocalPorts.occupy()
      guard hangsUp else { return }
      let fd = fd
      hangUp = Thread {
        // Ends when deinit shuts the socket down (accept then fails).
        while true {
          let client = accept(fd, nil, nil)
          if client >= 0 {
            close(client)
          } else if errno != EINTR {
            return
          }
        }
      }
      hangUp?.start()
    }

    deinit {
      shutdown(fd, Int32(SHUT_RDWR))
      while let hangUp, !hangUp.isFinished { usleep(1000) }
      close(fd)
    }
  }

  static func tempDir() throws -> String {
    let dir = NSTemporaryDirectory() + "fleetsync-exit-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
  }

  /// Writes `dir/fleet.yaml`: one backup host on 127.0.0.1 at a port nothing listens on.
  static func writeUnreachableInventory(in dir: String) throws {
    try """
    defaults:
      ssh: { port: \(LocalPorts.free()), connect_timeout: 1, known_hosts: \(dir)/known_hosts }
    backups:
      bk1: { address: 127.0.0.1, daemons: { main: { modules: { m: /srv/backup/m } } } }
    """.write(toFile: dir + "/fleet.yaml", atomically: true, encoding: .utf8)
  }

  /// `--limit` naming no host is a usage error, and every command ends as such (the SSH client it made
  /// is shut down: debug builds assert on a client released without it).
  @Test func unknownLimitIsAUsageErrorForEveryCommand() throws {
    let dir = try Self.tempDir()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try Self.writeUnreachableInventory(in: dir)
    for command in ["plan", "up", "down", "status"] {
      let result = try CLI.run("fleetsync", [command, "-i", dir + "/fleet.yaml", "--limit", "nope"])
      #expect(result.status == 64, "\(command): exit \(result.status)\n\(result.stderr)")
      #expect(result.stderr.contains("--limit names nope"), "\(command): \(result.stderr)")
    }
  }

  /// Refused, silent and hanging-up ports are all unreachable: no SSH session came about.
  @Test func hostsWithoutAnSSHSessionAreUnreachable() throws {
    let silent = try NotSSH(hangsUp: false)
    let hangsUp = try NotSSH(hangsUp: true)
    let dir = try Self.tempDir()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let refused = LocalPorts.free()
    let result = try CLI.run(
      "fleetsync",
      [
        "exec", "--identity", dir + "/no-key", "--known-hosts", dir + "/known_hosts", "--connect-timeout",
        "2",
        "--host", "root@127.0.0.1:\(refused)", "--host", "root@127.0.0.1:\(silent.port)",
        "--host", "root@127.0.0.1:\(hangsUp.port)", "--", "true",
      ])
    #expect(result.status == 3, "exit \(result.status)\n\(result.stdout)\(result.stderr)")
    #expect(result.stdout.contains("recap: 0 ok, 0 failed, 3 unreachable, 0 auth"), "\(result.stdout)")
    for port in [refused, silent.port, hangsUp.port] {
      #expect(result.stdout.contains("==> root@127.0.0.1:\(port) (unreachable: "), "\(result.stdout)")
    }
  }

  /// `status` exits like every multi-host command: 3 for a host it cannot reach (it used 2 for every problem).
  @Test func statusExitsUnreachableForAnUnreachableHost() throws {
    let dir = try Self.tempDir()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try Self.writeUnreachableInventory(in: dir)
    let result = try CLI.run("fleetsync", ["status", "-i", dir + "/fleet.yaml"])
    #expect(result.status == 3, "exit \(result.status)\n\(result.stdout)\(result.stderr)")
    #expect(result.stdout.contains("unreachable"), "\(result.stdout)")
  }
}
