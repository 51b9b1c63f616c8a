import FleetCore
import Yams

// Hosts: what sources and backups share, and the sources with their protected directories.
extension InventoryReader {
  /// A host's address, groups and settings layers (defaults, its groups in order, its own).
  mutating func hostCommon(_ name: String, _ body: Fields, kind: String, inherited: Inherited)
    -> (address: String, groups: [String], layers: [Layers])?
  {
    var memberOf: [String] = []
    if let node = body["groups"], let list = stringList(node.value, "\(kind) \(name): groups") {
      for (index, group) in list.enumerated() {
        if inherited.groups[group] == nil {
          let at = node.value.sequence.map { Array($0)[index] } ?? node.value
          issue(
            at, "\(kind) \(name) is in group `\(group)`, which is not declared under `groups:`",
            hint: Suggestion.didYouMean(group, among: inherited.groupOrder) ?? "declare it under `groups:`")
        } else {
          memberOf.append(group)
        }
      }
    }
    let own = layers(body.node, "\(kind) \(name)", keys: nil, only: body)
    let stack = [inherited.defaults] + memberOf.compactMap { inherited.groups[$0] } + [own]
    guard let addressNode = body["address"] else {
      issue(body.node, "\(kind) \(name) has no `address`", hint: "add `address: 192.0.2.10` (or a DNS name)")
      return nil
    }
    guard let address = address(addressNode.value, "\(kind) \(name): address") else { return nil }
    addressNodes["\(kind) \(name)"] = addressNode.value
    return (address, memberOf, stack)
  }

  mutating func source(_ name: String, _ node: Node, inherited: Inherited) -> SourceHost? {
    guard let body = mapping(node, "source \(name)", keys: InventoryKeys.source) else { return nil }
    guard let common = hostCommon(name, body, kind: "source", inherited: inherited) else { return nil }
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
      directories = self.directories(entries, source: name, inherited: watch)
    } else {
      issue(
        body.node, "source \(name) has no `directories:`",
        hint: "add `directories: { home: { path: /srv/nfs/home, to: [backup1/home] } }`")
    }
    return SourceHost(
      name: name, address: common.address, groups: common.groups, ssh: ssh, inotify: inotify,
      directories: directories)
  }

  /// A source's directories; paths that repeat or nest, and health ports used twice, are reported.
  mutating func directories(_ entries: Fields, source: String, inherited: WatchSettings)
    -> [ProtectedDirectory]
  {
    var directories: [ProtectedDirectory] = []
    var ports: [Int: Node] = [:]
    for entry in entries.pairs {
      guard let dirName = self.name(entry.key, "directory") else { continue }
      guard let dir = directory(dirName, entry.value, source: source, inherited: inherited) else { continue }
      for other in directories {
        if other.path == dir.path {
          issue(
            entry.value, "directory \(dirName) on \(source) repeats path \(dir.path)",
            hint: "protect each path once; list several backups under `to:` for fan-out")
        } else if dir.path.hasPrefix(other.path + "/") || other.path.hasPrefix(dir.path + "/") {
          issue(
            entry.value,
            "directory \(dirName) on \(source) (\(dir.path)) overlaps \(other.path)",
            hint: "protect the parent only, and use `excludes:` for what it should skip")
        }
      }
      if let port = dir.healthPort {
        if let first = ports[port] {
          issue(
            entry.value,
            "health port \(port) on \(source) is used twice (first at line \(first.mark?.line ?? 0))",
            hint: "give each directory its own `health_port`, or leave it out to have one assigned")
        }
        ports[port] = entry.value
      }
      directories.append(dir)
    }
    return directories
  }

  mutating func directory(_ name: String, _ node: Node, source: String, inherited: WatchSettings)
    -> ProtectedDirectory?
  {
    let what = "directory \(source)/\(name)"
    guard let body = mapping(node, what, keys: InventoryKeys.directory) else { return nil }
    var watch = inherited
    let own = layers(body.node, what, keys: nil, only: body)
    own.watch.forEach { $0(&watch) }
    guard let pathNode = body["path"] else {
      issue(node, "\(what) has no `path`", hint: "add `path: /srv/nfs/\(name)`")
      return nil
    }
    let path = self.dataPath(pathNode.value, "\(what): path")
    var destinations: [Destination] = []
    if let toNode = body["to"] {
      destinations = self.destinations(toNode.value, what: what, sender: "\(source):\(name)")
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

  /// A directory's `to:` (one `BACKUP/MODULE` or a list); each is kept for ``checkDestinations(backups:)``.
  mutating func destinations(_ node: Node, what: String, sender: String) -> [Destination] {
    let items = node.sequence.map { Array($0) } ?? [node]
    if items.isEmpty {
      issue(node, "\(what): `to` is empty", hint: "write `to: [BACKUP/MODULE]`")
    }
    var destinations: [Destination] = []
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
        destinationNodes.append((dest, item, sender))
      }
    }
    return destinations
  }
}
