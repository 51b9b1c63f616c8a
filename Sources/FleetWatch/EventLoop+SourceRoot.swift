import Logging
import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// The source root going away while the engine runs: never replicate the absence.
///
/// `IN_UNMOUNT`, `IN_DELETE_SELF`, `IN_MOVE_SELF` or `IN_IGNORED` on the root watch, or the source
/// path leading to another directory than the watched one (looked at every second: a bind mount
/// unmounted or mounted over sends no event), drop every watch and mark the source unwatched,
/// which holds transfers (``SourceGate``). The loop then looks at the path every 500 ms; once it
/// is the recorded source again (or an operator accepted what is there), the watches are set up
/// anew and a full sync is asked for.
extension EventLoop {
  /// Root watch events that mean the watched directory is no longer the source.
  static let rootLossMask =
    UInt32(IN_UNMOUNT) | UInt32(IN_DELETE_SELF) | UInt32(IN_MOVE_SELF) | UInt32(IN_IGNORED)

  /// How often the source path is compared with the watched root.
  static let rootCheckNanos: UInt64 = 1_000_000_000

  static func describeRootLoss(_ mask: UInt32) -> String {
    if mask & UInt32(IN_UNMOUNT) != 0 { return "its filesystem was unmounted" }
    if mask & UInt32(IN_DELETE_SELF) != 0 { return "it was deleted" }
    if mask & UInt32(IN_MOVE_SELF) != 0 { return "it was moved away" }
    return "its watch went away (deleted or unmounted)"
  }

  /// Whether the source path is the recorded source (any directory when none is recorded yet).
  func sourceIsRecorded() -> Bool {
    let now = SourceObservation.observe(core.config.source, excludes: excludes)
    guard case .present(let id) = now else { return false }
    guard let record = core.sourceRecord.withLock({ $0 }) else { return true }
    return id.isSameDirectory(as: record)
  }

  /// `st_dev` and `st_ino` of the source path, or `nil` when it is not a directory.
  func rootIdentity() -> (device: UInt64, inode: UInt64)? {
    var st = stat()
    guard stat(core.config.source, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else { return nil }
    return (UInt64(st.st_dev), UInt64(st.st_ino))
  }

  /// Stops watching: every watch goes, transfers are held until ``rewatch()``.
  func lose(_ why: String) {
    guard !sourceLost else { return }
    sourceLost = true
    let message =
      "not watching the source \(core.config.source): \(why); transfers are held until the source is back"
    logger.error("\(message)")
    core.flags.withLock { $0.sourceUnwatched = why }
    if fd >= 0 { close(fd) }
    fd = -1
    fanotify?.close()
    fanotify = nil
    rootWD = -1
    watchedRoot = nil
    table = DirTable()
    movedAway = [:]
    movedAwayOlder = [:]
    modified = [:]
    core.update { $0.watches = 0 }
    core.wake.yield()
  }

  /// At most every ``rootCheckNanos``: whether the source path still leads to the watched root.
  func checkRoot() {
    let now = monotonicNanos()
    guard now - lastRootCheck >= Self.rootCheckNanos else { return }
    lastRootCheck = now
    let current = rootIdentity()
    guard let current, let watchedRoot, current == watchedRoot else {
      lose(
        current == nil
          ? "it is gone or not a directory"
          : "the path now leads to another directory (mounted over, or replaced)")
      return
    }
  }

  /// Waits until the source is the recorded one; false when asked to stop first.
  func waitForSource() -> Bool {
    var fds = [pollfd(fd: stopFD, events: Int16(POLLIN), revents: 0)]
    while true {
      core.beat()
      guard let rc = pollOnce(&fds), rc <= 0 else { return false }
      if sourceIsRecorded() { return true }
    }
  }

  /// Watches the source again and asks for the full sync that settles what happened meanwhile.
  func rewatch() {
    sourceLost = false
    setUp()
    guard !sourceLost else { return }
    lastRootCheck = monotonicNanos()
    core.flags.withLock { $0.sourceUnwatched = nil }
    logger.notice("the source \(core.config.source) is back; watching it again")
    core.requestFullSync()
  }
}
