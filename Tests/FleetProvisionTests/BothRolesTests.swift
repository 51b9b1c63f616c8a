import FleetCore
import FleetInventory
import Foundation
import Testing

@testable import FleetProvision

/// Mutual backup: nfs-a and nfs-b each protect /srv/data and keep the other's backup.
let mutualInventory = """
  sources:
    nfs-a:
      address: 10.0.0.11
      directories:
        data: { path: /srv/data, to: [nfs-b/from-a] }
    nfs-b:
      address: 10.0.0.12
      directories:
        data: { path: /srv/data, to: [nfs-a/from-b] }
  backups:
    nfs-a:
      address: 10.0.0.11
      daemons: { main: { modules: { from-b: /srv/backup/nfs-b } } }
    nfs-b:
      address: 10.0.0.12
      daemons: { main: { modules: { from-a: /srv/backup/nfs-a } } }
  """

/// A host that is a source and a backup: one node, one manifest, both roles' files and services.
@Suite struct BothRolesTests {
  /// What each role installs on a node of ``mutualInventory``.
  static func expected(_ node: String) -> (watcher: String, files: [String]) {
    let watcher = "data:\(node == "nfs-a" ? "nfs-b:from-a" : "nfs-a:from-b")"
    return (
      "watch@\(watcher)",
      [
        Layout.rsyncdConf("main"), Layout.rsyncdSecrets("main"), Layout.watchConf(watcher),
        Layout.watchPassword(watcher), Layout.watchBinary,
      ]
    )
  }

  @Test(arguments: [Set<String>(), ["nfs-a", "nfs-b"], ["nfs-b"]])
  func upInstallsBothRolesAndASecondUpChangesNothing(systemd: Set<String>) async throws {
    let fleet = try FakeFleet(mutualInventory, systemd: systemd)
    let first = try await fleet.up(mutualInventory)
    #expect(first.keys.sorted() == ["nfs-a", "nfs-b"])
    #expect(first.values.allSatisfy { $0.outcome == .changed }, "\(first.values.map(\.outcome))")
    for name in ["nfs-a", "nfs-b"] {
      let state = fleet[name].state
      let (watcher, files) = Self.expected(name)
      #expect(state.running.keys.sorted() == ["rsyncd@main", watcher], "\(name)")
      #expect(state.manifest?.services.keys.sorted() == ["rsyncd@main", watcher], "\(name)")
      for file in files { #expect(state.manifest?.files[file] != nil, "\(name): \(file)") }
      #expect(state.differencesFromRecord == [], "\(name)")
      #expect(state.sysctl["fs.inotify.max_user_watches"] == 1_048_576)
      #expect(state.manifest?.dataDirectories.count == 1)
    }
    // Each backup admits the other source only.
    let conf = String(decoding: fleet["nfs-a"].state.files[Layout.rsyncdConf("main")] ?? [], as: UTF8.self)
    #expect(conf.contains("hosts allow = 10.0.0.12\n"))

    for host in fleet.hosts.values { host.heal() }
    let second = try await fleet.up(mutualInventory)
    #expect(second.values.allSatisfy { $0.outcome == .ok }, "\(second.values.map(\.outcome))")
    #expect(second.values.allSatisfy { $0.plan?.isEmpty == true })
    for host in fleet.hosts.values {
      #expect(host.state.steps.filter(\.mutates) == [], "\(host.name)")
      #expect(host.state.running.count == 2)
    }
    #expect(fleet.unknownCommands == [])
  }

  /// `plan` of a host with both roles lists what both install, as one host.
  @Test func planShowsBothRolesOfAHost() async throws {
    let fleet = try FakeFleet(mutualInventory)
    let report = try await fleet.provisioner(mutualInventory).plan()
    let plan = try #require(report.hosts.first { $0.host == "nfs-a" }?.plan)
    #expect(plan.services.map(\.service.description).sorted() == ["rsyncd@main", "watch@data:nfs-b:from-a"])
    #expect(Set(Self.expected("nfs-a").files).isSubset(of: plan.files.map(\.path)))
  }

  @Test func downRemovesBothRolesAndNothingElse() async throws {
    let fleet = try FakeFleet(mutualInventory, systemd: ["nfs-b"])
    let before = fleet.hosts.mapValues { $0.state }
    for name in ["nfs-a", "nfs-b"] {
      fleet[name].change { $0.files["/srv/data/report.txt"] = Array("the operator's data\n".utf8) }
    }
    _ = try await fleet.up(mutualInventory)
    let report = try await fleet.provisioner(mutualInventory).down()
    #expect(report.hosts.allSatisfy { $0.outcome == .changed })
    for name in ["nfs-a", "nfs-b"] {
      let state = fleet[name].state
      let start = try #require(before[name])
      #expect(state.running.isEmpty, "\(name)")
      #expect(state.files.keys.sorted() == ["/srv/data/report.txt"], "\(name)")
      #expect(state.sysctl == start.sysctl)
      // fleetsync's own directories are gone; the backup data it received stays.
      let backup = "/srv/backup/\(name == "nfs-a" ? "nfs-b" : "nfs-a")"
      #expect(state.directories == start.directories.union([backup, "/srv/backup"]), "\(name)")
    }
    #expect(fleet.unknownCommands == [])
  }

  /// ``fakeInventory`` with bk1's node also listed as source nfs1, at an address the inventory
  /// cannot tell from bk1's (a DNS alias); bk1's role is installed (by `up --limit nfs2,bk1`).
  static func oneMachineUnderTwoNames(tells: Bool = true) async throws -> (FakeFleet, String) {
    let yaml = fakeInventory.replacingOccurrences(of: "address: 10.0.0.11", with: "address: nfs1.example.org")
    let fleet = try FakeFleet(yaml, aliases: ["nfs1": "bk1"])
    if !tells { fleet["bk1"].change { $0.identity = nil } }
    _ = try await fleet.provisioner(yaml, limit: ["nfs2", "bk1"]).up()
    #expect(fleet["bk1"].state.running.keys.sorted() == ["rsyncd@main"])
    for host in fleet.hosts.values { host.heal() }
    return (fleet, yaml)
  }

  /// One machine under two names, found from its facts: the run is refused before any write.
  /// Without the check, nfs1's `up` removes bk1's daemon and `down` removes it as nfs1's.
  @Test(arguments: ["up", "down"])
  func oneMachineUnderTwoNamesIsRefusedBeforeAnyWrite(command: String) async throws {
    let (fleet, yaml) = try await Self.oneMachineUnderTwoNames()
    let provisioner = try fleet.provisioner(yaml)
    do {
      _ = try await (command == "up" ? provisioner.up() : provisioner.down())
      Issue.record("\(command) ran on one machine under two names")
    } catch let error as FleetError {
      #expect(error.code == .sameMachine)
      #expect(error.message.contains("bk1 and nfs1 are one machine under two names"), "\(error.message)")
      #expect(error.message.contains("Nothing was changed on any host"))
    }
    #expect(fleet["bk1"].state.steps.filter(\.mutates) == [])
    #expect(fleet["bk1"].state.running.keys.sorted() == ["rsyncd@main"])
  }

  /// The same, on a node that does not tell which machine it is, with `--limit` naming the other
  /// name only: its manifest says whose it is, and that host is left alone.
  @Test(arguments: ["up", "down"])
  func aMachineRecordedUnderAnotherNameIsLeftAlone(command: String) async throws {
    let (fleet, yaml) = try await Self.oneMachineUnderTwoNames(tells: false)
    let manifest = fleet["bk1"].state.manifest
    #expect(manifest?.host == "bk1")
    let provisioner = try fleet.provisioner(yaml, limit: ["nfs1"])
    let report = try await (command == "up" ? provisioner.up() : provisioner.down())
    let failure = try #require(report.hosts.first { $0.host == "nfs1" }?.failure)
    #expect(failure.contains("nfs1 is the machine fleetsync provisioned as bk1"), "\(failure)")
    #expect(failure.contains("Nothing was changed on it"))
    #expect(fleet["bk1"].state.steps.filter(\.mutates) == [])
    #expect(fleet["bk1"].state.manifest == manifest)
    #expect(fleet["bk1"].state.running.keys.sorted() == ["rsyncd@main"])
  }

  /// The facts name a machine only when the host tells both its boot id and its `/etc`.
  @Test func factsNameTheMachineByBootIdAndEtc() throws {
    let both = try HostFacts.parse("@@machine\n0b5c1e7a-1d2e-4f00-9a3b-2c1d0e9f8a7b\n2049:131073\n@@end\n")
    #expect(both.machine == "0b5c1e7a-1d2e-4f00-9a3b-2c1d0e9f8a7b 2049:131073")
    #expect(try HostFacts.parse("@@machine\n0b5c1e7a-1d2e-4f00-9a3b-2c1d0e9f8a7b\n@@end\n").machine == nil)
    #expect(try HostFacts.parse("@@systemd\nno\n@@end\n").machine == nil)
  }

  /// A host renamed in the inventory takes over its node's record (the old name is gone).
  @Test func aRenamedHostTakesItsNodeOver() async throws {
    let fleet = try FakeFleet(aliases: ["bk-new": "bk1"])
    _ = try await fleet.up()
    let renamed = fakeInventory.replacingOccurrences(of: "bk1", with: "bk-new")
    let report = try await fleet.up(renamed)
    #expect(report.values.allSatisfy { $0.outcome.succeeded }, "\(report.values.map(\.outcome))")
    #expect(fleet["bk1"].state.manifest?.host == "bk-new")
    #expect(fleet["bk1"].state.differencesFromRecord == [])
  }
}
