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
/// mtime are the backup's, and those must not go back. The scan reads every directory
/// beneath the source (opened beneath it, never through a symlink) and `fstatat`s every entry; it
/// runs on a thread of its own after the watch is set up, so changes meanwhile are seen as events.
/// Deletions leave no entry to find: the full sync applies them. The full sync remains the backstop
/// for anything the scan cannot see (a filesystem whose clock runs behind, an NFS server's). It runs
/// at background priority, as a full sync does.
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
    var stopped = false
  }

  /// Walks the source; hands changed paths to `accept` in batches. `shouldStop` is asked every
  /// 1,024 directories.
  func run(accept: ([SyncPath]) -> Void, beat: () -> Void, shouldStop: () -> Bool) -> Outcome {
    let start = monotonicNanos()
    var outcome = Outcome()
    guard let source = SourceRoot(path: root) else { return outcome }
    var found: [SyncPath] = []
    var stack: [[UInt8]] = [[]]
    while let rel = stack.popLast() {
      outcome.directories += 1
      if outcome.directories % 1024 == 0 {
        beat()
        if shouldStop() {
          outcome.stopped = true
          break
        }
      }
      guard case .directory(let fd) = source.openDirectory(rel) else { continue }
      scan(fd, rel, into: &found, subdirectories: &stack)
      if found.count >= Self.batch {
        outcome.changed += found.count
        accept(found)
        found = []
      }
    }
    outcome.changed += found.count
    accept(found)
    outcome.seconds = Double(monotonicNanos() - start) / 1e9
    return outcome
  }

  /// Reads the directory `fd` (closed here): changed entries into `found`, subdirectories onto the
  /// stack.
  private func scan(
    _ fd: Int32, _ rel: [UInt8], into found: inout [SyncPath], subdirectories: inout [[UInt8]]
  ) {
    guard let stream = fdopendir(fd) else {
      close(fd)
      return
    }
    defer { closedir(stream) }
    while let ent = readdir(stream) {
      let name: [UInt8] = withUnsafePointer(to: &ent.pointee.d_name) { ptr in
        ptr.withMemoryRebound(to: UInt8.self, capacity: 256) { p in
          Array(
            UnsafeBufferPointer(
              start: p, count: strlen(UnsafeRawPointer(p).assumingMemoryBound(to: CChar.self))))
        }
      }
      if name == [0x2E] || name == [0x2E, 0x2E] { continue }
      var st = stat()
      let rc = (name.map { CChar(bitPattern: $0) } + [0]).withUnsafeBufferPointer {
        fstatat(dirfd(stream), $0.baseAddress!, &st, AT_SYMLINK_NOFOLLOW)
      }
      guard rc == 0 else { continue }
      let isDirectory = (st.st_mode & S_IFMT) == S_IFDIR
      let child = rel.isEmpty ? name : rel + [UInt8(ascii: "/")] + name
      if excludes.isExcluded(child, isDirectory: isDirectory) { continue }
      if isDirectory { subdirectories.append(child) }
      if Int(st.st_ctim.tv_sec) >= since, let path = RelativePath(child) { found.append(.entry(path)) }
    }
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
    let thread = Thread {
      // Like a full sync, it yields to live transfers.
      _ = fleet_background_priority_this_thread()
      let outcome = scan.run(
        accept: { core.caughtUp($0) }, beat: { core.beat() },
        shouldStop: {
          var fds = [pollfd(fd: stopFD, events: Int16(POLLIN), revents: 0)]
          return poll(&fds, 1, 0) > 0
        })
      let when = Date(timeIntervalSince1970: TimeInterval(since + CatchUpScan.marginSeconds))
      core.logger.log(
        level: outcome.changed > 0 ? .notice : .info,
        "catch-up scan: \(outcome.changed) path(s) changed since the previous run's last change (\(when))",
        metadata: [
          "directories": "\(outcome.directories)", "seconds": "\(String(format: "%.3f", outcome.seconds))",
          "stopped": "\(outcome.stopped)",
        ])
    }
    thread.name = "fleetsync-catch-up"
    thread.start()
  }
}
