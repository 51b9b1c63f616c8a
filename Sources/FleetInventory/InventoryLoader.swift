import FleetCore
import Foundation
import Yams

extension Inventory {
  /// Reads and validates the inventory at `path`.
  ///
  /// - Throws: ``FleetError`` with code ``FleetError/Code/invalidInventory`` and an
  ///   ``InventoryIssues`` cause listing every problem (all of them, not just the first), or
  ///   ``FleetError/Code/io`` when the file cannot be read.
  public static func load(path: String) throws -> Inventory {
    let text: String
    do {
      text = try String(contentsOfFile: path, encoding: .utf8)
    } catch {
      throw FleetError(.io, "cannot read inventory \(path): \(error.localizedDescription)")
    }
    return try parse(yaml: text, file: path)
  }

  /// Validates inventory text; `file` names it in error locations and anchors relative paths.
  public static func parse(yaml: String, file: String) throws -> Inventory {
    var reader = InventoryReader(file: file)
    let inventory = reader.read(yaml: yaml)
    if let inventory, reader.issues.isEmpty { return inventory }
    let issues = reader.issues.sorted { ($0.line, $0.column) < ($1.line, $1.column) }
    let count = issues.count
    throw FleetError(
      .invalidInventory,
      "\(file): \(count) error\(count == 1 ? "" : "s") in the inventory; no host was contacted",
      cause: InventoryIssues(issues: issues))
  }
}

/// Walks the YAML node tree, checks every key and value, and builds the model.
struct InventoryReader {
  let file: String
  var issues: [InventoryIssue] = []

  init(file: String) { self.file = file }

  // MARK: Entry

  mutating func read(yaml: String) -> Inventory? {
    let root: Node?
    do {
      root = try Yams.compose(yaml: yaml)
    } catch let error as YamlError {
      report(yamlError: error)
      return nil
    } catch {
      issues.append(InventoryIssue(file: file, line: 0, column: 0, message: "cannot parse YAML: \(error)"))
      return nil
    }
    guard let root else {
      issue(nil, "the inventory is empty", hint: "start from inventory/small.yaml")
      return nil
    }
    guard let top = mapping(root, "the inventory", keys: Keys.top) else { return nil }

    if let version = top["version"], let v = int(version.value, "version", range: 1...1) { _ = v }
    var secretsFile = defaultSecretsFile()
    if let node = top["secrets_file"], let path = string(node.value, "secrets_file") {
      secretsFile = resolveLocal(path)
    }

    var defaults = Layers()
    if let node = top["defaults"] {
      defaults = layers(node.value, "defaults", keys: Keys.defaults)
    }
    var groups: [String: Layers] = [:]
    var groupOrder: [String] = []
    if let node = top["groups"], let entries = mapping(node.value, "groups", keys: nil) {
      for entry in entries.pairs {
        guard let name = name(entry.key, "group") else { continue }
        groups[name] = layers(entry.value, "group \(name)", keys: Keys.group)
        groupOrder.append(name)
      }
    }

    var hostNames: [String: Node] = [:]
    var sources: [SourceHost] = []
    var backups: [BackupHost] = []
    if let node = top["backups"], let entries = mapping(node.value, "backups", keys: nil) {
      for entry in entries.pairs {
        guard let name = name(entry.key, "backup host") else { continue }
        if noteHost(name, entry.key, &hostNames),
          let host = backup(name, entry.value, defaults: defaults, groups: groups)
        {
          backups.append(host)
        }
      }
    }
    if let node = top["sources"], let entries = mapping(node.value, "sources", keys: nil) {
      for entry in entries.pairs {
        guard let name = name(entry.key, "source") else { continue }
        if noteHost(name, entry.key, &hostNames),
          let host = source(name, entry.value, defaults: defaults, groups: groups)
        {
          sources.append(host)
        }
      }
    }
    if top["sources"] == nil && top["backups"] == nil {
      issue(root, "the inventory has no `sources:` and no `backups:`", hint: "see docs/inventory.md")
    }
    checkDestinations(sources: sources, backups: backups, top: top)
    return Inventory(
      file: file, secretsFile: secretsFile, sources: sources, backups: backups, groups: groupOrder)
  }

  // MARK: Hosts

  mutating func noteHost(_ name: String, _ keyNode: Node, _ seen: inout [String: Node]) -> Bool {
    if let first = seen[name] {
      issue(
        keyNode, "host name `\(name)` is used twice (first at line \(first.mark?.line ?? 0))",
        hint: "host names must be unique across sources and backups")
      return false
    }
    seen[name] = keyNode
    return true
  }

  mutating func hostCommon(
    _ name: String, _ body: Fields, kind: String, defaults: Layers, groups: [String: Layers]
  ) -> (address: String, groups: [String], layers: [Layers])? {
    var memberOf: [String] = []
    if let node = body["groups"], let list = stringList(node.value, "\(kind) \(name): groups") {
      for (index, group) in list.enumerated() {
        if groups[group] == nil {
          let at = node.value.sequence.map { Array($0)[index] } ?? node.value
          issue(
            at, "\(kind) \(name) is in group `\(group)`, which is not declared under `groups:`",
            hint: suggestion(group, among: Array(groups.keys)) ?? "declare it under `groups:`")
        } else {
          memberOf.append(group)
        }
      }
    }
    let own = layers(body.node, "\(kind) \(name)", keys: nil, only: body)
    var stack = [defaults]
    stack += memberOf.compactMap { groups[$0] }
    stack.append(own)
    guard let addressNode = body["address"] else {
      issue(body.node, "\(kind) \(name) has no `address`", hint: "add `address: 192.0.2.10` (or a DNS name)")
      return nil
    }
    guard let address = address(addressNode.value, "\(kind) \(name): address") else { return nil }
    return (address, memberOf, stack)
  }

  mutating func source(_ name: String, _ node: Node, defaults: Layers, groups: [String: Layers])
    -> SourceHost?
  {
    guard let body = mapping(node, "source \(name)", keys: Keys.source) else { return nil }
    guard let common = hostCommon(name, body, kind: "source", defaults: defaults, groups: groups) else {
      return nil
    }
    var ssh = SSHSettings()
    var inotify = InotifyLimits()
    var watch = WatchSettings()
    for layer in common.layers {
      layer.ssh.forEach { $0(&ssh) }
      layer.inotify.forEach { $0(&inotify) }
      layer.watch.forEach { $0(&watch) }
    }
    var directories: [ProtectedDirectory] = []
    if let dirsNode = body["directories"],
      let entries = mapping(dirsNode.value, "source \(name): directories", keys: nil)
    {
      var paths: [(path: String, node: Node)] = []
      var ports: [Int: Node] = [:]
      for entry in entries.pairs {
        guard let dirName = self.name(entry.key, "directory") else { continue }
        guard
          let dir = directory(
            dirName, entry.value, source: name, inherited: watch)
        else { continue }
        for other in paths {
          if other.path == dir.path {
            issue(
              entry.value, "directory \(dirName) on \(name) repeats path \(dir.path)",
              hint: "protect each path once; list several backups under `to:` for fan-out")
          } else if dir.path.hasPrefix(other.path + "/") || other.path.hasPrefix(dir.path + "/") {
            issue(
              entry.value,
              "directory \(dirName) on \(name) (\(dir.path)) overlaps \(other.path)",
              hint: "protect the parent only, and use `excludes:` for what it should skip")
          }
        }
        paths.append((dir.path, entry.value))
        if let port = dir.healthPort {
          if let first = ports[port] {
            issue(
              entry.value,
              "health port \(port) on \(name) is used twice (first at line \(first.mark?.line ?? 0))",
              hint: "give each directory its own `health_port`, or leave it out to have one assigned")
          }
          ports[port] = entry.value
        }
        directories.append(dir)
      }
    } else {
      issue(
        body.node, "source \(name) has no `directories:`",
        hint: "add `directories: { home: { path: /srv/nfs/home, to: [backup1/home] } }`")
    }
    return SourceHost(
      name: name, address: common.address, groups: common.groups, ssh: ssh, inotify: inotify,
      directories: directories)
  }

  mutating func directory(_ name: String, _ node: Node, source: String, inherited: WatchSettings)
    -> ProtectedDirectory?
  {
    let what = "directory \(source)/\(name)"
    guard let body = mapping(node, what, keys: Keys.directory) else { return nil }
    var watch = inherited
    let own = layers(body.node, what, keys: nil, only: body)
    own.watch.forEach { $0(&watch) }
    guard let pathNode = body["path"] else {
      issue(node, "\(what) has no `path`", hint: "add `path: /srv/nfs/\(name)`")
      return nil
    }
    let path = self.path(pathNode.value, "\(what): path")
    var destinations: [Destination] = []
    if let toNode = body["to"] {
      let items: [Node]
      if let seq = toNode.value.sequence {
        items = Array(seq)
      } else {
        items = [toNode.value]
      }
      if items.isEmpty {
        issue(toNode.value, "\(what): `to` is empty", hint: "write `to: [BACKUP/MODULE]`")
      }
      for item in items {
        guard let text = string(item, "\(what): to") else { continue }
        let parts = text.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 2, isSafeName(parts[0]), isSafeName(parts[1]) else {
          issue(
            item, "\(what): destination `\(printable(text))` is not BACKUP/MODULE",
            hint: "write the backup host's name and module, e.g. `backup1/home`")
          continue
        }
        let dest = Destination(backup: parts[0], module: parts[1])
        if destinations.contains(dest) {
          issue(item, "\(what) lists \(text) twice", hint: "list each destination once")
        } else {
          destinations.append(dest)
          destinationNodes.append((dest, item, "\(source):\(name)"))
        }
      }
    } else {
      issue(node, "\(what) has no `to:`", hint: "add `to: [backup1/\(name)]`")
    }
    var healthPort: Int?
    if let portNode = body["health_port"] {
      healthPort = int(portNode.value, "\(what): health_port", range: 1...65535)
    }
    guard let path else { return nil }
    return ProtectedDirectory(
      name: name, path: path, destinations: destinations, watch: watch, healthPort: healthPort)
  }

  var destinationNodes: [(Destination, Node, String)] = []

  mutating func backup(_ name: String, _ node: Node, defaults: Layers, groups: [String: Layers])
    -> BackupHost?
  {
    guard let body = mapping(node, "backup \(name)", keys: Keys.backup) else { return nil }
    guard let common = hostCommon(name, body, kind: "backup", defaults: defaults, groups: groups) else {
      return nil
    }
    var ssh = SSHSettings()
    var rsync = RsyncSettings()
    for layer in common.layers {
      layer.ssh.forEach { $0(&ssh) }
      layer.rsync.forEach { $0(&rsync) }
    }
    var daemons: [RsyncDaemon] = []
    var moduleNames: [String: Node] = [:]
    var modulePaths: [String: Node] = [:]
    var ports: [Int: Node] = [:]
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
    for entry in entries.pairs {
      guard let daemonName = self.name(entry.key, "daemon") else { continue }
      let what = "daemon \(name)/\(daemonName)"
      guard let dbody = mapping(entry.value, what, keys: Keys.daemon) else { continue }
      var settings = rsync
      layers(dbody.node, what, keys: nil, only: dbody, rsyncDirect: true).rsync.forEach { $0(&settings) }
      var port: Int?
      if let portNode = dbody["port"], let p = int(portNode.value, "\(what): port", range: 1...65535) {
        if let first = ports[p] {
          issue(
            portNode.value, "port \(p) on \(name) is used twice (first at line \(first.mark?.line ?? 0))",
            hint: "give each daemon its own port, or leave `port` out to have one assigned")
        }
        ports[p] = portNode.value
        port = p
      }
      var modules: [RsyncModule] = []
      if let modsNode = dbody["modules"],
        let mods = mapping(modsNode.value, "\(what): modules", keys: nil)
      {
        for m in mods.pairs {
          guard let moduleName = self.name(m.key, "module") else { continue }
          if let first = moduleNames[moduleName] {
            issue(
              m.key,
              "module `\(moduleName)` on \(name) is declared twice (first at line \(first.mark?.line ?? 0))",
              hint: "module names must be unique on a backup host")
            continue
          }
          moduleNames[moduleName] = m.key
          if let module = self.module(moduleName, m.value, what: "\(what)/\(moduleName)") {
            if let first = modulePaths[module.path] {
              issue(
                m.value,
                "module \(moduleName) on \(name) uses path \(module.path) again (first at line \(first.mark?.line ?? 0))",
                hint: "give each module its own directory")
            }
            modulePaths[module.path] = m.value
            modules.append(module)
          }
        }
      } else if dbody["modules"] == nil {
        issue(dbody.node, "\(what) has no `modules:`", hint: "add `modules: { home: /srv/backup/home }`")
      }
      daemons.append(RsyncDaemon(name: daemonName, port: port, settings: settings, modules: modules))
    }
    return BackupHost(name: name, address: common.address, groups: common.groups, ssh: ssh, daemons: daemons)
  }

  mutating func module(_ name: String, _ node: Node, what: String) -> RsyncModule? {
    if node.scalar != nil {
      guard let path = path(node, "\(what): path") else { return nil }
      return RsyncModule(name: name, path: path, secretFile: nil)
    }
    guard let body = mapping(node, what, keys: Keys.module) else { return nil }
    guard let pathNode = body["path"] else {
      issue(node, "\(what) has no `path`", hint: "add `path: /srv/backup/\(name)`")
      return nil
    }
    guard let path = path(pathNode.value, "\(what): path") else { return nil }
    var secretFile: String?
    if let s = body["secret_file"], let p = string(s.value, "\(what): secret_file") {
      secretFile = resolveLocal(p)
    }
    return RsyncModule(name: name, path: path, secretFile: secretFile)
  }

  mutating func checkDestinations(sources: [SourceHost], backups: [BackupHost], top: Fields) {
    var receivers: [Destination: String] = [:]
    for (dest, node, directory) in destinationNodes {
      guard let backup = backups.first(where: { $0.name == dest.backup }) else {
        issue(
          node, "\(directory) is sent to backup host `\(dest.backup)`, which is not under `backups:`",
          hint: suggestion(dest.backup, among: backups.map(\.name)).map { $0 }
            ?? "declare it under `backups:`")
        continue
      }
      guard backup.module(named: dest.module) != nil else {
        let known = backup.daemons.flatMap { $0.modules.map(\.name) }
        issue(
          node, "\(directory) is sent to module `\(dest.module)`, which \(dest.backup) does not have",
          hint: suggestion(dest.module, among: known)
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

  // MARK: Setting layers (defaults → groups → host → directory)

  /// Setters for each settings block, validated once and applied per host in override order.
  struct Layers {
    var ssh: [(inout SSHSettings) -> Void] = []
    var inotify: [(inout InotifyLimits) -> Void] = []
    var watch: [(inout WatchSettings) -> Void] = []
    var rsync: [(inout RsyncSettings) -> Void] = []
  }

  mutating func layers(
    _ node: Node, _ what: String, keys: [String]?, only given: Fields? = nil, rsyncDirect: Bool = false
  ) -> Layers {
    var out = Layers()
    guard let body = given ?? mapping(node, what, keys: keys) else { return out }
    if let ssh = body["ssh"], let fields = mapping(ssh.value, "\(what): ssh", keys: Keys.ssh) {
      out.ssh = sshSetters(fields, "\(what): ssh")
    }
    if let inotify = body["inotify"],
      let fields = mapping(inotify.value, "\(what): inotify", keys: Keys.inotify)
    {
      out.inotify = inotifySetters(fields, "\(what): inotify")
    }
    if let watch = body["watch"], let fields = mapping(watch.value, "\(what): watch", keys: Keys.watch) {
      out.watch = watchSetters(fields, "\(what): watch")
    }
    if keys == nil && body.allowed.contains("batch_delay_ms") {
      out.watch += watchSetters(body, what)
    }
    if let rsync = body["rsync"], let fields = mapping(rsync.value, "\(what): rsync", keys: Keys.rsync) {
      out.rsync = rsyncSetters(fields, "\(what): rsync")
    }
    if rsyncDirect { out.rsync += rsyncSetters(body, what) }
    return out
  }

  mutating func sshSetters(_ f: Fields, _ what: String) -> [(inout SSHSettings) -> Void] {
    var out: [(inout SSHSettings) -> Void] = []
    if let n = f["user"], let v = name(n.value, "SSH user") { out.append { $0.user = v } }
    if let n = f["port"], let v = int(n.value, "\(what): port", range: 1...65535) {
      out.append { $0.port = v }
    }
    if let n = f["identity"], let v = string(n.value, "\(what): identity") {
      if v == "agent" {
        out.append { $0.identity = nil }
      } else {
        let resolved = resolveLocal(v)
        out.append { $0.identity = resolved }
      }
    }
    if let n = f["passphrase_file"], let v = string(n.value, "\(what): passphrase_file") {
      let resolved = resolveLocal(v)
      out.append { $0.passphraseFile = resolved }
    }
    if let n = f["known_hosts"], let v = string(n.value, "\(what): known_hosts") {
      let resolved = resolveLocal(v)
      out.append { $0.knownHosts = resolved }
    }
    if let n = f["host_key_policy"], let v = string(n.value, "\(what): host_key_policy") {
      if ["strict", "accept-new"].contains(v) {
        out.append { $0.hostKeyPolicy = v }
      } else {
        issue(
          n.value, "\(what): host_key_policy `\(printable(v))` is not known",
          hint: "write `strict` (default) or `accept-new`")
      }
    }
    if let n = f["connect_timeout"], let v = int(n.value, "\(what): connect_timeout", range: 1...600) {
      out.append { $0.connectTimeout = v }
    }
    return out
  }

  mutating func inotifySetters(_ f: Fields, _ what: String) -> [(inout InotifyLimits) -> Void] {
    var out: [(inout InotifyLimits) -> Void] = []
    let range = 1...(1 << 30)
    if let n = f["max_user_watches"], let v = int(n.value, "\(what): max_user_watches", range: range) {
      out.append { $0.maxUserWatches = v }
    }
    if let n = f["max_user_instances"], let v = int(n.value, "\(what): max_user_instances", range: range) {
      out.append { $0.maxUserInstances = v }
    }
    if let n = f["max_queued_events"], let v = int(n.value, "\(what): max_queued_events", range: range) {
      out.append { $0.maxQueuedEvents = v }
    }
    return out
  }

  mutating func watchSetters(_ f: Fields, _ what: String) -> [(inout WatchSettings) -> Void] {
    var out: [(inout WatchSettings) -> Void] = []
    if let n = f["batch_delay_ms"], let v = int(n.value, "\(what): batch_delay_ms", range: 10...60_000) {
      out.append { $0.batchDelayMs = v }
    }
    if let n = f["workers"], let v = int(n.value, "\(what): workers", range: 1...64) {
      out.append { $0.workers = v }
    }
    if let n = f["full_sync_interval"],
      let v = int(n.value, "\(what): full_sync_interval", range: 0...(86_400 * 30))
    {
      out.append { $0.fullSyncInterval = v }
    }
    if let n = f["excludes"], let list = stringList(n.value, "\(what): excludes") {
      var ok = true
      for (i, pattern) in list.enumerated() where !isSafeLine(pattern) || pattern.isEmpty {
        let at = n.value.sequence.map { Array($0)[i] } ?? n.value
        issue(at, "\(what): exclude pattern must be one non-empty line", hint: "e.g. `*.tmp` or `/cache/`")
        ok = false
      }
      if ok { out.append { $0.excludes = list } }
    }
    return out
  }

  mutating func rsyncSetters(_ f: Fields, _ what: String) -> [(inout RsyncSettings) -> Void] {
    var out: [(inout RsyncSettings) -> Void] = []
    if let n = f["uid"], let v = name(n.value, "uid") { out.append { $0.uid = v } }
    if let n = f["gid"], let v = name(n.value, "gid") { out.append { $0.gid = v } }
    if let n = f["max_connections"], let v = int(n.value, "\(what): max_connections", range: 1...10_000) {
      out.append { $0.maxConnections = v }
    }
    return out
  }

  // MARK: Typed values

  /// A mapping's entries with the key nodes kept for locations.
  struct Fields {
    var node: Node
    var pairs: [(key: Node, value: Node)]
    var allowed: [String]
    subscript(_ key: String) -> (key: Node, value: Node)? {
      pairs.first { $0.key.string == key }
    }
  }

  /// Checks `node` is a mapping; reports unknown (with a suggestion), secret-looking and
  /// duplicate keys. `keys == nil` accepts any key (a map of names).
  mutating func mapping(_ node: Node, _ what: String, keys: [String]?) -> Fields? {
    guard let map = node.mapping else {
      issue(node, "\(what) must be a mapping (`key: value` lines), not \(kind(of: node))")
      return nil
    }
    var seen: [String: Node] = [:]
    var pairs: [(key: Node, value: Node)] = []
    for (key, value) in map {
      guard let name = key.scalar?.string else {
        issue(key, "\(what): keys must be plain names")
        continue
      }
      if let first = seen[name] {
        issue(
          key, "\(what): `\(printable(name))` appears twice (first at line \(first.mark?.line ?? 0))",
          hint: "keep one of them")
        continue
      }
      seen[name] = key
      if Keys.secretLike.contains(name.lowercased()) {
        issue(
          key, "\(what): secrets are never written in the inventory (the value was not read)",
          hint:
            "remove `\(name)`; fleetsync generates each module's secret into the secrets file, or set `secret_file: PATH` on the module"
        )
        continue
      }
      if let keys, !keys.contains(name) {
        issue(
          key, "\(what): unknown key `\(printable(name))`",
          hint: suggestion(name, among: keys) ?? "known keys: \(keys.joined(separator: ", "))")
        continue
      }
      pairs.append((key, value))
    }
    return Fields(node: node, pairs: pairs, allowed: keys ?? [])
  }

  mutating func string(_ node: Node, _ what: String) -> String? {
    guard let scalar = node.scalar, isPlainString(node) else {
      issue(node, "\(what) must be a string, not \(kind(of: node))")
      return nil
    }
    return scalar.string
  }

  mutating func int(_ node: Node, _ what: String, range: ClosedRange<Int>) -> Int? {
    guard node.scalar != nil, let value = node.int else {
      issue(
        node, "\(what) must be a whole number, not \(kind(of: node))",
        hint: "write a number between \(range.lowerBound) and \(range.upperBound)")
      return nil
    }
    guard range.contains(value) else {
      issue(node, "\(what) is \(value), out of range", hint: "use \(range.lowerBound)...\(range.upperBound)")
      return nil
    }
    return value
  }

  mutating func stringList(_ node: Node, _ what: String) -> [String]? {
    if node.scalar != nil, let one = string(node, what) { return [one] }
    guard let seq = node.sequence else {
      issue(node, "\(what) must be a list, not \(kind(of: node))", hint: "write `[a, b]`")
      return nil
    }
    var out: [String] = []
    for item in seq {
      guard let s = string(item, what) else { return nil }
      out.append(s)
    }
    return out
  }

  mutating func name(_ node: Node, _ what: String) -> String? {
    guard let text = node.scalar?.string else {
      issue(node, "\(what) name must be a string, not \(kind(of: node))")
      return nil
    }
    guard isSafeName(text) else {
      issue(
        node, "\(what) name `\(printable(text))` is not safe as a file name",
        hint: "use letters, digits, `.`, `_` and `-` (at most 63, starting with a letter or digit)")
      return nil
    }
    return text
  }

  mutating func address(_ node: Node, _ what: String) -> String? {
    guard let text = string(node, what) else { return nil }
    let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:")
    guard !text.isEmpty, text.count <= 253, text.allSatisfy({ allowed.contains($0) }), !text.hasPrefix("-")
    else {
      issue(
        node, "\(what) `\(printable(text))` is not a host name or IP address",
        hint: "write an IPv4/IPv6 address or a DNS name, e.g. `192.0.2.10` or `nfs1.example.org`")
      return nil
    }
    return text
  }

  /// An absolute remote path without shell or config metacharacters, normalised.
  mutating func path(_ node: Node, _ what: String) -> String? {
    guard let text = string(node, what) else { return nil }
    guard text.hasPrefix("/") else {
      issue(
        node, "\(what) `\(printable(text))` is relative", hint: "write an absolute path, e.g. `/\(text)`")
      return nil
    }
    if let bad = text.unicodeScalars.first(where: { Keys.pathForbidden.contains($0) || $0.value < 0x20 }) {
      let shown = bad.value < 0x20 ? String(format: "\\x%02x", bad.value) : String(bad)
      issue(
        node, "\(what) contains `\(shown)`, which fleetsync does not accept in paths",
        hint:
          "use a plain path (letters, digits, spaces, `._-+=,@%~:`); a symlink can give an odd path a plain name"
      )
      return nil
    }
    let parts = text.split(separator: "/")
    if parts.contains(where: { $0 == "." || $0 == ".." }) {
      issue(node, "\(what) `\(printable(text))` has `.` or `..` parts", hint: "write the path without them")
      return nil
    }
    if parts.isEmpty {
      issue(node, "\(what) is `/`", hint: "protect a data directory, not the whole filesystem")
      return nil
    }
    return "/" + parts.joined(separator: "/")
  }

  // MARK: Helpers

  func isSafeName(_ text: String) -> Bool {
    guard let first = text.unicodeScalars.first, text.unicodeScalars.count <= 63 else { return false }
    let ok = { (c: Unicode.Scalar) -> Bool in
      (c >= "a" && c <= "z") || (c >= "A" && c <= "Z") || (c >= "0" && c <= "9") || c == "." || c == "_"
        || c == "-"
    }
    guard text.unicodeScalars.allSatisfy(ok), first != ".", first != "-", first != "_" else { return false }
    return !text.contains("..")
  }

  func isSafeLine(_ text: String) -> Bool {
    !text.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F }
  }

  func isPlainString(_ node: Node) -> Bool {
    // Plain scalars that YAML would read as numbers or booleans are still accepted as strings
    // where a string is expected only if they are not numbers/bools/null.
    guard let scalar = node.scalar else { return false }
    if scalar.style != .plain { return true }
    return node.int == nil && node.float == nil && node.bool == nil && node.null == nil
  }

  func kind(of node: Node) -> String {
    switch node {
    case .mapping: return "a mapping"
    case .sequence: return "a list"
    case .scalar(let s):
      if s.style == .plain {
        if node.null != nil { return "empty" }
        if node.bool != nil { return "a boolean (`\(s.string)`)" }
        if node.int != nil || node.float != nil { return "a number (`\(s.string)`)" }
      }
      return "a string (`\(printable(s.string))`)"
    }
  }

  func printable(_ text: String) -> String {
    var out = ""
    for c in text.unicodeScalars.prefix(60) {
      out += c.value < 0x20 || c.value == 0x7F ? String(format: "\\x%02x", c.value) : String(c)
    }
    return text.unicodeScalars.count > 60 ? out + "…" : out
  }

  func suggestion(_ word: String, among candidates: [String]) -> String? {
    let best = candidates.map { ($0, editDistance(word.lowercased(), $0.lowercased())) }
      .filter { $0.1 <= max(2, word.count / 3) }
      .min { $0.1 < $1.1 }
    return best.map { "did you mean `\($0.0)`?" }
  }

  func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a)
    let b = Array(b)
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var row = Array(0...b.count)
    for i in 1...a.count {
      var previous = row[0]
      row[0] = i
      for j in 1...b.count {
        let current = row[j]
        row[j] = min(row[j] + 1, row[j - 1] + 1, previous + (a[i - 1] == b[j - 1] ? 0 : 1))
        previous = current
      }
    }
    return row[b.count]
  }

  func defaultSecretsFile() -> String {
    let base =
      file.hasSuffix(".yaml")
      ? String(file.dropLast(5)) : file.hasSuffix(".yml") ? String(file.dropLast(4)) : file
    return base + ".secrets"
  }

  /// Resolves a controller-side path: `~/` to $HOME, relative to the inventory's folder.
  func resolveLocal(_ path: String) -> String {
    if path.hasPrefix("~/") {
      let home = ProcessInfo.processInfo.environment["HOME"] ?? "/root"
      return home + String(path.dropFirst(1))
    }
    if path.hasPrefix("/") { return path }
    let dir = (file as NSString).deletingLastPathComponent
    return dir.isEmpty ? path : dir + "/" + path
  }

  mutating func issue(_ node: Node?, _ message: String, hint: String? = nil) {
    let mark = node?.mark
    issues.append(
      InventoryIssue(
        file: file, line: mark?.line ?? 0, column: mark?.column ?? 0, message: message, hint: hint))
  }

  mutating func report(yamlError error: YamlError) {
    switch error {
    case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _),
      .composer(let context, let problem, let mark, _):
      let detail = context.map { "\(problem) \($0.text)" } ?? problem
      issues.append(
        InventoryIssue(
          file: file, line: mark.line, column: mark.column, message: "YAML syntax: \(detail)",
          hint: "check indentation (spaces, not tabs) and quoting near this point"))
    default:
      issues.append(InventoryIssue(file: file, line: 0, column: 0, message: "YAML: \(error)"))
    }
  }
}

/// The keys each part of the inventory accepts.
enum Keys {
  static let top = ["version", "secrets_file", "defaults", "groups", "sources", "backups"]
  static let defaults = ["ssh", "inotify", "watch", "rsync"]
  static let group = ["ssh", "inotify", "watch", "rsync"]
  static let source = ["address", "groups", "ssh", "inotify", "watch", "directories"]
  static let backup = ["address", "groups", "ssh", "rsync", "daemons"]
  static let directory = [
    "path", "to", "excludes", "batch_delay_ms", "workers", "full_sync_interval", "health_port",
  ]
  static let daemon = ["port", "uid", "gid", "max_connections", "modules"]
  static let module = ["path", "secret_file"]
  static let ssh = [
    "user", "port", "identity", "passphrase_file", "known_hosts", "host_key_policy", "connect_timeout",
  ]
  static let inotify = ["max_user_watches", "max_user_instances", "max_queued_events"]
  static let watch = ["batch_delay_ms", "workers", "excludes", "full_sync_interval"]
  static let rsync = ["uid", "gid", "max_connections"]
  static let secretLike: Set<String> = ["secret", "secrets", "password", "passphrase", "passwd"]
  static let pathForbidden: Set<Unicode.Scalar> = [
    ";", "&", "|", "$", "`", "'", "\"", "<", ">", "(", ")", "{", "}", "[", "]", "*", "?", "!", "\\", "#",
  ]
}
