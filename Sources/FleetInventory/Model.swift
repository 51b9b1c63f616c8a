import FleetCore
import FleetWire

/// A validated inventory: every source, backup host and protected directory, with defaults,
/// group and host settings already merged.
///
/// Only ``Inventory/load(path:)`` and ``Inventory/parse(yaml:file:)`` make one, and they refuse
/// any inventory with an issue, so code that holds an `Inventory` may trust every field.
public struct Inventory: Sendable, Equatable {
  /// Path of the inventory file (as given).
  public var file: String
  /// Where the controller keeps the generated module secrets (0600), beside the inventory by default.
  public var secretsFile: String
  /// The NFS servers, in file order.
  public var sources: [SourceHost]
  /// The backup hosts, in file order.
  public var backups: [BackupHost]
  /// Group names declared under `groups:`.
  public var groups: [String]

  /// Every host once, sources first, in file order.
  ///
  /// A name under both `sources:` and `backups:` is one host with both roles (one machine that is
  /// backed up and keeps backups, as in mutual backup between two NFS servers): it appears once,
  /// where its source entry is, in the groups of both entries.
  public var hosts: [HostRef] {
    var out = sources.map {
      HostRef(name: $0.name, address: $0.address, ssh: $0.ssh, groups: $0.groups, roles: [.source])
    }
    for backup in backups {
      if let index = out.firstIndex(where: { $0.name == backup.name }) {
        out[index].roles.insert(.backup)
        out[index].groups += backup.groups.filter { !out[index].groups.contains($0) }
      } else {
        out.append(
          HostRef(
            name: backup.name, address: backup.address, ssh: backup.ssh, groups: backup.groups,
            roles: [.backup]))
      }
    }
    return out
  }

  /// The backup host called `name`.
  public func backup(named name: String) -> BackupHost? { backups.first { $0.name == name } }

  /// The source called `name`.
  public func source(named name: String) -> SourceHost? { sources.first { $0.name == name } }

  /// The addresses of every host of the inventory, sources then backups, each once: the `hosts allow`
  /// of a module's read-only views, which `restore --to` any inventory host reads through.
  public var addresses: [String] {
    var out: [String] = []
    for address in sources.map(\.address) + backups.map(\.address) where !out.contains(address) {
      out.append(address)
    }
    return out
  }

  /// The addresses of the sources that send to `module` on backup host `backup` (for `hosts allow`).
  public func senders(backup: String, module: String) -> [String] {
    var out: [String] = []
    for source in sources {
      for dir in source.directories
      where dir.destinations.contains(Destination(backup: backup, module: module)) {
        if !out.contains(source.address) { out.append(source.address) }
      }
    }
    return out
  }
}

/// A host, as the SSH layer and `--limit` see it: one machine, with one or both roles.
public struct HostRef: Sendable, Equatable, Hashable {
  /// What a host is for.
  public enum Role: String, Sendable, Hashable { case source, backup }
  /// Inventory name.
  public var name: String
  /// Address to connect to.
  public var address: String
  /// Merged SSH settings.
  public var ssh: SSHSettings
  /// Groups the host belongs to (of both its entries, when it has both roles).
  public var groups: [String]
  /// Source, backup, or both: one node, one manifest holding what both roles install.
  public var roles: Set<Role>

  /// Makes a host reference.
  public init(name: String, address: String, ssh: SSHSettings, groups: [String], roles: Set<Role>) {
    self.name = name
    self.address = address
    self.ssh = ssh
    self.groups = groups
    self.roles = roles
  }

  /// Makes a reference to a host of one role.
  public init(name: String, address: String, ssh: SSHSettings, groups: [String], role: Role) {
    self.init(name: name, address: address, ssh: ssh, groups: groups, roles: [role])
  }
}

/// How the controller reaches a host: merged from `defaults.ssh`, the host's groups, the host.
public struct SSHSettings: Sendable, Equatable, Hashable {
  /// Login user (default `root`).
  public var user: String = "root"
  /// SSH port (default 22).
  public var port: Int = 22
  /// Private key file, or nil to use ssh-agent.
  public var identity: String? = nil
  /// Passphrase file for the identity, if it is encrypted.
  public var passphraseFile: String? = nil
  /// OpenSSH known_hosts file (default `~/.ssh/known_hosts`).
  public var knownHosts: String = "~/.ssh/known_hosts"
  /// `strict` or `accept-new`, as OpenSSH's StrictHostKeyChecking.
  public var hostKeyPolicy: String = "strict"
  /// Seconds to wait for connect + handshake + auth.
  public var connectTimeout: Int = 10

  /// Default settings.
  public init() {}
}

/// Kernel inotify limits a source host needs (`fs.inotify.*`); fleetsync only ever raises them.
public struct InotifyLimits: Sendable, Equatable, Hashable {
  /// `fs.inotify.max_user_watches`: one per watched directory.
  public var maxUserWatches: Int = 1_048_576
  /// `fs.inotify.max_user_instances`: one per watcher process.
  public var maxUserInstances: Int = 1024
  /// `fs.inotify.max_queued_events`: queue length before IN_Q_OVERFLOW.
  public var maxQueuedEvents: Int = 65_536
}

/// Watcher tuning for a protected directory: defaults, group, host, then the directory itself.
public struct WatchSettings: Sendable, Equatable, Hashable {
  /// Milliseconds events are coalesced before a transfer.
  public var batchDelayMs: Int = 100
  /// Parallel rsync workers.
  public var workers: Int = 4
  /// rsync exclude patterns.
  public var excludes: [String] = []
  /// Seconds between reconciling full syncs; 0 = only at start and after overflow.
  public var fullSyncInterval: Int = 0
  /// Deletes on the backup a watcher applies without an operator (`max_delete`).
  public var maxDelete: DeleteLimit = .default
  /// When the watcher raises the mass-change alarm (`mass_change`).
  public var massChange: MassChangeLimit = .default
  /// Where the watcher's change events come from (`backend`).
  public var backend: EventBackend = .auto
}

/// rsync daemon defaults for backup hosts.
public struct RsyncSettings: Sendable, Equatable, Hashable {
  /// User the daemon writes as (where the module path allows).
  public var uid: String = "nobody"
  /// Group the daemon writes as.
  public var gid: String = "nogroup"
  /// `max connections` per instance.
  public var maxConnections: Int = 64
  /// Days the versions of overwritten and deleted files are kept (`keep_versions`); 0 = plain mirror.
  public var keepVersions: Int = RsyncModule.defaultKeepVersions
}

/// An NFS server with the directories it protects.
public struct SourceHost: Sendable, Equatable {
  /// Inventory name (safe as a file name).
  public var name: String
  /// Address to connect to (and the `hosts allow` entry on its backups).
  public var address: String
  /// Groups, in override order.
  public var groups: [String]
  /// Merged SSH settings.
  public var ssh: SSHSettings
  /// Merged inotify limits.
  public var inotify: InotifyLimits
  /// Protected directories, in file order.
  public var directories: [ProtectedDirectory]
}

/// One protected directory: one watcher instance per destination.
public struct ProtectedDirectory: Sendable, Equatable {
  /// Name, unique on its source (used in instance and file names).
  public var name: String
  /// Absolute path on the source.
  public var path: String
  /// Where it is replicated (one or more backup modules).
  public var destinations: [Destination]
  /// Merged watcher settings.
  public var watch: WatchSettings
  /// Health port fixed in the inventory, if any (otherwise the controller assigns a stable one).
  public var healthPort: Int?
}

/// A backup module a directory is sent to.
public struct Destination: Sendable, Equatable, Hashable {
  /// Backup host name.
  public var backup: String
  /// Module name on that host.
  public var module: String
  /// Makes a destination.
  public init(backup: String, module: String) {
    self.backup = backup
    self.module = module
  }
}

/// A backup host with its rsync daemon instances.
public struct BackupHost: Sendable, Equatable {
  /// Inventory name.
  public var name: String
  /// Address to connect to.
  public var address: String
  /// Groups, in override order.
  public var groups: [String]
  /// Merged SSH settings.
  public var ssh: SSHSettings
  /// rsync daemon instances, in file order.
  public var daemons: [RsyncDaemon]

  /// The module called `name`, with the daemon that serves it.
  public func module(named name: String) -> (daemon: RsyncDaemon, module: RsyncModule)? {
    for daemon in daemons {
      if let module = daemon.modules.first(where: { $0.name == name }) { return (daemon, module) }
    }
    return nil
  }
}

/// One rsync daemon instance: own config, port, pid/lock/log files, secrets file.
public struct RsyncDaemon: Sendable, Equatable {
  /// Instance name, unique on its host.
  public var name: String
  /// Port fixed in the inventory, if any (otherwise the controller assigns a stable one).
  public var port: Int?
  /// Merged daemon settings.
  public var settings: RsyncSettings
  /// Modules served by this instance.
  public var modules: [RsyncModule]
}

/// One rsync module: a directory on the backup host that receives data.
public struct RsyncModule: Sendable, Equatable {
  /// Module name, unique on its host.
  public var name: String
  /// Absolute path of the module on the backup host.
  public var path: String
  /// A file holding this module's secret, when the user supplies it instead of letting
  /// fleetsync generate one.
  public var secretFile: String?
  /// Days the backup keeps the versions of files a transfer overwrites or deletes (`keep_versions`,
  /// from the module, its daemon, the host, its groups or `defaults.rsync`); 0 = plain mirror.
  public var keepVersions: Int

  /// `keep_versions` when no level of the inventory sets it.
  public static let defaultKeepVersions = 7
  /// The largest `keep_versions` accepted (ten years).
  public static let maxKeepVersions = 3650

  /// Makes a module.
  public init(name: String, path: String, secretFile: String?, keepVersions: Int = defaultKeepVersions) {
    self.name = name
    self.path = path
    self.secretFile = secretFile
    self.keepVersions = keepVersions
  }
}

extension Inventory {
  /// The directories fleetsync keeps its own files in on every node (FleetProvision's `Layout`):
  /// no data path may be one of them, lie inside one, or contain one.
  public static let fleetsyncDirectories = [
    "/etc/fleetsync", "/var/lib/fleetsync", "/var/log/fleetsync", "/run/fleetsync",
  ]
}
