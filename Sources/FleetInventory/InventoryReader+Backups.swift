import FleetCore
import FleetWire
import Yams

// Backup hosts: their rsync daemons and modules, and the check that every `to:` names one.
extension InventoryReader {
  /// What must be unique across one backup host's daemons: ports, module names, module paths.
  struct BackupNames {
    var ports: [Int: Node] = [:]
    var modules: [String: Node] = [:]
    var paths: [String: Node] = [:]
  }

  mutating func backup(_ name: String, _ node: Node, inherited: Inherited) -> BackupHost? {
    guard let body = mapping(node, "backup \(name)", keys: InventoryKeys.backup) else { return nil }
    guard let common = hostCommon(name, body, kind: "backup", inherited: inherited) else { return nil }
    var ssh = SSHSettings()
    var rsync = RsyncSettings()
    for layer in common.layers {
      layer.ssh.forEach { $0(&ssh) }
      layer.rsync.forEach { $0(&rsync) }
    }
    guard let daemonsNode = body["daemons"],
      let entries = mapping(daemonsNode.value, "backup \(name): daemons", keys: nil)
    else {
      if body["daemons"] == nil {
        issue(
          body.node, "backup \(name) has no `daemons:`",
          hint: "add `daemons: { main: { modules: { home: /srv/backup/home } } }`")
      }
      return nil
    }
    var names = BackupNames()
    var daemons: [RsyncDaemon] = []
    for entry in entries.pairs {
      guard let daemonName = self.name(entry.key, "daemon") else { continue }
      if let daemon = daemon(daemonName, entry.value, host: name, inherited: rsync, names: &names) {
        daemons.append(daemon)
      }
    }
    return BackupHost(name: name, address: common.address, groups: common.groups, ssh: ssh, daemons: daemons)
  }

  mutating func daemon(
    _ name: String, _ node: Node, host: String, inherited: RsyncSettings, names: inout BackupNames
  ) -> RsyncDaemon? {
    let what = "daemon \(host)/\(name)"
    guard let body = mapping(node, what, keys: InventoryKeys.daemon) else { return nil }
    var settings = inherited
    layers(body.node, what, keys: nil, only: body, rsyncDirect: true).rsync.forEach { $0(&settings) }
    var port: Int?
    if let portNode = body["port"], let p = int(portNode.value, "\(what): port", range: 1...65535) {
      if let first = names.ports[p] {
        issue(
          portNode.value, "port \(p) on \(host) is used twice (first at line \(first.mark?.line ?? 0))",
          hint: "give each daemon its own port, or leave `port` out to have one assigned")
      }
      names.ports[p] = portNode.value
      port = p
    }
    var modules: [RsyncModule] = []
    if let modsNode = body["modules"], let mods = mapping(modsNode.value, "\(what): modules", keys: nil) {
      for m in mods.pairs {
        guard let moduleName = self.name(m.key, "module") else { continue }
        if let first = names.modules[moduleName] {
          issue(
            m.key,
            "module `\(moduleName)` on \(host) is declared twice (first at line \(first.mark?.line ?? 0))",
            hint: "module names must be unique on a backup host")
          continue
        }
        names.modules[moduleName] = m.key
        let views = [VersionsLayout.mirrorModuleSuffix, VersionsLayout.versionsModuleSuffix]
        if let suffix = views.first(where: { moduleName.hasSuffix($0) }) {
          issue(
            m.key, "module name `\(moduleName)` ends in `\(suffix)`, which names a module's read-only view",
            hint: "choose a name that does not end in \(views.map { "`\($0)`" }.joined(separator: " or "))")
          continue
        }
        guard
          let module = self.module(
            moduleName, m.value, what: "\(what)/\(moduleName)", keepVersions: settings.keepVersions)
        else { continue }
        if let first = names.paths[module.path] {
          issue(
            m.value,
            "module \(moduleName) on \(host) uses path \(module.path) again (first at line \(first.mark?.line ?? 0))",
            hint: "give each module its own directory")
        } else if let (other, first) = names.paths.first(where: { Self.overlaps(module.path, $0.key) }) {
          let (outer, inner) = other.count < module.path.count ? (other, module.path) : (module.path, other)
          issue(
            m.value,
            "module \(moduleName) on \(host) at \(module.path) nests with the module at \(other) (line "
              + "\(first.mark?.line ?? 0)): the sync into \(outer) deletes what is not in its source, "
              + "so it would wipe \(inner)",
            hint:
              "give each module a directory of its own, side by side (e.g. /srv/backup/a and /srv/backup/b)")
        }
        names.paths[module.path] = m.value
        moduleNodes["\(host)/\(moduleName)"] = m.value
        modules.append(module)
      }
    } else if body["modules"] == nil {
      issue(body.node, "\(what) has no `modules:`", hint: "add `modules: { home: /srv/backup/home }`")
    }
    return RsyncDaemon(name: name, port: port, settings: settings, modules: modules)
  }

  mutating func module(_ name: String, _ node: Node, what: String, keepVersions: Int) -> RsyncModule? {
    if node.scalar != nil {
      guard let path = dataPath(node, "\(what): path") else { return nil }
      return RsyncModule(name: name, path: path, secretFile: nil, keepVersions: keepVersions)
    }
    guard let body = mapping(node, what, keys: InventoryKeys.module) else { return nil }
    guard let pathNode = body["path"] else {
      issue(node, "\(what) has no `path`", hint: "add `path: /srv/backup/\(name)`")
      return nil
    }
    guard let path = dataPath(pathNode.value, "\(what): path") else { return nil }
    var secretFile: String?
    if let s = body["secret_file"], let p = string(s.value, "\(what): secret_file") {
      secretFile = resolveLocal(p)
    }
    var keep = keepVersions
    if let n = body["keep_versions"], let v = self.keepVersions(n.value, "\(what): keep_versions") {
      keep = v
    }
    return RsyncModule(name: name, path: path, secretFile: secretFile, keepVersions: keep)
  }

  /// Every `to:` names a declared backup host and module, and no module receives two directories.
  mutating func checkDestinations(backups: [BackupHost]) {
    var receivers: [Destination: String] = [:]
    for (dest, node, directory) in destinationNodes {
      guard let backup = backups.first(where: { $0.name == dest.backup }) else {
        issue(
          node, "\(directory) is sent to backup host `\(dest.backup)`, which is not under `backups:`",
          hint: Suggestion.didYouMean(dest.backup, among: backups.map(\.name))
            ?? "declare it under `backups:`")
        continue
      }
      guard backup.module(named: dest.module) != nil else {
        let known = backup.daemons.flatMap { $0.modules.map(\.name) }
        issue(
          node, "\(directory) is sent to module `\(dest.module)`, which \(dest.backup) does not have",
          hint: Suggestion.didYouMean(dest.module, among: known)
            ?? "modules on \(dest.backup): \(known.isEmpty ? "none" : known.joined(separator: ", "))")
        continue
      }
      if let other = receivers[dest] {
        issue(
          node, "module \(dest.backup)/\(dest.module) already receives \(other)",
          hint: "give each directory its own module: each mirrors its directory and deletes what is not there"
        )
      } else {
        receivers[dest] = directory
      }
    }
  }
}
