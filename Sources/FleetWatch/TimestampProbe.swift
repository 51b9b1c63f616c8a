import Foundation
import Logging

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// Finds the precision a full sync compares mtimes at (``TimestampPrecision``), before each full sync.
///
/// A backup that keeps no sub-second mtimes (a filesystem with coarse times, or a copy seeded by another
/// tool or restored from an archive) differs from the source below one second in every file; compared
/// to the nanosecond, every full sync would send every file again. The probe takes a bounded sample of
/// the source's regular files whose mtime has a sub-second part (``sample()``) and asks rsync, in dry
/// runs (`-n`: nothing is written to the backup), how they compare on the backup (``decide(_:)``):
///
/// - some sampled file has the same mtime to the nanosecond: the backup keeps nanoseconds; compare to
///   the nanosecond (files that lost precision are sent once and carry exact times afterwards);
/// - none does, but some exist with the same size and differ in time only: compare again to the
///   second, then within one second, and take the finest precision at which as many of them are equal
///   as at the coarsest (the rest differ by more: changed files);
/// - no evidence (nothing sampled, nothing on the backup yet) or a failed run: to the nanosecond.
struct TimestampProbe: Sendable {
  /// The engine's rsync command (its target, password, excludes, sandbox).
  let command: RsyncCommand
  /// The most files sampled.
  var sampleSize = 64
  /// The most directory entries looked at while sampling: the probe never walks the whole tree.
  var entryLimit = 4096
  /// Files modified more recently than this are not sampled: they may be changing, or on their way.
  var minimumAge: Duration = .seconds(10)

  /// The precision chosen, and why (for the log).
  struct Verdict: Equatable, Sendable {
    var precision: TimestampPrecision
    var reason: String
  }

  /// How the sampled files compare on the backup in one dry run.
  struct Tally: Equatable, Sendable {
    /// On the backup with the same size and the same mtime (at the run's precision).
    var equal = 0
    /// On the backup with the same size and another mtime.
    var timeOnly = 0
    /// Missing on the backup, or of another size.
    var other = 0
  }

  /// The precision the next full sync compares at: sample, compare, decide.
  func verdict() async -> Verdict {
    let files = sample()
    guard !files.isEmpty else {
      return Verdict(precision: .nanosecond, reason: "no file with a sub-second mtime was sampled")
    }
    let list = "\(command.config.stateDir)/probe.\(UInt64.random(in: 0...UInt64.max)).list"
    guard RsyncCommand.writeScratch(TransferPlan.filesFrom(files), to: list) else {
      return Verdict(
        precision: .nanosecond, reason: "the sample could not be written: \(String(cString: strerror(errno)))"
      )
    }
    defer { unlink(list) }
    return await Self.decide { await compare(list: list, at: $0) }
  }

  /// Decides from dry runs at each precision (`compare` gives nil when a run failed), finest first.
  static func decide(_ compare: (TimestampPrecision) async -> Tally?) async -> Verdict {
    let failed = "a dry run of the probe failed"
    guard let exact = await compare(.nanosecond) else {
      return Verdict(precision: .nanosecond, reason: failed)
    }
    if exact.equal > 0 {
      return Verdict(
        precision: .nanosecond,
        reason: "\(exact.equal) sampled file(s) have the same mtime on the backup to the nanosecond")
    }
    guard exact.timeOnly > 0 else {
      return Verdict(
        precision: .nanosecond,
        reason: "no sampled file is on the backup with the same size (\(exact.other) missing or changed)")
    }
    guard let seconds = await compare(.second) else { return Verdict(precision: .nanosecond, reason: failed) }
    let sampled = "of \(exact.timeOnly) sampled file(s) on the backup with the same size"
    if seconds.equal == exact.timeOnly {
      return Verdict(
        precision: .second,
        reason:
          "the backup keeps no sub-second mtimes: \(seconds.equal) \(sampled) differ below one second only")
    }
    guard let two = await compare(.twoSeconds) else { return Verdict(precision: .nanosecond, reason: failed) }
    if two.equal == 0 {
      return Verdict(
        precision: .nanosecond,
        reason: "the mtimes on the backup differ by more than one second: 0 \(sampled) are equal")
    }
    if two.equal == seconds.equal {
      return Verdict(
        precision: .second,
        reason:
          "the backup keeps no sub-second mtimes: \(seconds.equal) \(sampled) differ below one second only (the others changed)"
      )
    }
    return Verdict(
      precision: .twoSeconds,
      reason:
        "the backup keeps two-second mtimes: \(two.equal) \(sampled) are within one second, \(seconds.equal) to the second"
    )
  }

  /// Compares the files listed in `list` with the backup at `precision`, in a dry run.
  func compare(list: String, at precision: TimestampPrecision) async -> Tally? {
    guard
      case .exited(let code, let out, _, _) = await command.execute(
        arguments: arguments(list: list, at: precision)),
      code == 0 || code == 23 || code == 24
    else { return nil }
    // 23/24: a sampled file vanished or could not be read; the others still tell.
    return Self.tally(out)
  }

  /// A dry run (`-n`) itemizing every listed file, changed or not (`-ii`); it never writes to the backup.
  func arguments(list: String, at precision: TimestampPrecision) -> [String] {
    let config = command.config
    var args = [
      "--dry-run", "--itemize-changes", "--itemize-changes", "-a", "--numeric-ids",
      precision.modifyWindowArgument, "--sockopts=TCP_NODELAY",
      "--timeout=\(RsyncCommand.seconds(config.ioTimeout))",
      "--contimeout=\(RsyncCommand.seconds(config.connectTimeout))",
      "--no-human-readable",
    ]
    if let pw = config.passwordFile { args.append("--password-file=\(pw)") }
    for e in config.excludes { args.append("--exclude=\(e)") }
    return args + ["--files-from=\(list)", "--from0"] + command.endpoints
  }

  /// Counts the regular files in rsync's itemized output (`%i %n`: `YXcstpoguax NAME`).
  ///
  /// `Y` is `<` (would be sent), `.` (not sent) or `h` (a hard link); `X` is `f` for a regular file;
  /// `c` is `+` for a new file; `s` is `s` for another size; `t` is `t` for another mtime. Lines of
  /// other kinds (the implied parent directories, messages) are left out.
  static func tally(_ output: String) -> Tally {
    var tally = Tally()
    for line in output.split(whereSeparator: \.isNewline) {
      let flags = Array(line.utf8.prefix(12))
      guard flags.count == 12, flags[11] == UInt8(ascii: " "), flags[1] == UInt8(ascii: "f"),
        [UInt8(ascii: "<"), UInt8(ascii: ">"), UInt8(ascii: ".")].contains(flags[0])
      else { continue }
      if flags[2] == UInt8(ascii: "+") || flags[3] == UInt8(ascii: "s") {
        tally.other += 1
      } else if flags[4] == UInt8(ascii: "t") || flags[4] == UInt8(ascii: "T") {
        tally.timeOnly += 1
      } else if flags[0] == UInt8(ascii: ".") {
        tally.equal += 1
      } else {
        tally.other += 1
      }
    }
    return tally
  }
}

extension TransferLoop {
  /// A reconciling full sync at the precision ``TimestampProbe`` finds for it, recorded in the status
  /// (``WatchStatus/fullSyncTimePrecision``) and, when it changes, in the log.
  static func fullSync(_ runner: RsyncCommand, core: EngineCore) async -> TransferOutcome {
    var probing = runner
    probing.priority = .background
    let verdict = await TimestampProbe(command: probing).verdict()
    var previous: TimestampPrecision?
    core.update {
      previous = $0.fullSyncTimePrecision
      $0.fullSyncTimePrecision = verdict.precision
    }
    let metadata: Logger.Metadata = ["why": "\(verdict.reason)"]
    if verdict.precision != .nanosecond && previous != verdict.precision {
      core.logger.notice(
        """
        full syncs compare mtimes \(verdict.precision.phrase), not to the nanosecond, so that files \
        unchanged since the backup's copy are not sent again; a same-size rewrite within one \
        mtime step that inotify missed is not seen by them (live changes are always sent)
        """, metadata: metadata)
    } else if verdict.precision == .nanosecond && previous.map({ $0 != .nanosecond }) == true {
      core.logger.notice("full syncs compare mtimes to the nanosecond again", metadata: metadata)
    } else {
      core.logger.debug("full sync compares mtimes \(verdict.precision.phrase)", metadata: metadata)
    }
    var full = runner
    full.fullSyncPrecision = verdict.precision
    return await full.fullSync()
  }
}
