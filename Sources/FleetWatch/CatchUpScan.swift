import CLandlock
import Foundation
import Logging
import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// Finds what changed in the source while no watcher ran, so that it goes out in seconds instead of
/// waiting for the full sync at start (minutes on a big tree).
///
/// The journal's modification time says when the previous run last recorded a change. Until it
/// stopped, every change made a journal write; so a path whose status changed (`ctime`) since then,
/// less a margin for clock ticks, may have changed while nothing watched. Such paths are rechecked
/// (``Transfer/Work/recheck(_:)``: sent where the backup's size or mtime differs, as the full sync
/// compares), not sent as changes: a restore writes files whose status is new and whose content and
/// mtime are the backup's, and those must not go back.
///
/// Two passes, each opening directories beneath the source (never through a symlink):
/// 1. **Entries made, removed or renamed.** Those change their directory's `ctime`, so only the
///    directories whose `ctime` is recent are read whole (every entry `fstatat`ed); the others are
///    only searched for subdirectories, and not even read where their link count says they have
///    none (``LeafTest``). On a big tree this takes milliseconds, and it finds the files written
///    while the watcher restarted.
/// 2. **Files changed in place** (a write into an existing file changes no directory): every entry
///    of every directory that pass 1 did not read whole.
///
/// It runs on a thread of its own after the watch is set up, so changes meanwhile are seen as events,
/// at background priority, as a full sync does. Deletions leave no entry to find: the full sync
/// applies them. The full sync remains the backstop for anything the scan cannot see (a filesystem
/// whose clock runs behind, an NFS server's).
struct CatchUpScan {
  let root: [UInt8]
  let excludes: ExcludeMatcher
  /// Seconds since the epoch: entries whose `ctime` is at or after this are changes.
  let since: Int
  /// Paths go out in batches of this many.
  static let batch = 4096
  /// How far before the journal's last write the scan looks (clock ticks, a write in flight).
  static let marginSeconds = 2

  /// What a scan found.
  struct Outcome {
    var changed = 0
    var directories = 0
    var seconds = 0.0
    /// Seconds until the first pass (entries made, removed or renamed) was over.
    var firstPassSeconds = 0.0
    var stopped = false
  }

  /// A directory waiting in a pass: whether all its entries are looked at, or only its
  /// subdirectories.
  private struct Pending {
    var rel: [UInt8]
    var whole: Bool
  }

  /// Walks the source twice; hands changed paths to `accept` in batches, and at the end of each
  /// pass, then calls `firstPassDone` after the first. `shouldStop` is asked every 1,024 directories.
  func run(
    accept: ([SyncPath]) -> Void, firstPassDone: () -> Void = {}, beat: () -> Void, shouldStop: () -> Bool
  ) -> Outcome {
    let start = monotonicNanos()
    var outcome = Outcome()
    guard let source = SourceRoot(path: root) else { return outcome }
    var found: [SyncPath] = []
    var rootStatus = stat()
    let rootChanged = fstat(source.fd, &rootStatus) == 0 && changed(rootStatus)
    let leaves = LeafTest(root: source.fd)
    var readWhole = Set<[UInt8]>()
    let passes: [(first: Bool, start: Pending)] = [
      (true, Pending(rel: [], whole: rootChanged)), (false, Pending(rel: [], whole: true)),
    ]
    for pass in passes where !outcome.stopped {
      var stack = [pass.start]
      while let item = stack.popLast() {
        outcome.directories += 1
        if outcome.directories % 1024 == 0 {
          beat()
          if shouldStop() {
            outcome.stopped = true
            break
          }
        }
        guard case .directory(let fd) = source.openDirectory(item.rel) else { continue }
        if pass.first {
          if item.whole { readWhole.insert(item.rel) }
          scanForEntries(fd, item, leaves: leaves, into: &found, subdirectories: &stack)
        } else {
          let whole = !readWhole.contains(item.rel)
          scanInPlace(fd, Pending(rel: item.rel, whole: whole), into: &found, subdirectories: &stack)
        }
        if found.count >= Self.batch {
          outcome.changed += found.count
          accept(found)
          found = []
        }
      }
      outcome.changed += found.count
      accept(found)
      found = []
      if pass.first {
        outcome.firstPassSeconds = Double(monotonicNanos() - start) / 1e9
        firstPassDone()
      }
    }
    outcome.seconds = Double(monotonicNanos() - start) / 1e9
    return outcome
  }

  private func changed(_ st: stat) -> Bool { Int(st.st_ctim.tv_sec) >= since }

  /// Pass 1 in the directory `fd` (closed here): with `item.whole`, every changed entry into `found`;
  /// subdirectories that are recent or may hold some onto the stack.
  private func scanForEntries(
    _ fd: Int32, _ item: Pending, leaves: LeafTest, into found: inout [SyncPath],
    subdirectories: inout [Pending]
  ) {
    _ = forEachEntry(fd, directoriesOnly: !item.whole) { name, isDirectory in
      let child = joinRelative(item.rel, name)
      if excludes.isExcluded(child, isDirectory: isDirectory) { return }
      guard let st = status(of: name, in: fd) else { return }
      let recent = changed(st)
      if recent, let path = RelativePath(child) { found.append(.entry(path)) }
      guard isDirectory else { return }
      if recent || !leaves.isLeaf(st) { subdirectories.append(Pending(rel: child, whole: recent)) }
    }
  }

  /// Pass 2 in the directory `fd` (closed here): with `item.whole`, every changed entry that is not a
  /// directory (pass 1 looked at those) into `found`; every subdirectory onto the stack.
  private func scanInPlace(
    _ fd: Int32, _ item: Pending, into found: inout [SyncPath], subdirectories: inout [Pending]
  ) {
    _ = forEachEntry(fd, directoriesOnly: !item.whole) { name, isDirectory in
      let child = joinRelative(item.rel, name)
      if excludes.isExcluded(child, isDirectory: isDirectory) { return }
      if isDirectory {
        subdirectories.append(Pending(rel: child, whole: true))
      } else if let st = status(of: name, in: fd), changed(st), let path = RelativePath(child) {
        found.append(.entry(path))
      }
    }
  }

  /// `fstatat` of `name` in the directory `dir`, never following a symlink.
  private func status(of name: [UInt8], in dir: Int32) -> stat? {
    var st = stat()
    let rc = (name.map { CChar(bitPattern: $0) } + [0]).withUnsafeBufferPointer {
      fstatat(dir, $0.baseAddress!, &st, AT_SYMLINK_NOFOLLOW)
    }
    return rc == 0 ? st : nil
  }

  /// When the previous run last wrote its journal at `path`, less the margin; nil when there was no
  /// previous run (no journal).
  static func since(journal path: String) -> Int? {
    var st = stat()
    guard stat(path, &st) == 0 else { return nil }
    return Int(st.st_mtim.tv_sec) - marginSeconds
  }
}

extension EventLoop {
  /// Starts the catch-up scan on a thread of its own, when a previous run left a journal (see
  /// ``CatchUpScan``); logs what it found.
  func startCatchUp() {
    guard let since = core.flags.withLock({ $0.catchUpSince }), !sourceLost else { return }
    let scan = CatchUpScan(root: root, excludes: excludes, since: since)
    let core = self.core
    let stopFD = self.stopFD
    core.catchingUp(true)
    let thread = Thread {
      // Like a full sync, it yields to live transfers.
      _ = fleet_background_priority_this_thread()
      var firstPassDone = false
      let outcome = scan.run(
        accept: { core.caughtUp($0) },
        firstPassDone: {
          firstPassDone = true
          core.catchingUp(false)
        },
        beat: { core.beat() },
        shouldStop: {
          var fds = [pollfd(fd: stopFD, events: Int16(POLLIN), revents: 0)]
          return poll(&fds, 1, 0) > 0
        })
      if !firstPassDone { core.catchingUp(false) }
      let when = Date(timeIntervalSince1970: TimeInterval(since + CatchUpScan.marginSeconds))
      core.logger.log(
        level: outcome.changed > 0 ? .notice : .info,
        "catch-up scan: \(outcome.changed) path(s) changed since the previous run's last change (\(when))",
        metadata: [
          "directories": "\(outcome.directories)", "seconds": "\(String(format: "%.3f", outcome.seconds))",
          "firstPassSeconds": "\(String(format: "%.3f", outcome.firstPassSeconds))",
          "stopped": "\(outcome.stopped)",
        ])
    }
    thread.name = "fleetsync-catch-up"
    thread.start()
  }
}
