import FleetWire
import Yams

// Layered settings: defaults → groups → host → directory, each block validated once.
extension InventoryReader {
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
    if let ssh = body["ssh"], let fields = mapping(ssh.value, "\(what): ssh", keys: InventoryKeys.ssh) {
      out.ssh = sshSetters(fields, "\(what): ssh")
    }
    if let inotify = body["inotify"],
      let fields = mapping(inotify.value, "\(what): inotify", keys: InventoryKeys.inotify)
    {
      out.inotify = inotifySetters(fields, "\(what): inotify")
    }
    if let watch = body["watch"],
      let fields = mapping(watch.value, "\(what): watch", keys: InventoryKeys.watch)
    {
      out.watch = watchSetters(fields, "\(what): watch")
    }
    if keys == nil && body.allowed.contains("batch_delay_ms") {
      out.watch += watchSetters(body, what)
    }
    if let rsync = body["rsync"],
      let fields = mapping(rsync.value, "\(what): rsync", keys: InventoryKeys.rsync)
    {
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
    if let n = f["max_delete"], let v = deleteLimit(n.value, "\(what): max_delete") {
      out.append { $0.maxDelete = v }
    }
    if let n = f["mass_change"], let v = massChangeLimit(n.value, "\(what): mass_change") {
      out.append { $0.massChange = v }
    }
    if let n = f["excludes"], let list = excludes(n.value, "\(what): excludes") {
      out.append { $0.excludes = list }
    }
    if let n = f["backend"], let v = string(n.value, "\(what): backend") {
      if let backend = EventBackend(rawValue: v) {
        out.append { $0.backend = backend }
      } else {
        issue(
          n.value, "\(what): backend `\(printable(v))` is not known",
          hint: "write `auto` (default: fanotify where it can be used), `fanotify` or `inotify`")
      }
    }
    return out
  }

  /// Exclude patterns, each one the watcher's config file can carry unchanged.
  mutating func excludes(_ node: Node, _ what: String) -> [String]? {
    guard let list = stringList(node, what) else { return nil }
    var ok = true
    for (i, pattern) in list.enumerated() {
      let at = node.sequence.map { Array($0)[i] } ?? node
      if !isSafeLine(pattern) || pattern.isEmpty {
        issue(at, "\(what): exclude pattern must be one non-empty line", hint: "e.g. `*.tmp` or `/cache/`")
        ok = false
      } else if let problem = WatcherConfigFile.problem(with: pattern) {
        issue(
          at, "\(what): exclude pattern `\(printable(pattern))` \(problem)",
          hint: "remove the blanks at its ends; to match a name that has them, use `?` or `*` there")
        ok = false
      }
    }
    return ok ? list : nil
  }

  /// A `keep_versions` value: whole days, 0 (plain mirror) to ten years.
  mutating func keepVersions(_ node: Node, _ what: String) -> Int? {
    guard node.scalar != nil, let value = node.int else {
      issue(
        node, "\(what) must be a whole number of days, not \(kind(of: node))",
        hint: "write e.g. `keep_versions: 7` (days), or 0 to keep no versions (a plain mirror)")
      return nil
    }
    guard (0...RsyncModule.maxKeepVersions).contains(value) else {
      issue(
        node, "\(what) is \(value) days, out of range",
        hint: "use 0 (a plain mirror, no versions) to \(RsyncModule.maxKeepVersions) days")
      return nil
    }
    return value
  }

  mutating func rsyncSetters(_ f: Fields, _ what: String) -> [(inout RsyncSettings) -> Void] {
    var out: [(inout RsyncSettings) -> Void] = []
    if let n = f["uid"], let v = name(n.value, "uid") { out.append { $0.uid = v } }
    if let n = f["gid"], let v = name(n.value, "gid") { out.append { $0.gid = v } }
    if let n = f["max_connections"], let v = int(n.value, "\(what): max_connections", range: 1...10_000) {
      out.append { $0.maxConnections = v }
    }
    if let n = f["keep_versions"], let v = keepVersions(n.value, "\(what): keep_versions") {
      out.append { $0.keepVersions = v }
    }
    return out
  }
}
