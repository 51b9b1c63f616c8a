import Foundation

/// Where a backup module keeps the versions of the files transfers overwrote or deleted; the one
/// definition the agent (which names them), the controller (daemon config, pruning) and the
/// commands that read them share.
///
/// Inside a module's directory, `.fleetsync-versions/STAMP/<relative path>` holds what one rsync run
/// replaced or deleted. STAMP is the UTC time the run started, `YYYY-MM-DDTHH-MM-SS.mmmZ`: it sorts
/// as text and has no colons. A file `.fleetsync-versions/.hold-INSTANCE` stops the pruning of
/// the module while it exists.
public enum VersionsLayout {
  /// The directory in each module that holds the versions.
  public static let directory = ".fleetsync-versions"
  /// The name prefix of a prune-hold marker in ``directory``.
  public static let holdPrefix = ".hold-"

  /// The daemon `filter` line of every backup module: clients can neither list, read nor write
  /// what is inside a version (`STAMP/…`), so a source cannot read or destroy the versions.
  ///
  /// Not `- /.fleetsync-versions/**`: rsync checks a client's `--backup-dir` against the daemon's
  /// filter and rejects the whole transfer ("Your options have been rejected by the server") when
  /// that directory is excluded; its content may be. So the STAMP directories' names stay visible
  /// (empty) to clients; `.hold-*` markers may be written by the watcher.
  public static let daemonFilter =
    "filter = + /\(directory)/ + /\(directory)/\(holdPrefix)* - /\(directory)/*/**"

  /// The name suffix of a module's read-only view of its versions: `[NAME.versions]`.
  public static let versionsModuleSuffix = ".versions"
  /// The name suffix of a module's read-only view of its mirror (without the versions): `[NAME.mirror]`.
  public static let mirrorModuleSuffix = ".mirror"

  /// The STAMP of a run started at `date`: `2026-11-28T00-05-01.123Z`.
  public static func stamp(_ date: Date) -> String {
    stamp(millis: Int64((date.timeIntervalSince1970 * 1000).rounded(.down)))
  }

  /// The STAMP of `millis` milliseconds since the epoch.
  public static func stamp(millis: Int64) -> String {
    var seconds = time_t(millis / 1000)
    var parts = tm()
    gmtime_r(&seconds, &parts)
    let ms = Int(millis % 1000)
    return String(
      format: "%04d-%02d-%02dT%02d-%02d-%02d.%03dZ", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1,
      Int(parts.tm_mday), Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec), ms)
  }

  /// The rsync `--backup-dir` of a run started at `date`, relative to the module's root.
  public static func backupDirectory(_ date: Date) -> String { "\(directory)/\(stamp(date))" }

  /// The rsync `--backup-dir` of a run started `millis` milliseconds after the epoch.
  public static func backupDirectory(millis: Int64) -> String { "\(directory)/\(stamp(millis: millis))" }
}
