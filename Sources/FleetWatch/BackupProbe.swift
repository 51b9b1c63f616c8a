import Foundation

/// Whether the backup holds anything, asked cheaply: `rsync --list-only` of the target's top level.
///
/// Asked only when the source is empty and no source identity was recorded yet (a first start):
/// an empty source must not wipe a backup that holds data (see ``SourceGuard``).
struct BackupProbe: Sendable {
  let command: RsyncCommand

  /// What the backup's top level holds.
  enum Contents: Equatable {
    case empty
    case data
    /// The listing failed: what kind of failure, and why.
    case unknown(WatchStatus.ErrorKind, String)
  }

  /// Arguments for listing the target's top level (not recursive), excluded names left out.
  var arguments: [String] {
    var args = [
      "--list-only", "--no-human-readable",
      "--timeout=\(RsyncCommand.seconds(command.config.ioTimeout))",
      "--contimeout=\(RsyncCommand.seconds(command.config.connectTimeout))",
    ]
    if let pw = command.config.passwordFile { args.append("--password-file=\(pw)") }
    for e in command.config.excludes { args.append("--exclude=\(e)") }
    return args + [RsyncCommand.versionsUnlisted, command.config.target.destinationArgument]
  }

  /// Lists the target's top level, the way every rsync of the engine runs (confined when it can be).
  func contents() async -> Contents {
    switch await command.execute(arguments: arguments) {
    case .ended(let outcome):
      return .unknown(outcome.errorKind ?? .io, outcome.message ?? "rsync --list-only did not run")
    case .exited(let code, let out, let err, _):
      if code == 23 && err.contains("No such file or directory") { return .empty }
      guard code == 0 else {
        let outcome = RsyncCommand.classify(
          exitCode: code, stdout: "", stderr: err, target: command.config.target)
        return .unknown(
          outcome.errorKind ?? .rsync, outcome.message ?? "rsync --list-only failed with exit \(code)")
      }
      // Only the output's tail is kept: a listing long enough to lose its head names entries anyway.
      return Self.listsEntries(out) ? .data : .empty
    }
  }

  /// Whether a `--list-only` listing names anything but the directory itself (`.`).
  ///
  /// A line is `PERMS SIZE DATE TIME NAME`; the name may hold spaces.
  static func listsEntries(_ listing: String) -> Bool {
    listing.split(whereSeparator: \.isNewline).contains { line in
      let fields = line.split(separator: " ", maxSplits: 4, omittingEmptySubsequences: true)
      return fields.count == 5 && fields[4] != "."
    }
  }
}
