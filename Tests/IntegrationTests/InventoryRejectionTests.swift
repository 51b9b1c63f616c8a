import FleetTestSupport
import Foundation
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// A bad inventory is refused by the real `fleetsync` binary before any host is contacted.
@Suite struct InventoryRejectionTests {
  /// A TCP listener on 127.0.0.1 that counts connection attempts (standing in for every host's sshd).
  final class Listener {
    let fd: Int32
    let port: Int

    init() throws {
      (fd, port) = try LocalPorts.occupy()
      _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    }

    /// Connections that arrived so far.
    func accepted() -> Int {
      var count = 0
      while true {
        let client = accept(fd, nil, nil)
        if client < 0 { return count }
        close(client)
        count += 1
      }
    }

    deinit { close(fd) }
  }

  static let cases: [(name: String, edit: String)] = [
    ("injection in a path", "        a: { path: \"/srv/$(reboot)\", to: [bk1/m] }"),
    ("relative path", "        a: { path: srv/data, to: [bk1/m] }"),
    ("unknown backup", "        a: { path: /srv/data, to: [bk9/m] }"),
    ("unknown key", "        a: { path: /srv/data, to: [bk1/m], workerz: 3 }"),
    ("YAML syntax", "        a: { path: /srv/data, to: [bk1/m]"),
  ]

  @Test(arguments: cases.map(\.name))
  func badInventoryContactsNoHost(name: String) throws {
    let edit = try #require(Self.cases.first { $0.name == name }?.edit)
    let listener = try Listener()
    let dir = NSTemporaryDirectory() + "fleetsync-reject-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let yaml = """
      defaults:
        ssh: { port: \(listener.port), connect_timeout: 2 }
      backups:
        bk1: { address: 127.0.0.1, daemons: { main: { modules: { m: /srv/backup/m } } } }
      sources:
        s1:
          address: 127.0.0.1
          directories:
      \(edit)

      """
    try yaml.write(toFile: dir + "/fleet.yaml", atomically: true, encoding: .utf8)
    for command in ["plan", "up", "down", "status"] {
      let result = try CLI.run("fleetsync", [command, "-i", dir + "/fleet.yaml"])
      #expect(result.status == 65, "\(command): exit \(result.status)\n\(result.stderr)")
      #expect(result.stderr.contains("fleet.yaml:"), "\(command) names the file and line: \(result.stderr)")
      #expect(result.stderr.contains("no host was contacted"))
    }
    #expect(listener.accepted() == 0, "a host was contacted despite the invalid inventory")
    #expect(!FileManager.default.fileExists(atPath: dir + "/fleet.secrets"), "nothing written locally either")
  }

  /// The control case: a valid inventory does contact the host (so the listener can see contacts).
  @Test func validInventoryDoesContactTheHost() throws {
    let listener = try Listener()
    let dir = NSTemporaryDirectory() + "fleetsync-reject-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let yaml = """
      defaults:
        ssh: { port: \(listener.port), connect_timeout: 1, known_hosts: \(dir)/known_hosts }
      backups:
        bk1: { address: 127.0.0.1, daemons: { main: { modules: { m: /srv/backup/m } } } }
      """
    try yaml.write(toFile: dir + "/fleet.yaml", atomically: true, encoding: .utf8)
    let result = try CLI.run("fleetsync", ["status", "-i", dir + "/fleet.yaml"])
    #expect(result.status != 0)
    #expect(listener.accepted() >= 1)
  }
}
