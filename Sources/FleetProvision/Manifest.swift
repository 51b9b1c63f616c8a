/// The node's record of what fleetsync created and changed, kept at ``Layout/manifest``.
///
/// `down` undoes exactly what is listed here; `up` compares against it to find what to remove.
public struct Manifest: Sendable, Codable, Equatable {
  /// A file fleetsync wrote.
  public struct File: Sendable, Codable, Equatable {
    /// sha256 of the content written.
    public var sha256: String
    /// Whether the content is secret (never shown in diffs).
    public var secret: Bool
  }

  /// A service instance fleetsync runs.
  public struct Service: Sendable, Codable, Equatable {
    /// Listening port (rsync port, or the watcher's health port).
    public var port: Int
    /// Hash of everything the instance's behaviour depends on; a change means restart.
    public var configHash: String
  }

  /// A kernel setting fleetsync raised.
  public struct SysctlChange: Sendable, Codable, Equatable {
    /// Value before fleetsync first changed it (restored by `down`).
    public var previous: Int
    /// Value fleetsync applied.
    public var applied: Int
  }

  /// Always "fleetsync".
  public var managedBy = "fleetsync"
  /// Format version.
  public var version = 1
  /// How services run: `systemd` or `pidfile`.
  public var supervisor: String
  /// The inventory name the node was provisioned as (nil in manifests of earlier versions): another
  /// host of the inventory may not take it over (see `Provisioner.checkRecordedName`).
  public var host: String? = nil
  /// Files written, by path.
  public var files: [String: File] = [:]
  /// Directories fleetsync created (removed by `down` when empty; data directories are kept).
  public var directories: [String] = []
  /// Backup data directories (module paths): never deleted unless asked.
  public var dataDirectories: [String] = []
  /// Service instances, by `kind@instance`.
  public var services: [String: Service] = [:]
  /// Kernel settings changed, by key (`fs.inotify.max_user_watches`).
  public var sysctl: [String: SysctlChange] = [:]

  /// Makes an empty manifest.
  public init(supervisor: String) { self.supervisor = supervisor }
}
