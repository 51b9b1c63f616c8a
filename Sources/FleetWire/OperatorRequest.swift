/// Something an operator asks a running watcher to do, delivered as a file in its state directory.
///
/// The one channel from operators (`fleetsync resume`, `fleetsync-watch resume`) to a running
/// engine: the request is written atomically as ``fileName`` inside the watcher's state
/// directory; the engine looks for request files at least every second, acts on them, and
/// removes each one it has acted on. A file, not a signal: it survives a restart, needs no pid,
/// and says exactly what was asked.
public enum OperatorRequest: String, CaseIterable, Sendable {
  /// Accept the source as it is now as the real source: record its identity anew and resume
  /// transfers the source guard holds.
  case acceptSource = "accept-source"
  /// Apply the deletes the delete limit holds, once.
  case releaseDeletes = "release-deletes"
  /// Clear the mass-change alarm: pruning of versions may resume.
  case clearMassChange = "clear-mass-change"

  /// The request file's name inside the state directory.
  public var fileName: String { "request." + rawValue }
}
