import FleetInventory

/// Where fleetsync puts things on a node. Everything it creates is listed in the node's manifest.
public enum Layout {
  /// Configuration root.
  public static let etc = "/etc/fleetsync"
  /// The node's record of what fleetsync created and changed.
  public static let manifest = "/etc/fleetsync/manifest.json"
  /// inotify limits drop-in.
  public static let sysctl = "/etc/sysctl.d/60-fleetsync.conf"
  /// Installed agent binary (under /var so it is per node and replaceable without touching /usr).
  public static let watchBinary = "/var/lib/fleetsync/bin/fleetsync-watch"
  /// Supervisor script for hosts without systemd.
  public static let supervisor = "/var/lib/fleetsync/bin/fleetsync-supervise"
  /// Boot script for hosts without systemd (System V init; see `PidFileServices`).
  public static let bootScript = "/etc/init.d/fleetsync"
  /// Runtime files (pid, lock).
  public static let run = "/run/fleetsync"
  /// Logs.
  public static let log = "/var/log/fleetsync"
  /// Watcher state (journals).
  public static let state = "/var/lib/fleetsync/watch"
  /// systemd unit directory.
  public static let units = "/etc/systemd/system"
  /// Header for files whose format allows comments.
  public static let header =
    "# Managed by fleetsync: edits are overwritten by `fleetsync up` and removed by `fleetsync down`.\n"

  /// rsync daemon instance config.
  public static func rsyncdConf(_ instance: String) -> String { "\(etc)/rsyncd/\(instance).conf" }
  /// rsync daemon instance secrets (`user:secret` lines, 0600).
  public static func rsyncdSecrets(_ instance: String) -> String { "\(etc)/rsyncd/\(instance).secrets" }
  /// Watcher instance config.
  public static func watchConf(_ instance: String) -> String { "\(etc)/watch/\(instance).conf" }
  /// Watcher instance rsync password file (0600).
  public static func watchPassword(_ instance: String) -> String { "\(etc)/watch/\(instance).password" }
  /// A watcher instance's systemd drop-in naming its source's mount (``Units/sourceMounts(_:)``).
  public static func watchSourceDropIn(_ instance: String) -> String {
    "\(units)/\(ServiceName(.watch, instance).unit).d/fleetsync-source.conf"
  }
  /// Pid file of a service instance (both kinds, without systemd).
  public static func pidFile(_ service: ServiceName) -> String {
    "\(run)/\(service.kind.rawValue)-\(service.instance).pid"
  }
  /// Restarts of a service instance since boot by its supervisor (the pid-file supervisor, or
  /// `heal` for both kinds; systemd's own count, `NRestarts`, is added to it when `heal` resets it).
  public static func restartsFile(_ service: ServiceName) -> String {
    "\(run)/\(service.kind.rawValue)-\(service.instance).restarts"
  }
  /// The mark of a restart made because the instance did not answer its health check (`EPOCH BY`, BY
  /// `heal` or `fleetsync-supervise`), both kinds, with systemd or not; removed once it answers, so a
  /// restart that does not make it answer is not repeated in a loop (see ``HealPolicy``).
  public static func unansweredMark(_ service: ServiceName) -> String {
    "\(run)/\(service.kind.rawValue)-\(service.instance).unanswered"
  }
  /// Log file of a service instance.
  public static func logFile(_ service: ServiceName) -> String {
    "\(log)/\(service.kind.rawValue)-\(service.instance).log"
  }

  /// The rsync user a module's clients log in as.
  public static func authUser(module: String) -> String { "fs-\(module)" }

  /// Watcher instance name for one directory → one destination (`:` cannot occur in names).
  public static func watchInstance(directory: String, to destination: Destination) -> String {
    "\(directory):\(destination.backup):\(destination.module)"
  }
}

/// A service instance fleetsync runs on a node.
public struct ServiceName: Sendable, Hashable, Codable, Comparable, CustomStringConvertible {
  /// The two kinds of instance.
  public enum Kind: String, Sendable, Codable, Hashable {
    case rsyncd
    case watch
  }
  /// Kind.
  public var kind: Kind
  /// Instance name (daemon name, or `dir:backup:module`).
  public var instance: String

  /// Makes a service name.
  public init(_ kind: Kind, _ instance: String) {
    self.kind = kind
    self.instance = instance
  }

  /// systemd unit name, e.g. `fleetsync-rsyncd@main.service` (`:` is valid in unit names).
  public var unit: String { "fleetsync-\(kind.rawValue)@\(instance).service" }

  public var description: String { "\(kind.rawValue)@\(instance)" }

  public static func < (a: ServiceName, b: ServiceName) -> Bool { a.description < b.description }
}
