import CLandlock
import Logging

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// The CPU and I/O priority of an rsync run.
///
/// A reconciling full sync runs in the ``background``: it reads the whole tree, and live transfers,
/// which carry the changes being made now, must not wait behind it for the CPU or the disk.
enum ProcessPriority: Sendable, Equatable {
  /// The watcher's own.
  case normal
  /// nice 10 and the lowest best-effort I/O level (see `fleet_background_priority`).
  case background

  /// Gives the child `pid`, just started, this priority. Best effort: a child left at normal priority
  /// still transfers correctly, so a failure is logged, not raised.
  ///
  /// For runs started through swift-subprocess (no sandbox), which has no hook before `execve`. A
  /// confined run (``ConfinedProcess``) takes its priority in the child, before its program runs.
  func apply(to pid: pid_t, logger: Logger?) {
    guard self == .background else { return }
    let error = fleet_background_priority(pid)
    guard error != 0 else { return }
    logger?.debug(
      "could not lower a full sync's priority", metadata: ["error": "\(String(cString: strerror(error)))"])
  }
}
