import FleetCore
import FleetInventory
import Foundation
import Testing

/// Mutual backup: nfs-a and nfs-b each protect a directory and keep the other's backup.
private let mutual = """
  groups:
    east: { ssh: { port: 2222 } }
  sources:
    nfs-a:
      address: 10.0.0.11
      groups: [east]
      directories:
        data: { path: /srv/data, to: [nfs-b/from-a] }
    nfs-b:
      address: 10.0.0.12
      groups: [east]
      directories:
        data: { path: /srv/data, to: [nfs-a/from-b] }
  backups:
    nfs-a:
      address: 10.0.0.11
      groups: [east]
      daemons: { main: { modules: { from-b: /srv/backup/nfs-b } } }
    nfs-b:
      address: 10.0.0.12
      groups: [east]
      daemons: { main: { modules: { from-a: /srv/backup/nfs-a } } }
  """

/// A source and a backup on two addresses; cases put `SOURCE` and `BACKUP` (address, then an
/// optional `ssh:` line) in their places.
private func twoHosts(source: String, backup: String, sourcePort: Int? = nil, backupPort: Int? = nil)
  -> String
{
  func ssh(_ port: Int?) -> String { port.map { "\n    ssh: { port: \($0) }" } ?? "" }
  return """
    backups:
      bk1:
        address: "\(backup)"\(ssh(backupPort))
        daemons: { main: { modules: { home: /srv/backup/home } } }
    sources:
      nfs1:
        address: "\(source)"\(ssh(sourcePort))
        directories:
          home: { path: /srv/nfs/home, to: [bk1/home] }
    """
}

private func issues(_ yaml: String) -> [InventoryIssue] {
  do {
    _ = try Inventory.parse(yaml: yaml, file: "inv.yaml")
    return []
  } catch let error as FleetError {
    return (error.cause as? InventoryIssues)?.issues ?? []
  } catch {
    return [InventoryIssue(file: "", line: 0, column: 0, message: "\(error)")]
  }
}

@Suite struct MachinesTests {
  @Test func aHostWithBothRolesIsOneHost() throws {
    let inventory = try Inventory.parse(yaml: mutual, file: "inv.yaml")
    #expect(inventory.hosts.map(\.name) == ["nfs-a", "nfs-b"])
    #expect(inventory.hosts.allSatisfy { $0.roles == [.source, .backup] })
    #expect(inventory.hosts.allSatisfy { $0.ssh.port == 2222 && $0.groups == ["east"] })
    #expect(inventory.source(named: "nfs-a")?.directories.map(\.path) == ["/srv/data"])
    #expect(inventory.backup(named: "nfs-a")?.module(named: "from-b")?.module.path == "/srv/backup/nfs-b")
    #expect(inventory.senders(backup: "nfs-a", module: "from-b") == ["10.0.0.12"])
  }

  @Test func hostsOfOneRoleKeepIt() throws {
    let inventory = try Inventory.parse(yaml: twoHosts(source: "10.0.0.11", backup: "10.0.0.21"), file: "i")
    #expect(inventory.hosts.map(\.name) == ["nfs1", "bk1"])
    #expect(inventory.hosts.map(\.roles) == [[.source], [.backup]])
  }

  /// Spellings of one machine: each pair under two names is refused at the second name's address.
  static let oneMachine: [(String, String)] = [
    ("10.0.0.5", "10.0.0.5"),
    ("10.0.0.5", "10.5"),
    ("10.0.0.5", "0x0a000005"),
    ("10.0.0.5", "::ffff:10.0.0.5"),
    ("localhost", "127.0.0.1"),
    ("127.0.0.1", "127.0.1.1"),
    ("localhost.", "::1"),
    ("a.localhost", "0.0.0.0"),
    ("fd00::1", "FD00:0:0::0001"),
    ("nfs1.example.org", "NFS1.Example.org."),
  ]

  @Test(arguments: oneMachine)
  func oneAddressUnderTwoNamesIsRefused(_ pair: (String, String)) {
    let found = issues(twoHosts(source: pair.0, backup: pair.1))
    #expect(found.count == 1, "\(found)")
    let issue = found.first
    #expect(
      issue?.message.contains("backup bk1 and source nfs1 (line 7) are one machine under two names") == true)
    #expect(issue?.message.contains("port 22") == true)
    #expect(issue?.hint?.contains("use one name for both roles") == true)
    #expect(issue.map { "\($0.file):\($0.line):\($0.column)" } == "inv.yaml:3:14")
  }

  /// Different machines, or one address with two SSH ports (port forwarding to two containers).
  static let twoMachines: [(String, String, Int?, Int?)] = [
    ("10.0.0.5", "10.0.0.6", nil, nil),
    ("10.0.0.5", "10.0.0.5", 2201, 2202),
    ("localhost", "127.0.0.1", 22, 2222),
    ("fd00::1", "fd00::2", nil, nil),
    ("nfs1.example.org", "bk1.example.org", nil, nil),
    ("10.0.0.5", "fd00::10.0.0.5", nil, nil),
  ]

  @Test(arguments: twoMachines)
  func distinctAddressesOrPortsAreTwoMachines(_ c: (String, String, Int?, Int?)) {
    #expect(issues(twoHosts(source: c.0, backup: c.1, sourcePort: c.2, backupPort: c.3)).isEmpty)
  }

  @Test func bothRolesNeedOneAddress() {
    let yaml = mutual.replacingOccurrences(
      of: "  nfs-b:\n    address: 10.0.0.12\n    groups: [east]\n    daemons",
      with: "  nfs-b:\n    address: 10.0.0.99\n    groups: [east]\n    daemons")
    let found = issues(yaml)
    #expect(found.count == 1, "\(found)")
    #expect(
      found.first?.message.contains(
        "nfs-b is under `sources:` at 10.0.0.12 and under `backups:` at 10.0.0.99") == true)
    #expect(found.first.map { "\($0.line):\($0.column)" } == "20:14")
  }

  @Test func bothRolesNeedOneWayIn() {
    let yaml = mutual.replacingOccurrences(
      of: "  nfs-a:\n    address: 10.0.0.11\n    groups: [east]\n    daemons",
      with: "  nfs-a:\n    address: 10.0.0.11\n    ssh: { user: backup }\n    daemons")
    let found = issues(yaml)
    #expect(found.count == 1, "\(found)")
    #expect(
      found.first?.message.contains(
        "nfs-a is reached differently as a source and as a backup (ssh user, port differ)") == true)
    #expect(found.first?.line == 16)
  }

  /// On a host with both roles a module inside a protected directory (or around it) is refused.
  @Test(arguments: ["/srv/data/from-b", "/srv/data", "/srv"])
  func backupsKeptInsideProtectedDataAreRefused(_ module: String) {
    let yaml = mutual.replacingOccurrences(of: "from-b: /srv/backup/nfs-b", with: "from-b: \(module)")
    let found = issues(yaml)
    #expect(found.count == 1, "\(found)")
    #expect(
      found.first?.message.contains(
        "module from-b on nfs-a at \(module) overlaps directory data (/srv/data) that nfs-a protects") == true
    )
    #expect(found.first?.line == 18)
  }

  /// The same paths on two different machines are fine: each is on its own disk.
  @Test func theSamePathsOnTwoMachinesAreFine() {
    let yaml = twoHosts(source: "10.0.0.11", backup: "10.0.0.21")
      .replacingOccurrences(of: "/srv/backup/home", with: "/srv/nfs/home")
    #expect(issues(yaml).isEmpty)
  }
}
