import FleetWire
import Foundation
import Synchronization

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
      args += ["--backup", "--backup-dir=\(VersionsLayout.backupDirectory(millis: Self.stampMillis(now)))"]
    }
    return args
  }

  /// The milliseconds of a new run's STAMP: `now`'s, or one more than the last one this process
  /// handed out, so that runs started within one millisecond (parallel workers) never share a STAMP:
  /// the daemon refuses a STAMP that exists (``FleetProvision/VersionsXferCheck``).
  static func stampMillis(_ now: Date) -> Int64 {
    let millis = Int64((now.timeIntervalSince1970 * 1000).rounded(.down))
    return lastStampMillis.withLock { last in
      last = max(millis, last + 1)
      return last
    }
  }

  private static let lastStampMillis = Mutex<Int64>(0)

  /// Leaves the versions out of a listing of the backup: a backup that holds only versions holds
  /// no data of the source's (the daemon shows the versions directory and its STAMP names).
  static let versionsUnlisted = "--exclude=/\(VersionsLayout.directory)/"
}
