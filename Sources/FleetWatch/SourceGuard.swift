import FleetCore
import FleetWire

/// The one policy on whether the source is the source: what an observation of the source path
/// means, given the recorded ``SourceIdentity``.
///
/// - Another filesystem, another directory (an unmounted mountpoint, a re-created directory), or
///   nothing at the path: hold everything; a different filesystem is not our data.
/// - Empty while the record says it held data: hold (a full sync would empty the backup).
/// - No record yet (the first start, or a new state directory) and empty: ask the backup
///   (``BackupProbe``); hold when it holds data or cannot be listed.
/// - Otherwise transfers may run.
enum SourceGuard {
  /// What an observation means.
  enum Verdict: Equatable {
    /// The source is the source; transfers may run.
    case pass(SourceIdentity)
    /// Empty with no record: pass only if the backup is empty too.
    case checkBackup(SourceIdentity)
    /// Hold everything.
    case hold(SourceHold.Kind)
  }

  static func verdict(_ now: SourceObservation, record: SourceIdentity?) -> Verdict {
    guard case .present(let id) = now else { return .hold(.missing) }
    guard let record else { return id.empty ? .checkBackup(id) : .pass(id) }
    if record.filesystem != id.filesystem || record.filesystemType != id.filesystemType {
      return .hold(.otherFilesystem)
    }
    if record.inode != id.inode { return .hold(.otherDirectory) }
    if id.empty && !record.empty { return .hold(.emptied) }
    return .pass(id)
  }

  /// The commands that make the source as it is now the recorded source: from the controller, or
  /// on this host (the request file `fleetsync-watch resume` writes).
  static func acceptCommand(stateDir: String) -> String {
    "`fleetsync resume -i INVENTORY --accept-source --limit HOST --directory DIR` from the controller, or "
      + "on this host `touch \(quoted(stateDir + "/" + OperatorRequest.acceptSource.fileName))`"
  }

  /// `word` quoted for a shell (config paths hold no NUL, the one thing that cannot be quoted).
  static func quoted(_ word: String) -> String {
    (try? ShellQuote.quote(word)) ?? word
  }

  /// The hold's message: what happened, what was expected, what is there, what to check, and how
  /// to accept the source as it is now. `detail` adds what the backup listing said.
  static func message(
    _ kind: SourceHold.Kind, config: WatchConfig, record: SourceIdentity?, now: SourceObservation,
    detail: String? = nil
  ) -> String {
    let path = config.source
    let q = quoted(path)
    let mounted = "that its filesystem is mounted (`findmnt -T \(q)`, `ls -la \(q)`)"
    let what: String
    var check = mounted
    switch kind {
    case .missing:
      what = "is gone or not a directory"
      check = "whether it was deleted or moved away, and \(mounted)"
    case .otherFilesystem:
      what = "is on another filesystem than the one replicated so far"
      check += " and is the right one"
    case .otherDirectory:
      what = "is another directory than the one replicated so far (an unmounted mountpoint, or re-created)"
      check += " and the directory was not replaced"
    case .emptied:
      what = "is empty, but held data when it was recorded"
      check += " and whether its content was deleted on purpose"
    case .backupNotEmpty:
      what = "is empty while the backup \(config.target.url) holds data (no source recorded yet)"
    case .backupUnknown:
      what = "is empty and whether the backup holds data cannot be checked (no source recorded yet)"
      check = "the rsync daemon (\(config.target.url)), and " + mounted
    case .rewatching:
      return "held: the source \(path) is back (\(detail ?? "it had gone away")); its watches are being "
        + "set up again, then a full sync runs"
    }
    var text = "held: the source \(path) \(what); nothing is sent or deleted, changes stay journaled."
    if let record { text += " Expected the \(record.summary), found \(now.summary)." }
    if let detail { text += " \(detail)." }
    text += " Check \(check). It resumes by itself when the source is back."
    text +=
      " If the source as it is now is right, accept it (the next full sync then makes the backup equal "
      + "to it, deleting what it lacks): \(acceptCommand(stateDir: config.stateDir))"
    return text
  }
}
