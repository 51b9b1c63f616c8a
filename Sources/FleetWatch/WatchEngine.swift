import FleetCore
import FleetWire
import Foundation
import Logging
import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// Replicates one directory to an rsync daemon module as it changes.
///
/// A dedicated thread watches the tree with inotify and journals every changed path before it
/// counts as accepted; the transfer loop coalesces paths over ``WatchConfig/batchDelay`` and sends
/// exactly those paths with `rsync --files-from`, sharded over ``WatchConfig/workers`` processes.
/// A full sync (`rsync -a --delete`) runs at start, after an inotify queue overflow, on request,
/// and periodically if configured. Failed transfers are retried with capped exponential backoff.
public final class WatchEngine: Sendable {
  let core: EngineCore

  /// The journal's file name inside ``WatchConfig/stateDir``.
  public static let journalName = "journal"

  /// Validates `config` and opens the journal, replaying changes a previous run left behind.
  ///
  /// - Throws: ``FleetError`` with ``FleetError/Code/invalidInput``, `watch.source`,
  ///   `watch.passwordFile` or `watch.state` saying what to fix.
  public init(config: WatchConfig, logger: Logger) throws {
    try Self.validate(config)
    try Self.makeDirectory(config.stateDir)
    try Self.checkStateOutsideSource(config)
    let journalPath = config.stateDir + "/" + Self.journalName
    let replayed = try Journal.replay(path: journalPath)
    let since = CatchUpScan.since(journal: journalPath)
    let journal = try Journal(path: journalPath)
    core = EngineCore(config: config, logger: logger, journal: journal, replayed: replayed)
    core.flags.withLock { $0.catchUpSince = since }
    core.loadSourceRecord()
    if !replayed.isEmpty {
      logger.notice(
        "replaying \(replayed.count) journaled change(s) from a previous run",
        metadata: ["journal": "\(journalPath)"])
    }
  }

  /// A cheap, thread-safe snapshot of what the engine is doing.
  public func status() -> WatchStatus { core.snapshot() }

  /// Asks for a reconciling full sync as soon as the running transfer finishes.
  public func requestFullSync() { core.requestFullSync() }

  /// Runs until the calling task is cancelled, then returns normally.
  ///
  /// Changes not yet replicated when cancelled stay in the journal for the next run.
  ///
  /// - Throws: ``FleetError`` with ``FleetError/Code/watchInotify`` when the event loop cannot go
  ///   on (see ``PollFailures``).
  public func run() async throws {
    // rsync may exit (daemon down, auth refused) before it reads the path list from its stdin;
    // writing to that pipe must fail with EPIPE instead of killing the whole process.
    signal(SIGPIPE, SIG_IGN)
    core.update {
      $0.state = .starting
      $0.heartbeat = Date()
    }
    // A pipe wakes the inotify thread's poll() when the task is cancelled.
    var stopPipe: [Int32] = [-1, -1]
    guard pipe(&stopPipe) == 0 else {
      throw FleetError(.io, "cannot create a pipe: \(String(cString: strerror(errno)))")
    }
    defer {
      close(stopPipe[0])
      close(stopPipe[1])
    }
    for end in stopPipe { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
    let stopFD = stopPipe[0]
    let stopWriteFD = stopPipe[1]
    let core = self.core
    await withTaskGroup(of: Void.self) { group in
      group.addTask { await Self.runEventThread(core: core, stopFD: stopFD, stopWriteFD: stopWriteFD) }
      group.addTask {
        while !Task.isCancelled {
          try? await Task.sleep(for: .seconds(1))
          core.wake.yield()
        }
      }
      group.addTask { await TransferLoop(core: core).run() }
      await group.next()
      group.cancelAll()
    }
    core.update { $0.state = .stopping }
    if let failure = core.flags.withLock({ $0.failure }) { throw failure }
    core.logger.info("watcher stopped", metadata: ["pending": "\(core.snapshot().queueDepth)"])
  }

  /// Runs the inotify loop on its own thread (not the cooperative pool) until cancelled.
  static func runEventThread(core: EngineCore, stopFD: Int32, stopWriteFD: Int32) async {
    await withTaskCancellationHandler {
      await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
        let thread = Thread {
          EventLoop(core: core, stopFD: stopFD).run()
          done.resume()
        }
        thread.name = "fleetsync-events"
        thread.start()
      }
    } onCancel: {
      var one: UInt8 = 1
      _ = write(stopWriteFD, &one, 1)
    }
  }

  static func validate(_ config: WatchConfig) throws {
    let src = config.source
    guard src.hasPrefix("/") else {
      throw FleetError(.invalidInput, "the source '\(src)' must be an absolute path")
    }
    var st = stat()
    guard stat(src, &st) == 0 else {
      throw FleetError(
        .watchSource,
        "source \(src) cannot be watched: \(String(cString: strerror(errno))); create it or fix the source setting"
      )
    }
    guard (st.st_mode & S_IFMT) == S_IFDIR else {
      throw FleetError(.watchSource, "source \(src) is not a directory; the source must be a directory")
    }
    guard access(src, R_OK | X_OK) == 0 else {
      throw FleetError(
        .watchSource, "source \(src) is not readable by this user; run as a user that can read it")
    }
    guard config.workers >= 1, config.maxBatchPaths >= 1 else {
      throw FleetError(.invalidInput, "workers and maxBatchPaths must be at least 1")
    }
    try checkBackend(config)
    if let pw = config.passwordFile {
      var pst = stat()
      guard stat(pw, &pst) == 0 else {
        throw FleetError(
          .watchPasswordFile,
          "password file \(pw) cannot be used: \(String(cString: strerror(errno))); create it with mode 600")
      }
      guard (pst.st_mode & S_IFMT) == S_IFREG else {
        throw FleetError(.watchPasswordFile, "password file \(pw) is not a regular file")
      }
      let mode = pst.st_mode & 0o777
      guard mode & 0o077 == 0 else {
        throw FleetError(
          .watchPasswordFile,
          "password file \(pw) is readable by group or others (mode \(String(mode, radix: 8))); "
            + "run `chmod 600 \(pw)` (rsync refuses such files too)")
      }
      guard access(pw, R_OK) == 0 else {
        throw FleetError(.watchPasswordFile, "password file \(pw) is not readable by this user")
      }
      if getuid() == 0 && pst.st_uid != 0 {
        throw FleetError(
          .watchPasswordFile,
          "the password file \(pw) must be owned by root when running as root: chown root \(pw)")
      }
    }
  }

  /// `backend = fanotify` must be usable here: asked for by name, it does not fall back to inotify.
  static func checkBackend(_ config: WatchConfig) throws {
    guard config.backend == .fanotify else { return }
    switch EventLoop.openFanotify(config.source) {
    case .success(let opened):
      close(opened.fd)
      opened.paths.close()
    case .failure(let why):
      throw FleetError(
        .watchFanotify,
        "backend fanotify cannot be used for \(config.source): \(why); set backend to auto (fanotify where it "
          + "can be used, inotify elsewhere) or inotify")
    }
  }

  /// The journal must not live in the tree it watches: every journal write would be a change.
  static func checkStateOutsideSource(_ config: WatchConfig) throws {
    guard let source = realpath(config.source, nil), let state = realpath(config.stateDir, nil) else {
      return
    }
    defer {
      free(source)
      free(state)
    }
    let s = String(cString: source)
    let st = String(cString: state)
    if st == s || st.hasPrefix(s == "/" ? "/" : s + "/") {
      throw FleetError(
        .invalidInput,
        "the state directory \(config.stateDir) is inside the source \(config.source); put it elsewhere "
          + "(e.g. /var/lib/fleetsync)")
    }
  }

  static func makeDirectory(_ path: String) throws {
    var built = path.hasPrefix("/") ? "" : "."
    for comp in path.split(separator: "/") {
      built += "/" + comp
      if mkdir(built, 0o700) != 0 && errno != EEXIST {
        throw FleetError(
          .watchState, "cannot create the state directory \(built): \(String(cString: strerror(errno)))")
      }
    }
    guard access(path, W_OK | X_OK) == 0 else {
      throw FleetError(.watchState, "the state directory \(path) is not writable")
    }
  }
}
