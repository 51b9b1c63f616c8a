import FleetWire
import Foundation
import Logging
import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// The change events: owns the fanotify or inotify descriptor (and inotify's directory table), runs
/// on its own thread.
///
/// Sets up fanotify (`EventLoop+Fanotify.swift`) or the recursive inotify watch, then reads events
/// with a large buffer, turns them into changed paths (with inotify, new directories are watched and
/// then scanned at once), and hands each read batch to ``EngineCore/accept(_:)``. A queue overflow
/// triggers a reconciling full sync (and, with inotify, a rescan).
final class EventLoop {
  let core: EngineCore
  let stopFD: Int32
  let root: [UInt8]
  let excludes: ExcludeMatcher
  var logger: Logger { core.logger }
  var fd: Int32 = -1
  /// Set while fanotify is the backend: its directory handles' paths.
  var fanotify: FanotifyPaths?
  var table = DirTable()
  var rootWD: Int32 = -1
  /// Directories moved away, by cookie, waiting one read for their `IN_MOVED_TO`.
  var movedAway: [UInt32: Int32] = [:]
  var movedAwayOlder: [UInt32: Int32] = [:]
  var limitReported = false
  /// Files seen with `IN_MODIFY` but no `IN_CLOSE_WRITE` yet: path → (first, last) monotonic ns.
  var modified: [RelativePath: (first: UInt64, last: UInt64)] = [:]
  /// A modified file is sent once it has been quiet this long (a `truncate`, an `mmap` write)...
  static let modifyQuietNanos: UInt64 = 1_000_000_000
  /// ...or at least this often while something keeps writing to it without closing it.
  static let modifyMaxNanos: UInt64 = 10_000_000_000
  /// While events stream in (two reads that found events within twice this) and transfers run,
  /// how long the next read waits, so that events are read, journaled (one `fdatasync`) and
  /// handed to the transfer loop (one wake) in batches: a change then waits `batchDelay` in the
  /// queue, and reaches it at most this much later. With no transfer running every read is at
  /// once: an idle change goes after ``TransferDispatcher/idleSettle``, and the rest of its
  /// write's events must be in by then. The fanotify backend always reads at once: with it,
  /// gathering made 14 of 100 idle changes wait one batch delay more in the benchmark (cause not
  /// found; none without).
  static let gatherNanos: UInt64 = 5_000_000
  /// `poll(2)` and the sleep between failed polls; tests put fakes in.
  var pollSystem = PollSystem()
  /// Backoff, logging and giving up while `poll` fails.
  var pollFailures = PollFailures()
  /// The watched root's `st_dev` and `st_ino`; the path must keep leading to it.
  var watchedRoot: (device: UInt64, inode: UInt64)?
  /// Set while the recorded source is not watched (see `EventLoop+SourceRoot.swift`).
  var sourceLost = false
  /// When the root was last looked at, monotonic ns.
  var lastRootCheck: UInt64 = 0

  init(core: EngineCore, stopFD: Int32) {
    self.core = core
    self.stopFD = stopFD
    var r = Array(core.config.source.utf8)
    while r.count > 1 && r.last == UInt8(ascii: "/") { r.removeLast() }
    root = r
    excludes = ExcludeMatcher(core.config.excludes)
  }

  deinit {
    if fd >= 0 { close(fd) }
    fanotify?.close()
  }

  /// Sets up and runs until `stopFD` becomes readable.
  ///
  /// While the source is not the recorded one (at start, or after its root was unmounted, deleted,
  /// moved or replaced), it watches nothing and waits for the source to come back, then sets the
  /// watches up again and asks for a full sync.
  func run() {
    if sourceIsRecorded() {
      setUp()
      startCatchUp()
    } else {
      lose("the source is not the directory recorded in \(core.config.stateDir)")
    }
    core.flags.withLock { $0.setupDone = true }
    core.wake.yield()
    while true {
      if sourceLost {
        guard waitForSource() else { return }
        rewatch()
        continue
      }
      guard fd >= 0 else {
        waitForStop()
        return
      }
      loop()
      guard sourceLost else { return }
    }
  }

  /// Watches the source with fanotify when allowed and possible, else with inotify.
  func setUp() {
    let start = monotonicNanos()
    if setUpFanotify(start: start) { return }
    setUpInotify(start: start)
  }

  func setUpInotify(start: UInt64) {
    core.update { $0.eventBackend = EventBackend.inotify.rawValue }
    fd = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
    if fd < 0 {
      let e = errno
      let message =
        "inotify is unavailable (\(String(cString: strerror(e)))); raise fs.inotify.max_user_instances. "
        + "Falling back to periodic full syncs"
      logger.error("\(message)")
      core.flags.withLock { $0.inotifyUnavailable = true }
      core.forgetFullSyncRecord()
      core.recordError(kind: .watchLimit, message: message)
      return
    }
    // Before the watch: a root that cannot be watched (out of watches) is still compared with the path.
    watchedRoot = rootIdentity()
    let cRoot = absoluteCPath(root: root, [])
    let added = cRoot.withUnsafeBufferPointer { b in
      b.baseAddress!.withMemoryRebound(to: CChar.self, capacity: b.count) { addWatch(fd: fd, cPath: $0) }
    }
    if case .vanished = added {
      lose("it went away while its watch was set up")
      return
    }
    guard case .added(let wd) = added else {
      reportLimit()
      return
    }
    rootWD = wd
    table.set(wd, parent: DirTable.rootParent, name: [])
    let core = self.core
    let result = watchTree(
      fd: fd, root: root, startRelative: [], startWD: wd, excludes: excludes, threads: 2,
      beat: { core.beat() })
    merge(result)
    let seconds = Double(monotonicNanos() - start) / 1e9
    let count = table.count
    core.update {
      $0.watchSetupSeconds = seconds
      $0.watches = count
    }
    logger.info(
      "watching \(core.config.source)",
      metadata: ["watches": "\(count)", "setupSeconds": "\(String(format: "%.3f", seconds))"])
  }

  func merge(_ result: WalkResult) {
    table.reserve(result.dirs.count)
    for d in result.dirs { table.set(d.wd, parent: d.parent, name: d.name) }
    for f in result.failures { logger.warning("\(f)") }
    if result.limitReached { reportLimit() }
  }

  /// Out of watches: say so (log + status), then keep going with periodic full syncs.
  func reportLimit() {
    core.flags.withLock { $0.watchLimit = true }
    core.forgetFullSyncRecord()
    guard !limitReported else { return }
    limitReported = true
    let message =
      "out of inotify watches: fs.inotify.max_user_watches is \(maxUserWatches()) and is used up; "
      + "raise it (sysctl fs.inotify.max_user_watches=N). Changes in unwatched directories are "
      + "caught only by periodic full syncs until then"
    logger.error("\(message)")
    core.recordError(kind: .watchLimit, message: message)
    core.update { $0.state = .degraded }
  }

  func waitForStop() {
    var fds = [pollfd(fd: stopFD, events: Int16(POLLIN), revents: 0)]
    while true {
      core.beat()
      guard let rc = pollOnce(&fds), rc <= 0 else { return }
    }
  }

  func loop() {
    let bufferSize = 1 << 20
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bufferSize, alignment: 8)
    defer { buffer.deallocate() }
    var fds = [
      pollfd(fd: fd, events: Int16(POLLIN), revents: 0),
      pollfd(fd: stopFD, events: Int16(POLLIN), revents: 0),
    ]
    var streaming = false
    // When a read last found events, monotonic ns.
    var lastEvents: UInt64 = 0
    while true {
      core.beat()
      if streaming { gather() }
      guard let rc = pollOnce(&fds) else { return }
      if fds[1].revents != 0 { return }
      guard rc > 0, fds[0].revents != 0 else {
        expireMoves()
        expireMoves()
        var changes: [SyncPath] = []
        flushModified(into: &changes)
        core.accept(changes)
        streaming = false
        checkRoot()
        if sourceLost { return }
        continue
      }
      var changes: [SyncPath] = []
      var overflow = false
      var found = false
      // Drain what is there now (bounded), then accept it as one durable batch.
      for _ in 0..<64 {
        let n = read(fd, buffer.baseAddress, bufferSize)
        if n <= 0 { break }
        found = true
        let raw = UnsafeRawBufferPointer(rebasing: buffer[0..<n])
        let lost =
          fanotify == nil
          ? handle(InotifyEvent.parse(raw), into: &changes)
          : handle(FanotifyEvent.parse(raw, closeFD: { close($0) }), into: &changes)
        overflow = lost || overflow
        if n < bufferSize / 2 { break }
      }
      expireMoves()
      flushModified(into: &changes)
      if overflow { recoverFromOverflow(into: &changes) }
      core.accept(changes)
      if found {
        let now = monotonicNanos()
        streaming = fanotify == nil && now &- lastEvents < 2 * Self.gatherNanos && core.transfersRunning
        lastEvents = now
      } else {
        streaming = false
      }
      let count = table.count
      core.update { $0.watches = count }
      checkRoot()
      if sourceLost { return }
    }
  }

  /// Waits ``gatherNanos`` for more events to come, or until a stop is asked for.
  func gather() {
    var stop = [pollfd(fd: stopFD, events: Int16(POLLIN), revents: 0)]
    _ = poll(&stop, 1, Int32(Self.gatherNanos / 1_000_000))
  }

  /// Turns events into changed paths; returns true on a queue overflow.
  func handle(_ events: [InotifyEvent], into changes: inout [SyncPath]) -> Bool {
    var overflow = false
    for ev in events {
      if ev.mask & UInt32(IN_Q_OVERFLOW) != 0 {
        overflow = true
        continue
      }
      if ev.wd == rootWD && ev.mask & Self.rootLossMask != 0 {
        lose(Self.describeRootLoss(ev.mask))
        continue
      }
      if ev.mask & UInt32(IN_IGNORED) != 0 {
        table.remove(ev.wd)
        continue
      }
      if ev.name.isEmpty {
        // The source root's own mode, owner or times changed: no parent watch reports that.
        if ev.wd == rootWD && ev.mask & UInt32(IN_ATTRIB) != 0 { changes.append(.root) }
        continue
      }
      guard let dir = table.path(of: ev.wd) else { continue }
      let rel = RelativePath(name: ev.name, in: dir)
      let modifyOnly = ev.mask & UInt32(IN_MODIFY) != 0 && ev.mask & ~UInt32(IN_MODIFY | IN_ISDIR) == 0
      let arrives = ev.isDirectory && ev.mask & UInt32(IN_MOVED_TO | IN_CREATE) != 0
      let recorded = record(
        rel, isDirectory: ev.isDirectory, modifyOnly: modifyOnly, arrives: arrives, into: &changes)
      guard recorded, !modifyOnly, ev.isDirectory else { continue }
      if ev.mask & UInt32(IN_MOVED_FROM) != 0 {
        if let child = table.child(of: ev.wd, named: ev.name) {
          table.detach(child)
          movedAway[ev.cookie] = child
        }
      } else if ev.mask & UInt32(IN_MOVED_TO | IN_CREATE) != 0 {
        if ev.mask & UInt32(IN_MOVED_TO) != 0 {
          let moved =
            movedAway.removeValue(forKey: ev.cookie) ?? movedAwayOlder.removeValue(forKey: ev.cookie)
          if let moved { table.set(moved, parent: ev.wd, name: ev.name) }
        }
        scanNewDirectory(rel, parent: ev.wd, name: ev.name, into: &changes)
      }
    }
    return overflow
  }

  /// Queues the change of `rel`, unless excluded (then false). A file only modified waits for its
  /// close (or for quiet) instead of being sent half-written. A directory that `arrives` (created
  /// or moved in) is sent as a tree (recursively, with --delete), so whatever the backup held at
  /// that name (a directory deleted or moved away in the same batch) goes.
  func record(
    _ rel: RelativePath, isDirectory: Bool, modifyOnly: Bool, arrives: Bool, into changes: inout [SyncPath]
  ) -> Bool {
    if excludes.isExcluded(rel.bytes, isDirectory: isDirectory) { return false }
    if modifyOnly {
      let now = monotonicNanos()
      modified[rel] = (modified[rel]?.first ?? now, now)
      return true
    }
    if !modified.isEmpty { modified[rel] = nil }
    changes.append(arrives ? .tree(rel) : .entry(rel))
    return true
  }

  /// Watches a new directory, THEN lists it, so entries created before the watch are not missed.
  /// Every entry below it is a change (it travels with the directory's tree send); sub-directories
  /// get the same treatment. Each directory is opened beneath the source root without following a
  /// symlink, and watched through that descriptor (see ``SourceRoot``).
  func scanNewDirectory(_ rel: RelativePath, parent: Int32, name: [UInt8], into changes: inout [SyncPath]) {
    guard let source = SourceRoot(path: root) else { return }  // gone: checkRoot() sees to that
    var stack: [(rel: RelativePath, parent: Int32?, name: [UInt8])] = [(rel, parent, name)]
    var scanned = 0
    while let item = stack.popLast() {
      scanned += 1
      if scanned % 1024 == 0 { core.beat() }  // a big tree moved in must not look like a stall
      let dir: Int32
      switch source.openDirectory(item.rel.bytes) {
      case .directory(let d): dir = d
      case .notBeneath: continue
      case .failed(let e):
        logger.warning("cannot read directory \(item.rel): errno \(e)")
        continue
      }
      var wd: Int32?
      if let parent = item.parent, !core.flags.withLock({ $0.watchLimit }) {
        switch addWatch(fd: fd, openedDirectory: dir, path: { source.cPath(of: item.rel.bytes) }) {
        case .added(let w):
          wd = w
          table.set(w, parent: parent, name: item.name)
        case .vanished:
          close(dir)
          continue
        case .limitReached: reportLimit()
        case .failed(let e):
          logger.warning("cannot watch \(item.rel): errno \(e)")
        }
      }
      _ = forEachEntry(dir) { childName, isDir in
        let childRel = item.rel.appending(childName)
        if excludes.isExcluded(childRel.bytes, isDirectory: isDir) { return }
        changes.append(.entry(childRel))
        if isDir { stack.append((childRel, wd, childName)) }
      }
    }
  }

  /// Queues modified files that went quiet, or that have been written to for too long.
  func flushModified(into changes: inout [SyncPath]) {
    guard !modified.isEmpty else { return }
    let now = monotonicNanos()
    for (path, t) in modified
    where now - t.last >= Self.modifyQuietNanos || now - t.first >= Self.modifyMaxNanos {
      changes.append(.entry(path))
      modified[path] = nil
    }
  }

  /// Directories moved out of the tree (no `IN_MOVED_TO` within two reads): drop their watches.
  func expireMoves() {
    for (_, wd) in movedAwayOlder {
      for w in table.subtree(of: wd) {
        inotify_rm_watch(fd, w)
        table.remove(w)
      }
    }
    movedAwayOlder = movedAway
    movedAway = [:]
  }

  /// After `IN_Q_OVERFLOW`: watch directories created meanwhile, then ask for a full sync.
  func recoverFromOverflow(into changes: inout [SyncPath]) {
    core.forgetFullSyncRecord()
    let message =
      fanotify == nil
      ? "inotify queue overflowed (fs.inotify.max_queued_events); rescanning and running a full sync"
      : "fanotify queue overflowed (fs.fanotify.max_queued_events); running a full sync"
    logger.warning("\(message)")
    core.update {
      $0.overflows += 1
      $0.recordError(.overflow, message)
    }
    if fanotify == nil && !core.flags.withLock({ $0.watchLimit }) {
      let core = self.core
      let result = watchTree(
        fd: fd, root: root, startRelative: [], startWD: rootWD, excludes: excludes, threads: 2,
        beat: { core.beat() })
      merge(result)
    }
    core.requestFullSync()
  }
}
