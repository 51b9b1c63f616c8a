/// A setting of the watcher agent: the one table behind the agent's config-file parser, its
/// quick-form command-line flags and the controller's renderer of watcher configs.
///
/// The cases are in the order docs/watcher.md lists them; the raw value is the key as written in
/// a config file (`batch-delay = 100`) and, for keys the quick form offers, the flag without its
/// dashes (`--batch-delay 100`).
public enum WatcherConfigKey: String, CaseIterable, Sendable {
  case source
  case target
  case passwordFile = "password-file"
  case stateDir = "state-dir"
  case healthAddress = "health-address"
  case healthPort = "health-port"
  case exclude
  case batchDelay = "batch-delay"
  case workers
  case rsyncPath = "rsync-path"
  case ioTimeout = "io-timeout"
  case connectTimeout = "connect-timeout"
  case fullSyncInterval = "full-sync-interval"
  case retryMax = "retry-max"
  case maxLag = "max-lag"
  case maxDelete = "max-delete"
  case massChange = "mass-change"
  case keepVersions = "keep-versions"
  case backend

  /// How the quick form offers a key: `--KEY VALUE`, with this help line.
  public struct Flag: Sendable {
    /// The value's name in help (`dir` in `--source <dir>`).
    public var valueName: String
    /// One line for `--help`.
    public var help: String
  }

  /// One row of the table.
  public struct Row: Sendable {
    /// A plausible value, shown in messages (`add a line \`target = EXAMPLE\``).
    public var example: String
    /// The quick form's flag, or nil when the key is only available in a config file.
    public var flag: Flag?
  }

  /// The key's row: its example and, when the quick form has it, its flag.
  public var row: Row {
    switch self {
    case .source:
      Row(example: "/srv/data", flag: Flag(valueName: "dir", help: "Directory to replicate (absolute)."))
    case .target:
      Row(
        example: "rsync://backup@backup1:873/data",
        flag: Flag(valueName: "url", help: "Destination: rsync://USER@HOST[:PORT]/MODULE[/SUBDIR]."))
    case .passwordFile:
      Row(
        example: "/etc/fleetsync/watch/data.password",
        flag: Flag(valueName: "file", help: "File holding the rsync password (mode 600)."))
    case .stateDir:
      Row(
        example: "/var/lib/fleetsync/watch/data",
        flag: Flag(valueName: "dir", help: "Journal directory (default /var/lib/fleetsync/watch/<hash>)."))
    case .healthAddress:
      Row(
        example: "127.0.0.1",
        flag: Flag(valueName: "addr", help: "Health endpoint address (default 127.0.0.1)."))
    case .healthPort:
      Row(example: "9100", flag: Flag(valueName: "n", help: "Health endpoint port (default: no endpoint)."))
    case .exclude:
      Row(example: "*.tmp", flag: Flag(valueName: "pattern", help: "rsync exclude pattern; repeatable."))
    case .batchDelay:
      Row(example: "100", flag: Flag(valueName: "ms", help: "Batching delay in milliseconds (default 100)."))
    case .workers:
      Row(example: "4", flag: Flag(valueName: "n", help: "Parallel rsync transfers (default 4)."))
    case .rsyncPath:
      Row(
        example: "/usr/bin/rsync",
        flag: Flag(valueName: "path", help: "rsync binary (default: rsync on PATH)."))
    case .ioTimeout: Row(example: "30", flag: nil)
    case .connectTimeout: Row(example: "10", flag: nil)
    case .fullSyncInterval: Row(example: "3600", flag: nil)
    case .retryMax: Row(example: "30", flag: nil)
    case .maxLag: Row(example: "300", flag: nil)
    case .maxDelete:
      Row(
        example: "1000,10%",
        flag: Flag(
          valueName: "limit",
          help:
            "Deletes on the backup allowed without an operator: 1000, 10%, 1000,10% (default) or unlimited."
        ))
    case .massChange:
      Row(
        example: "500,10x,5m",
        flag: Flag(
          valueName: "alarm",
          help:
            "Mass-change alarm: MIN files deleted or overwritten within WINDOW and FACTOR times the normal "
            + "rate: 500,10x,5m (default) or off."))
    case .keepVersions:
      Row(
        example: "7",
        flag: Flag(
          valueName: "days",
          help:
            "Keep what transfers overwrite or delete as versions on the backup (default 0: a plain mirror)."
        ))
    case .backend:
      Row(
        example: "auto",
        flag: Flag(
          valueName: "kind",
          help: "Change events from auto (default: fanotify when allowed, else inotify), fanotify or inotify."
        ))
    }
  }

  /// The key as written in a config file.
  public var name: String { rawValue }

  /// Whether every config must give the key (`source` and `target`).
  public var isRequired: Bool { self == .source || self == .target }

  /// Whether the key may be given more than once, each time adding a value (`exclude`).
  public var isRepeatable: Bool { self == .exclude }

  /// The quick form's flag, `--KEY`, or nil when the key is only available in a config file.
  public var flag: String? { row.flag == nil ? nil : "--" + rawValue }

  /// A plausible value, shown in messages.
  public var example: String { row.example }

  /// The key whose quick-form flag is `flag` (`--source`); nil when the quick form has no such flag.
  public init?(flag: String) {
    guard flag.hasPrefix("--"), let key = WatcherConfigKey(rawValue: String(flag.dropFirst(2))),
      key.row.flag != nil
    else { return nil }
    self = key
  }
}
