import FleetCore
import FleetWire

/// Everything the watcher engine needs to replicate one directory to one rsync daemon module.
public struct WatchConfig: Sendable {
  /// The absolute directory to replicate.
  public var source: String
  /// The rsync daemon module (and sub-directory) that receives the copy.
  public var target: RsyncTarget
  /// A file holding the daemon password; rsync refuses files others can read, and so does the engine.
  public var passwordFile: String?
  /// The directory for the journal of accepted, not yet replicated changes.
  public var stateDir: String
  /// rsync-style exclude patterns (`*.tmp`, `cache/`, `/build`, `a/**/b`), relative to ``source``.
  public var excludes: [String] = []
  /// How long changes are coalesced before a batch is sent.
  public var batchDelay: Duration = .milliseconds(100)
  /// How many rsync processes may run at once; changes are sharded by path.
  public var workers: Int = 4
  /// The rsync executable: a name looked up in `PATH`, or an absolute path.
  public var rsyncPath: String = "rsync"
  /// rsync `--timeout`: the longest I/O stall before a transfer fails.
  public var ioTimeout: Duration = .seconds(30)
  /// rsync `--contimeout`: the longest wait for the daemon to accept a connection.
  public var connectTimeout: Duration = .seconds(10)
  /// If set, a reconciling full sync runs at this interval in addition to the one at start.
  public var fullSyncInterval: Duration? = nil
  /// The first retry delay after a failed transfer; it doubles per failure.
  public var retryInitial: Duration = .seconds(1)
  /// The largest retry delay.
  public var retryMax: Duration = .seconds(30)
  /// A change that has not reached the backup after this long makes the engine unhealthy, whatever
  /// holds it back; nil for no bound.
  public var maxLag: Duration? = WatchStatus.defaultMaxLag
  /// The most paths one rsync run carries, so latency stays bounded under load.
  ///
  /// Under a backlog each free worker takes the oldest this many; an rsync run costs about 6 ms of
  /// CPU of its own, small beside 1,000 files.
  public var maxBatchPaths: Int = 1_000
  /// How many files the engine may delete on the backup without an operator (`max-delete`).
  public var maxDelete: DeleteLimit = .default
  /// Days the backup keeps what transfers overwrite or delete, as versions (`keep-versions`); 0, the
  /// engine's default, is a plain mirror. Pruning is the backup host's job (`fleetsync up` installs it).
  public var keepVersions: Int = 0
  /// How often deletes the limit holds are counted again (a full sync), to apply them once they fit.
  public var deleteReviewInterval: Duration = .seconds(300)
  /// When the mass-change alarm goes off (`mass-change`); see ``MassChangeDetector``.
  public var massChange: MassChangeLimit = .default
  /// Where change events come from (`backend`); `auto` picks fanotify when it can be used.
  public var backend: EventBackend = .auto

  /// Makes a configuration with default tuning.
  public init(source: String, target: RsyncTarget, stateDir: String) {
    self.source = source
    self.target = target
    self.stateDir = stateDir
  }
}

extension FleetError.Code {
  /// The source directory is missing, not a directory, or unreadable.
  public static let watchSource = FleetError.Code("watch.source", meaning: .invalidInput)
  /// The password file is missing, unreadable, or readable by others.
  public static let watchPasswordFile = FleetError.Code("watch.passwordFile", meaning: .invalidInput)
  /// The state directory (journal) cannot be created or written.
  public static let watchState = FleetError.Code("watch.state", meaning: .failed)
  /// `backend = fanotify` was asked for and fanotify cannot be used for the source.
  public static let watchFanotify = FleetError.Code("watch.fanotify", meaning: .invalidInput)
  /// inotify could not be set up, or its events cannot be waited for (`poll` keeps failing).
  public static let watchInotify = FleetError.Code("watch.inotify", meaning: .failed)
  /// The daemon refused the user name or password.
  public static let watchAuth = FleetError.Code("watch.auth", meaning: .auth)
  /// The daemon could not be reached or timed out.
  public static let watchUnreachable = FleetError.Code("watch.unreachable", meaning: .unreachable)
  /// rsync failed for another reason.
  public static let watchRsync = FleetError.Code("watch.rsync", meaning: .failed)
}
