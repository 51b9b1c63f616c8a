import FleetCore
import Yams

// Machines: a name under both `sources:` and `backups:` is one host with both roles, and one
// machine may not be listed under two names (each name's `up` and `down` would remove what the
// other installed: fleetsync keeps one record per machine).
extension InventoryReader {
  /// Checks the hosts that have both roles, then that no two names share an address.
  mutating func checkMachines(sources: [SourceHost], backups: [BackupHost]) {
    for backup in backups {
      if let source = sources.first(where: { $0.name == backup.name }) { checkBothRoles(source, backup) }
    }
    checkAddresses(sources: sources, backups: backups)
  }

  /// The two entries of a host with both roles describe one machine: one address, one way in; and
  /// the data it protects and the backups it keeps stay apart.
  mutating func checkBothRoles(_ source: SourceHost, _ backup: BackupHost) {
    let name = source.name
    let at = addressNodes["backup \(name)"]
    if HostAddress(source.address) != HostAddress(backup.address) {
      issue(
        at,
        "\(name) is under `sources:` at \(source.address) and under `backups:` at \(backup.address): "
          + "one name under both is one machine with both roles",
        hint: "give both entries the same address; two machines need two names")
    }
    let differing = Self.differences(source.ssh, backup.ssh)
    if !differing.isEmpty {
      issue(
        at,
        "\(name) is reached differently as a source and as a backup (ssh \(differing.joined(separator: ", "))"
          + " differ): fleetsync works on one machine over one connection",
        hint: "give both entries the same `ssh:` settings (or set them once in `defaults:` or a shared group)"
      )
    }
    for daemon in backup.daemons {
      for module in daemon.modules {
        for directory in source.directories where Self.overlaps(directory.path, module.path) {
          issue(
            moduleNodes["\(name)/\(module.name)"],
            "module \(module.name) on \(name) at \(module.path) overlaps directory \(directory.name) "
              + "(\(directory.path)) that \(name) protects: the sync into the module deletes what its sender "
              + "lacks, wiping protected files, and the watcher sends what arrives back out again",
            hint:
              "keep the backups a host receives beside the data it protects (e.g. /srv/backup/… and /srv/data/…)"
          )
        }
      }
    }
  }

  /// Names of the SSH settings that differ between `a` and `b`.
  static func differences(_ a: SSHSettings, _ b: SSHSettings) -> [String] {
    var out: [String] = []
    if a.user != b.user { out.append("user") }
    if a.port != b.port { out.append("port") }
    if a.identity != b.identity { out.append("identity") }
    if a.passphraseFile != b.passphraseFile { out.append("passphrase_file") }
    if a.knownHosts != b.knownHosts { out.append("known_hosts") }
    if a.hostKeyPolicy != b.hostKeyPolicy { out.append("host_key_policy") }
    if a.connectTimeout != b.connectTimeout { out.append("connect_timeout") }
    return out
  }

  /// No two names reach one address and SSH port (see ``HostAddress`` for which spellings are one
  /// address). One address with two SSH ports is allowed: port forwarding to two containers is two
  /// machines; when it is one, `fleetsync` finds it from the hosts' facts before it changes anything.
  mutating func checkAddresses(sources: [SourceHost], backups: [BackupHost]) {
    let sourceNames = Set(sources.map(\.name))
    let entries =
      sources.map { (kind: "source", name: $0.name, address: $0.address, port: $0.ssh.port) }
      + backups.filter { !sourceNames.contains($0.name) }.map {
        (kind: "backup", name: $0.name, address: $0.address, port: $0.ssh.port)
      }
    var seen: [String: (kind: String, name: String, address: String)] = [:]
    for entry in entries {
      let key = "\(HostAddress(entry.address)) port \(entry.port)"
      guard let first = seen[key] else {
        seen[key] = (entry.kind, entry.name, entry.address)
        continue
      }
      let line = addressNodes["\(first.kind) \(first.name)"]?.mark?.line ?? 0
      let same = first.address == entry.address ? entry.address : "\(first.address) and \(entry.address)"
      issue(
        addressNodes["\(entry.kind) \(entry.name)"],
        "\(entry.kind) \(entry.name) and \(first.kind) \(first.name) (line \(line)) are one machine under two "
          + "names (\(same), SSH port \(entry.port)): fleetsync keeps one record per machine, so each name's "
          + "`up` and `down` would remove what the other installed",
        hint:
          "list the machine once: use one name for both roles (the same name under `sources:` and `backups:`); "
          + "two machines behind one address (port forwarding) need different SSH ports")
    }
  }
}
