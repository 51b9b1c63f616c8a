import FleetWire
import Foundation

/// Versions on the backup (``WatchConfig/keepVersions``): what a run overwrites or deletes on the
/// backup is moved into the module's versions (``FleetWire/VersionsLayout``) instead of lost, and
/// no `--delete` ever removes them.
extension RsyncCommand {
  /// The version arguments of a run that starts at `now`.
  ///
  /// Always `--filter=P /.fleetsync-versions/`: a `--delete` (full sync, trees) leaves the versions
  /// alone, also when versions are off for this watcher and on for an earlier one. With versions
  /// on, `--backup --backup-dir=.fleetsync-versions/STAMP` (relative to the destination: the
  /// module's root for a target without a sub-directory), one STAMP per run.
  func versionArguments(now: Date = Date()) -> [String] {
    var args = ["--filter=P /\(VersionsLayout.directory)/"]
    if config.keepVersions > 0 {
      args += ["--backup", "--backup-dir=\(VersionsLayout.backupDirectory(now))"]
    }
    return args
  }

  /// Leaves the versions out of a listing of the backup: a backup that holds only versions holds
  /// no data of the source's (the daemon shows the versions directory and its STAMP names).
  static let versionsUnlisted = "--exclude=/\(VersionsLayout.directory)/"
}
