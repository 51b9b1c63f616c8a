import CFanotify
import FleetWire
import Foundation
import Logging

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// The fanotify backend of the event loop: one mark on the source's filesystem, events filtered to
/// the source by the path their directory handle leads to now (``FanotifyPaths``).
///
/// Nothing is set up per directory, so a directory created or moved in is covered at once: it is
/// sent as a tree, and changes inside it are reported as they happen. A directory deleted before its
/// events are read cannot be resolved; its own deletion, reported by its parent, deletes it with
/// everything in it on the backup.
extension EventLoop {
  /// Why fanotify cannot be used for `source`, or nil with it opened (descriptor and paths).
  static func openFanotify(_ source: String) -> Result<(fd: Int32, paths: FanotifyPaths), FanotifyUnavailable>
  {
    var step: Int32 = 0
    let fd = fleet_fanotify_open(source, &step)
    guard fd >= 0 else {
      return .failure(FanotifyUnavailable(step: fleet_fanotify_step(UInt32(step)), errno: errno))
    }
    guard let paths = FanotifyPaths(source: source) else {
      let e = errno
      close(fd)
      return .failure(FanotifyUnavailable(step: FLEET_FANOTIFY_MARK, errno: e, handles: true))
    }
    return .success((fd, paths))
  }

  /// Watches the source with fanotify, when the configuration allows it and it can be used; false
  /// (inotify is to be set up) otherwise, said in the log.
  func setUpFanotify(start: UInt64) -> Bool {
    let backend = core.config.backend
    guard backend != .inotify else { return false }
    switch Self.openFanotify(core.config.source) {
    case .failure(let why):
      let level: Logger.Level = backend == .fanotify ? .error : .notice
      logger.log(level: level, "fanotify cannot be used here (\(why)); watching with inotify")
      return false
    case .success(let opened):
      watchedRoot = rootIdentity()
      fd = opened.fd
      fanotify = opened.paths
      let seconds = Double(monotonicNanos() - start) / 1e9
      core.update {
        $0.eventBackend = EventBackend.fanotify.rawValue
        $0.watchSetupSeconds = seconds
        $0.watches = 0
      }
      logger.info(
        "watching \(core.config.source) with fanotify (one mark on its filesystem)",
        metadata: ["setupSeconds": "\(String(format: "%.3f", seconds))"])
      return true
    }
  }

  /// Turns fanotify events into changed paths; returns true on a queue overflow.
  func handle(_ events: [FanotifyEvent], into changes: inout [SyncPath]) -> Bool {
    guard let rootHandle = fanotify?.rootHandle else { return false }
    var overflow = false
    let moves = FLEET_FAN_MOVED_FROM | FLEET_FAN_MOVED_TO | FLEET_FAN_DELETE
    let gone = FLEET_FAN_DELETE_SELF | FLEET_FAN_MOVE_SELF
    for ev in events {
      if ev.isOverflow {
        overflow = true
        continue
      }
      guard !ev.directory.isEmpty else { continue }
      // A directory moved or deleted: the cached paths below it are wrong now.
      if ev.isDirectory && ev.mask & (moves | gone) != 0 { fanotify?.forget() }
      if ev.isOnDirectoryItself {
        if ev.directory == rootHandle {
          if ev.mask & gone != 0 {
            lose(ev.mask & FLEET_FAN_DELETE_SELF != 0 ? "it was deleted" : "it was moved away")
            return overflow
          }
          if ev.mask & FLEET_FAN_ATTRIB != 0 { changes.append(.root) }
        } else if ev.mask & FLEET_FAN_ATTRIB != 0, case .inside(let dir)? = place(of: ev.directory),
          let rel = RelativePath(dir)
        {
          // A directory's own mode, owner or times: fanotify reports it on the directory itself.
          _ = record(rel, isDirectory: true, modifyOnly: false, arrives: false, into: &changes)
        }
        continue
      }
      guard case .inside(let dir)? = place(of: ev.directory) else { continue }
      let rel = RelativePath(name: ev.name, in: dir)
      let modifyOnly = ev.mask & ~(FLEET_FAN_MODIFY | FLEET_FAN_ONDIR) == 0
      let arrives = ev.isDirectory && ev.mask & (FLEET_FAN_MOVED_TO | FLEET_FAN_CREATE) != 0
      _ = record(rel, isDirectory: ev.isDirectory, modifyOnly: modifyOnly, arrives: arrives, into: &changes)
    }
    return overflow
  }

  /// Where the directory `handle` names is now (see ``FanotifyPaths/place(of:)``).
  private func place(of handle: [UInt8]) -> FanotifyPaths.Place? {
    fanotify?.place(of: handle) ?? nil
  }
}

/// Why fanotify could not be set up.
struct FanotifyUnavailable: Error, CustomStringConvertible {
  var step: fleet_fanotify_step
  var errno: Int32
  /// The source's file handle could not be read or opened.
  var handles = false

  var description: String {
    let reason = String(cString: strerror(errno))
    if handles { return "the source's filesystem has no usable file handles: \(reason)" }
    switch (step, errno) {
    case (FLEET_FANOTIFY_INIT, ENOSYS): return "this kernel has no fanotify"
    case (FLEET_FANOTIFY_INIT, EINVAL): return "this kernel is older than 5.9 (no FAN_REPORT_DFID_NAME)"
    case (_, EPERM): return "it needs CAP_SYS_ADMIN (run the watcher as root)"
    case (FLEET_FANOTIFY_MARK, EXDEV), (FLEET_FANOTIFY_MARK, EOPNOTSUPP), (FLEET_FANOTIFY_MARK, ENODEV):
      return "the source's filesystem cannot report file handles (\(reason))"
    case (FLEET_FANOTIFY_MARK, _): return "marking the source's filesystem failed: \(reason)"
    default: return "fanotify_init failed: \(reason)"
    }
  }
}
