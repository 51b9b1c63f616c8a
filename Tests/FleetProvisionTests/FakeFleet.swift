import FleetCore
import FleetInventory
import Foundation

@testable import FleetProvision

/// Two sources sending to one backup: the inventory most fake-fleet tests run.
let fakeInventory = """
  backups:
    bk1:
      address: 10.0.0.21
      daemons:
        main:
          modules:
            home: /srv/backup/home
            proj: /srv/backup/proj
  sources:
    nfs1:
      address: 10.0.0.11
      directories:
        home: { path: /srv/nfs/home, to: [bk1/home], excludes: ["*.tmp"] }
    nfs2:
      address: 10.0.0.12
      directories:
        proj: { path: /srv/nfs/proj, to: [bk1/proj] }
  """

/// ``fakeInventory`` after an edit on nfs1: directory `home` replaced by `docs`.
let fakeInventoryEdited = fakeInventory.replacingOccurrences(
  of: #"home: { path: /srv/nfs/home, to: [bk1/home], excludes: ["*.tmp"] }"#,
  with: "docs: { path: /srv/nfs/docs, to: [bk1/home] }")

/// A fleet of ``FakeRemoteHost``s for an inventory, with the controller's files (inventory path,
/// secrets, port book, agent binary) in a fresh temporary directory.
struct FakeFleet {
  /// The controller's directory.
  let dir: String
  /// The nodes, by inventory name.
  let hosts: [String: FakeRemoteHost]

  /// Makes fresh nodes for every host of `yaml`; the hosts named in `systemd` boot systemd. Each
  /// name in `aliases` reaches the node of the name it maps to (one machine under two names).
  init(_ yaml: String = fakeInventory, systemd: Set<String> = [], aliases: [String: String] = [:]) throws {
    dir = NSTemporaryDirectory() + "fleetsync-fake-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let binary = dir + "/fleetsync-watch"
    guard
      FileManager.default.createFile(
        atPath: binary, contents: Data("#!/bin/sh\nexit 0\n".utf8), attributes: [.posixPermissions: 0o755])
    else { throw FleetError(.io, "cannot create \(binary)") }
    let inventory = try Inventory.parse(yaml: yaml, file: dir + "/inv.yaml")
    var hosts = Dictionary(
      uniqueKeysWithValues: inventory.hosts.map {
        ($0.name, FakeRemoteHost(name: $0.name, systemd: systemd.contains($0.name)))
      })
    for (alias, name) in aliases { hosts[alias] = hosts[name] }
    self.hosts = hosts
  }

  /// The node named `name`.
  subscript(_ name: String) -> FakeRemoteHost { hosts[name]! }

  /// The inventory `yaml`, as if kept in this fleet's controller directory.
  func inventory(_ yaml: String = fakeInventory) throws -> Inventory {
    try Inventory.parse(yaml: yaml, file: dir + "/inv.yaml")
  }

  /// A provisioner for `yaml` over the fake nodes.
  func provisioner(
    _ yaml: String = fakeInventory, limit: [String] = [], unreachable: Set<String> = [],
    newSecrets: Bool = false
  ) throws -> Provisioner {
    var options = ProvisionOptions()
    options.newSecrets = newSecrets
    options.watchBinary = dir + "/fleetsync-watch"
    options.healthDeadline = 5
    options.limit = limit
    return try Provisioner(
      inventory: try inventory(yaml), connector: FakeConnector(hosts: hosts, unreachable: unreachable),
      options: options)
  }

  /// Runs `up` and returns the reports by host name.
  func up(_ yaml: String = fakeInventory) async throws -> [String: HostReport] {
    Dictionary(uniqueKeysWithValues: try await provisioner(yaml).up().hosts.map { ($0.host, $0) })
  }

  /// Commands no fake node understood (a test expects none).
  var unknownCommands: [String] {
    hosts.values.flatMap { host in
      host.state.steps.compactMap { if case .unknown(let line) = $0 { line } else { nil } }
    }
  }
}

extension HostReport {
  /// Why the host did not come through (failed, auth or unreachable), nil when it did.
  var failure: String? { outcome.succeeded ? nil : outcome.detail }
}

extension FakeRemoteHost.Machine {
  /// The manifest on the node, if any.
  var manifest: Manifest? {
    files[Layout.manifest].flatMap { try? JSONDecoder().decode(Manifest.self, from: Data($0)) }
  }

  /// The config file of instance `name` (`kind@instance`).
  static func configPath(_ name: String) -> String {
    let instance = String(name.drop { $0 != "@" }.dropFirst())
    return name.hasPrefix("rsyncd@") ? Layout.rsyncdConf(instance) : Layout.watchConf(instance)
  }

  /// What fleetsync made on the node that its manifest does not list: managed files and running
  /// instances (an interrupted run must never leave any).
  var offRecord: [String] {
    let manifest = self.manifest
    let files = self.files.keys.filter {
      FakeRemoteHost.isManaged($0) && $0 != Layout.manifest && manifest?.files[$0] == nil
    }
    let services = running.keys.filter { manifest?.services[$0] == nil }
    return (files + services).sorted()
  }

  /// Where the node differs from its own record: a listed file missing or with other content, a
  /// listed instance not running, anything unlisted. Empty when a run converged.
  var differencesFromRecord: [String] {
    guard let manifest else { return ["no manifest"] }
    var out = offRecord
    for (path, file) in manifest.files where files[path].map(Digest.sha256Hex) != file.sha256 {
      out.append("\(path) differs from the manifest")
    }
    for name in manifest.services.keys where running[name] == nil { out.append("\(name) not running") }
    for name in running.keys where startedWith[name] != files[Self.configPath(name)] {
      out.append("\(name) runs an older config than the one on disk")
    }
    return out.sorted()
  }
}
