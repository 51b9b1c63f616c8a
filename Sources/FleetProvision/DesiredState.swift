import Crypto
import FleetCore
import FleetInventory
import FleetWire
import Foundation

/// A file fleetsync wants on a node.
public struct DesiredFile: Sendable, Equatable {
  /// Where the content comes from.
  public enum Content: Sendable, Equatable {
    /// Rendered bytes.
    case bytes([UInt8])
    /// A local file (the agent binary), with its sha256.
    case localFile(path: String, sha256: String)
  }
  /// Remote path.
  public var path: String
  /// Content.
  public var content: Content
  /// File mode.
  public var mode: Int
  /// Secret content: never shown in a plan, never logged.
  public var secret: Bool

  /// sha256 of the content, hex.
  public var sha256: String {
    switch content {
    case .bytes(let bytes): return Digest.sha256Hex(bytes)
    case .localFile(_, let sha): return sha
    }
  }
}

/// A directory fleetsync wants on a node.
public struct DesiredDirectory: Sendable, Equatable {
  /// Path.
  public var path: String
  /// Owner and group (`user:group`), nil for root.
  public var owner: String?
  /// Mode.
  public var mode: Int
  /// Backup data: created, never deleted by `down` unless asked.
  public var data: Bool
}

/// A service instance fleetsync wants running on a node.
public struct DesiredService: Sendable, Equatable {
  /// Kind and instance.
  public var name: ServiceName
  /// rsync port, or the watcher's health port.
  public var port: Int
  /// Hash of its config, binary and unit: a change means restart.
  public var configHash: String
}

/// Everything fleetsync wants on one node.
public struct DesiredHost: Sendable, Equatable {
  /// The host.
  public var host: HostRef
  /// Files, in apply order.
  public var files: [DesiredFile] = []
  /// Directories to create first.
  public var directories: [DesiredDirectory] = []
  /// Services.
  public var services: [DesiredService] = []
  /// `fs.inotify.*` targets (sources only).
  public var sysctl: [String: Int] = [:]
  /// What the operator should know about this host; it does not fail the host.
  public var warnings: [String] = []
}

/// Inputs shared by every host's rendering.
public struct RenderContext: Sendable {
  /// The inventory.
  public var inventory: Inventory
  /// Assigned ports: `host/kind@instance`.
  public var ports: PortBook
  /// Secrets by `backup/module`.
  public var secrets: [String: Secret]
  /// Local agent binary and its sha256.
  public var watchBinary: (path: String, sha256: String)?

  /// Makes a context.
  public init(
    inventory: Inventory, ports: PortBook, secrets: [String: Secret],
    watchBinary: (path: String, sha256: String)?
  ) {
    self.inventory = inventory
    self.ports = ports
    self.secrets = secrets
    self.watchBinary = watchBinary
  }

  func port(_ host: String, _ service: ServiceName) -> Int? { ports.ports["\(host)/\(service)"] }
}

/// Renders the desired state of hosts from the inventory.
public enum Renderer {
  /// The desired state of a backup host.
  public static func backup(_ host: BackupHost, context: RenderContext, systemd: Bool) throws -> DesiredHost {
    var out = DesiredHost(host: hostRef(host.name, context))
    out.directories = baseDirectories()
    for daemon in host.daemons {
      let service = ServiceName(.rsyncd, daemon.name)
      guard let port = context.port(host.name, service) else {
        throw FleetError(.internal, "no port assigned to \(service) on \(host.name)")
      }
      var conf = rsyncdGlobals(daemon, host: host.name, port: port)
      var secretsText = ""
      for module in daemon.modules {
        let key = "\(host.name)/\(module.name)"
        guard let secret = context.secrets[key] else {
          throw FleetError(.internal, "no secret for module \(key)")
        }
        conf += rsyncdModule(
          module, daemon: daemon, allow: context.inventory.senders(backup: host.name, module: module.name),
          readers: context.inventory.addresses)
        secretsText += SecretFiles.daemonLine(module: module.name, secret)
        out.directories.append(
          DesiredDirectory(
            path: module.path, owner: "\(daemon.settings.uid):\(daemon.settings.gid)", mode: 0o755, data: true
          ))
        out.directories.append(versionsDirectory(module, daemon: daemon))
      }
      addPruning(&out, daemon: daemon, systemd: systemd)
      let confBytes = Array(conf.utf8)
      let secretBytes = Array(secretsText.utf8)
      out.files.append(
        DesiredFile(
          path: Layout.rsyncdConf(daemon.name), content: .bytes(confBytes), mode: 0o644, secret: false))
      out.files.append(
        DesiredFile(
          path: Layout.rsyncdSecrets(daemon.name), content: .bytes(secretBytes), mode: 0o600, secret: true))
      // rsync re-reads its config (and secrets) on every connection: only a new port or a new
      // supervisor needs a restart; module edits take effect without one.
      // With systemd, the daemon's unit starts the prune timer: a new timer restarts it once.
      let supervision = systemd ? "systemd " + Digest.sha256Hex(Array(Units.pruneTimer.utf8)) : "pidfile"
      let hash = Digest.sha256Hex(Array("\(port) \(supervision)".utf8))
      out.services.append(
        DesiredService(name: service, port: port, configHash: hash))
    }
    try addSupervision(&out, systemd: systemd, kinds: [.rsyncd])
    return out
  }

  /// The global part of an rsync daemon instance's config.
  static func rsyncdGlobals(_ daemon: RsyncDaemon, host: String, port: Int) -> String {
    let service = ServiceName(.rsyncd, daemon.name)
    return Layout.header + """
      # rsync daemon instance \(daemon.name) on \(host)
      port = \(port)
      pid file = \(Layout.pidFile(service))
      lock file = \(Layout.run)/rsyncd-\(daemon.name).lock
      log file = \(Layout.logFile(service))
      use chroot = yes
      max connections = \(daemon.settings.maxConnections)
      uid = \(daemon.settings.uid)
      gid = \(daemon.settings.gid)
      read only = no
      list = no
      strict modes = yes
      timeout = 600
      socket options = TCP_NODELAY

      """
  }

  /// One module's section of an rsync daemon instance's config, and its read-only views.
  ///
  /// `fake super = yes`: the daemon, not root, keeps owner, group, mode and special files in
  /// `user.rsync.%stat` xattrs (ACLs and xattrs in `user.rsync.*` too); the module's filesystem
  /// must store user xattrs (``ModuleXattrCheck``).
  ///
  /// Only `allow` (its senders) may write; its read-only views admit `readers` (``readViews``).
  static func rsyncdModule(
    _ module: RsyncModule, daemon: RsyncDaemon, allow: [String], readers: [String]
  ) -> String {
    """

    [\(module.name)]
      path = \(module.path)
      comment = managed by fleetsync
      fake super = yes
      auth users = \(Layout.authUser(module: module.name))
      secrets file = \(Layout.rsyncdSecrets(daemon.name))
      hosts allow = \(allow.isEmpty ? "127.0.0.1" : allow.joined(separator: " "))
      hosts deny = *
      \(versionsFilter)\(xferCheck(module))

    """ + readViews(module, daemon: daemon, readers: readers)
  }

  /// The desired state of a source host.
  public static func source(
    _ host: SourceHost, context: RenderContext, systemd: Bool, currentSysctl: [String: Int],
    sysctlWritable: Bool = true, manifest: Manifest?
  ) throws -> DesiredHost {
    var out = DesiredHost(host: hostRef(host.name, context))
    out.directories =
      baseDirectories() + [DesiredDirectory(path: Layout.state, owner: nil, mode: 0o700, data: false)]
    guard let binary = context.watchBinary else {
      throw FleetError(.invalidInput, "the fleetsync-watch binary was not found; pass --watch-binary PATH")
    }
    out.files.append(
      DesiredFile(
        path: Layout.watchBinary, content: .localFile(path: binary.path, sha256: binary.sha256), mode: 0o755,
        secret: false))
    let inotify = try InotifySettings.decide(
      for: host, current: currentSysctl, writable: sysctlWritable, manifest: manifest)
    out.sysctl = inotify.targets
    if let file = inotify.file { out.files.append(file) }
    out.warnings += inotify.warnings

    for directory in host.directories {
      for destination in directory.destinations {
        let instance = Layout.watchInstance(directory: directory.name, to: destination)
        let service = ServiceName(.watch, instance)
        guard let healthPort = context.port(host.name, service),
          let backup = context.inventory.backup(named: destination.backup),
          let (daemon, module) = backup.module(named: destination.module),
          let rsyncPort = context.port(backup.name, ServiceName(.rsyncd, daemon.name)),
          let secret = context.secrets["\(backup.name)/\(module.name)"]
        else {
          throw FleetError(.internal, "missing port or secret for \(service) on \(host.name)")
        }
        let conf = try watcherConfig(
          host: host, directory: directory, backup: backup, module: module.name, rsyncPort: rsyncPort,
          instance: instance, healthPort: healthPort)
        let confBytes = Array(conf.utf8)
        let passwordBytes = SecretFiles.password(secret)
        out.files.append(
          DesiredFile(
            path: Layout.watchConf(instance), content: .bytes(confBytes), mode: 0o644, secret: false))
        out.files.append(
          DesiredFile(
            path: Layout.watchPassword(instance), content: .bytes(passwordBytes), mode: 0o600, secret: true))
        if systemd { addSourceMounts(&out, instance: instance, source: directory.path) }
        let hash = watcherHash(
          config: confBytes, password: passwordBytes, binarySHA256: binary.sha256, systemd: systemd)
        out.services.append(DesiredService(name: service, port: healthPort, configHash: hash))
      }
    }
    try addSupervision(&out, systemd: systemd, kinds: [.watch])
    return out
  }

  /// The hash a watcher restarts on: its config, its password file, the agent binary and how it is
  /// supervised.
  static func watcherHash(config: [UInt8], password: [UInt8], binarySHA256: String, systemd: Bool) -> String {
    let supervision = systemd ? "systemd" : "pidfile " + Digest.sha256Hex(Array(Units.supervisor.utf8))
    return Digest.sha256Hex(config + password + Array(binarySHA256.utf8) + Array(supervision.utf8))
  }

  /// The watcher config of one directory → one module, written with the agent's own keys and syntax.
  static func watcherConfig(
    host: SourceHost, directory: ProtectedDirectory, backup: BackupHost, module: String, rsyncPort: Int,
    instance: String, healthPort: Int
  ) throws -> String {
    let user = Layout.authUser(module: module)
    var file = WatcherConfigFile.Writer()
    try file.add(.source, directory.path)
    try file.add(.target, "rsync://\(user)@\(urlHost(backup.address)):\(rsyncPort)/\(module)")
    try file.add(.passwordFile, Layout.watchPassword(instance))
    try file.add(.stateDir, "\(Layout.state)/\(instance)")
    try file.add(.healthAddress, "127.0.0.1")
    try file.add(.healthPort, String(healthPort))
    try file.add(.batchDelay, String(directory.watch.batchDelayMs))
    try file.add(.workers, String(directory.watch.workers))
    try file.add(.fullSyncInterval, String(directory.watch.fullSyncInterval))
    try file.add(.maxDelete, directory.watch.maxDelete.description)
    try file.add(.massChange, directory.watch.massChange.description)
    guard let (_, target) = backup.module(named: module) else {
      throw FleetError(.internal, "no module \(module) on \(backup.name)")
    }
    try file.add(.keepVersions, String(target.keepVersions))
    for pattern in directory.watch.excludes { try file.add(.exclude, pattern) }
    // `auto` is the agent's default: left out, so configs written before the key existed stay the same.
    if directory.watch.backend != .auto { try file.add(.backend, directory.watch.backend.rawValue) }
    return Layout.header + "# \(host.name):\(directory.path) -> \(backup.name)/\(module)\n" + file.text
  }

  /// The drop-in that makes the watcher need its source's filesystem (`RequiresMountsFor=`).
  static func addSourceMounts(_ out: inout DesiredHost, instance: String, source: String) {
    let dropIn = Layout.watchSourceDropIn(instance)
    let directory = String(dropIn[..<dropIn.lastIndex(of: "/")!])
    out.directories.append(DesiredDirectory(path: directory, owner: nil, mode: 0o755, data: false))
    out.files.append(
      DesiredFile(
        path: dropIn, content: .bytes(Array(Units.sourceMounts(source).utf8)), mode: 0o644, secret: false))
  }

  static func hostRef(_ name: String, _ context: RenderContext) -> HostRef {
    context.inventory.hosts.first { $0.name == name }!
  }

  static func baseDirectories() -> [DesiredDirectory] {
    [
      DesiredDirectory(path: Layout.etc, owner: nil, mode: 0o755, data: false),
      DesiredDirectory(path: "\(Layout.etc)/rsyncd", owner: nil, mode: 0o755, data: false),
      DesiredDirectory(path: "\(Layout.etc)/watch", owner: nil, mode: 0o755, data: false),
      DesiredDirectory(path: "/var/lib/fleetsync", owner: nil, mode: 0o755, data: false),
      DesiredDirectory(path: "/var/lib/fleetsync/bin", owner: nil, mode: 0o755, data: false),
      DesiredDirectory(path: Layout.log, owner: nil, mode: 0o750, data: false),
      DesiredDirectory(path: Layout.run, owner: nil, mode: 0o755, data: false),
    ]
  }

  static func addSupervision(_ out: inout DesiredHost, systemd: Bool, kinds: [ServiceName.Kind]) throws {
    if systemd {
      for kind in kinds {
        let unit = kind == .rsyncd ? Units.rsyncd : Units.watch
        out.files.append(
          DesiredFile(
            path: "\(Layout.units)/fleetsync-\(kind.rawValue)@.service", content: .bytes(Array(unit.utf8)),
            mode: 0o644, secret: false))
      }
    } else if !out.services.isEmpty {
      if kinds.contains(.watch) {
        out.files.append(
          DesiredFile(
            path: Layout.supervisor, content: .bytes(Array(Units.supervisor.utf8)), mode: 0o755, secret: false
          ))
      }
      out.files.append(
        DesiredFile(
          path: Layout.bootScript, content: .bytes(Array(try PidFileServices.bootScript().utf8)), mode: 0o755,
          secret: false))
    }
  }

  static func urlHost(_ address: String) -> String { address.contains(":") ? "[\(address)]" : address }
}

/// Hashing helpers.
public enum Digest {
  /// sha256 of bytes as lowercase hex.
  public static func sha256Hex(_ bytes: [UInt8]) -> String {
    SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
  }

  /// sha256 of a local file as lowercase hex, streamed.
  public static func sha256Hex(file path: String) throws -> String {
    guard let handle = FileHandle(forReadingAtPath: path) else {
      throw FleetError(.io, "cannot read \(path)")
    }
    defer { try? handle.close() }
    var hasher = SHA256()
    while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty { hasher.update(data: chunk) }
    return hasher.finalize().map { String(format: "%02x", $0) }.joined()
  }
}
