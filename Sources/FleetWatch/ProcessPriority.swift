/// The CPU and I/O priority of an rsync run.
///
/// A reconciling full sync runs in the ``background``: it reads the whole tree, and live transfers,
/// which carry the changes being made now, must not wait behind it for the CPU or the disk.
enum ProcessPriority: Sendable, Equatable {
  /// The watcher's own.
  case normal
  /// nice 10 and the lowest best-effort I/O level (see `fleet_background_priority`), taken by the
  /// child before its program runs (see ``ConfinedProcess``), so nothing it starts runs higher.
  case background
}
