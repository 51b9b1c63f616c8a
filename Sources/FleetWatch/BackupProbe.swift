import Foundation
import Subprocess

#if canImport(System)
  import System
#else
  import SystemPackage
#endif

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

  /// The most bytes of the listing kept: more means data anyway.
  static let listingBytes = 64 << 10

  /// Arguments for listing the target's top level (not recursive), excluded names left out.
  var arguments: [String] {
    var args = [
      "--list-only", "--no-human-readable",
      "--timeout=\(RsyncCommand.seconds(command.config.ioTimeout))",
      "--contimeout=\(RsyncCommand.seconds(command.config.connectTimeout))",
    ]
    if let pw = command.config.passwordFile { args.append("--password-file=\(pw)") }
    for e in command.config.excludes { args.append("--exclude=\(e)") }
    return args + [command.config.target.destinationArgument]
  }

  /// Lists the target's top level.
  func contents() async -> Contents {
    let rsync = command.config.rsyncPath
    let executable: Executable = rsync.contains("/") ? .path(FilePath(rsync)) : .name(rsync)
    do {
      let result = try await Subprocess.run(
        executable, arguments: Arguments(arguments), input: .none, output: .sequence, error: .sequence
      ) { execution in
        async let out = OutputTail.collect(execution.standardOutput, capacity: Self.listingBytes)
        async let err = OutputTail.collect(execution.standardError, capacity: Self.listingBytes)
        return try await (out, err.text)
      }
      let (out, err) = result.closureResult
      guard case .exited(let code) = result.terminationStatus else {
        return .unknown(.rsync, "rsync --list-only was killed")
      }
      if code == 23 && err.contains("No such file or directory") { return .empty }
      guard code == 0 else {
        let outcome = RsyncCommand.classify(
          exitCode: code, stdout: "", stderr: err, target: command.config.target)
        return .unknown(
          outcome.errorKind ?? .rsync, outcome.message ?? "rsync --list-only failed with exit \(code)")
      }
      return out.dropped > 0 || Self.listsEntries(out.text) ? .data : .empty
    } catch {
      return .unknown(.io, "cannot run rsync ('\(rsync)') to list the backup: \(error)")
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
