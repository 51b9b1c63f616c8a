import FleetCore

/// The shell script a restore runs on the destination host: it rebuilds the tree in a staging
/// directory (the mirror, then the versions after `--at` from the newest to the oldest, then without
/// what was created after `--at`), and moves it in with a local rsync; the stage is removed on every
/// exit path, so nothing half-written stays behind.
struct RestoreScript: Sendable {
  /// Reads the backup module.
  var reader: BackupReader
  /// The path relative to the protected directory ("" for all of it).
  var sub: String
  /// Whether `sub` is a directory (else one file, symlink or other entry).
  var isDirectory: Bool
  /// Whether the mirror holds `sub`.
  var fromMirror: Bool
  /// The version STAMPs to lay over the mirror, newest first (so the oldest is applied last and wins).
  var overlays: [String]
  /// The file on the destination host that lists ``overlays``, one per line, in that order
  /// (``Provisioner/uploadStamps(_:to:)``); the script removes it. Required when there are overlays.
  var stampsFile: String?
  /// `--at`, or nil for the latest state.
  var at: RestoreTime?
  /// Where the tree goes on the destination host.
  var destination: String
  /// The stage is made in the nearest existing directory of this path (``Provisioner/stageNear(_:dryRun:)``).
  var stageNear: String
  /// Delete at the destination what the restored tree does not have.
  var delete: Bool
  /// List what would change and change nothing.
  var dryRun: Bool

  /// The name the stage starts with; the move neither copies nor deletes such a name at the top.
  static let stagePrefix = ".fleetsync-restore."

  /// Exit status when there is nothing to restore, or the tree is empty and `--delete` was asked.
  static let emptyStatus: Int32 = 66
  /// Exit status when a step reading the backup failed (its rsync status is on stderr).
  static let readStatus: Int32 = 75

  /// The script (POSIX sh); its standard output is the itemized changes (`rsync -i`).
  func text() throws -> String {
    let slash = isDirectory ? "/" : ""
    let stage = "\"$stage\"/t" + slash
    var lines = ["set -u", "umask 077", "stamps=\(try ShellQuote.quote(stampsFile ?? ""))"]
    if stampsFile != nil { lines.append("trap 'rm -f \"$stamps\"' EXIT") }
    lines += [
      "near=\(try ShellQuote.quote(stageNear))",
      "while [ ! -d \"$near\" ]; do near=$(dirname \"$near\"); done",
      "stage=$(mktemp -d \"$near/\(Self.stagePrefix)XXXXXX\") || "
        + "{ echo \"cannot make a staging directory in $near: is there room, is it writable?\" >&2; exit 73; }",
      "trap 'rm -rf \"$stage\" ${stamps:+\"$stamps\"}' EXIT", "trap 'exit 130' INT TERM HUP",
    ]
    if isDirectory { lines.append("mkdir \"$stage\"/t") }
    if fromMirror {
      let pull = try reader.rsync(
        BackupReader.dataFlags + [
          "--", reader.url(reader.mirrorURL, sub, slash: isDirectory),
        ])
      lines.append("\(pull) \(stage) >&2 || \(failed("reading the mirror"))")
    }
    if !overlays.isEmpty { lines += try overlayLines(stage: stage) }
    if isDirectory && fromMirror && !overlays.isEmpty {
      // A version's top directory is the STAMP directory itself for the whole tree: its owner and
      // mode are not the tree's. The root's attributes come from the mirror (`--exclude=/*`: the root alone).
      let root = try reader.rsync(
        BackupReader.dataFlags + ["--exclude=/*", "--", reader.url(reader.mirrorURL, sub, slash: true)])
      lines.append("\(root) \(stage) >&2 || \(failed("reading the mirror's top directory"))")
    }
    if let at {
      // Created (or last written) after --at: it has no version, so it did not exist then.
      lines.append(
        "[ -e \"$stage\"/t ] && find \"$stage\"/t ! -type d -newermt \(at.epochArgument) -exec rm -f {} +")
    }
    lines.append(
      "[ -e \"$stage\"/t ] || { echo 'nothing to restore: it did not exist at that time' >&2; exit \(Self.emptyStatus); }"
    )
    if delete {
      // A tree without a file (only directories) with --delete would empty the destination: never worse
      // than no backup.
      lines.append(
        "[ -n \"$(find \"$stage\"/t ! -type d -print -quit)\" ] || { echo 'refusing --delete: the restored tree "
          + "has no file, so --delete would empty the destination' >&2; exit \(Self.emptyStatus); }")
    }
    let target = try ShellQuote.quote(destination + slash)
    if !dryRun { lines.append("mkdir -p -- \"$(dirname -- \(target))\" || exit 73") }
    let move =
      ["rsync"] + BackupReader.dataFlags.prefix(2) + ["-i", "--exclude=/\(Self.stagePrefix)*"]
      + (delete ? ["--delete"] : [])
      + (dryRun ? ["-n"] : [])
    lines.append("\(try ShellQuote.command(Array(move))) -- \(stage) \(target)")
    return lines.joined(separator: "\n") + "\n"
  }

  /// Lays the versions over the stage: one rsync from the daemon fetches `STAMP/sub` of every
  /// overlay (`--files-from`), however many; then a local rsync per STAMP, newest first, lays each
  /// over the tree (`--force`: a kind that changed replaces what is there; `--ignore-times`: a version
  /// replaces what is there even with the same size and time).
  private func overlayLines(stage: String) throws -> [String] {
    guard stampsFile != nil else {
      throw FleetError(.internal, "a restore with versions needs its stamps file")
    }
    let fetch =
      try reader.rsync(BackupReader.dataFlags + ["-r", "--from0"])
      + " --files-from=\"$stage\"/files -- \(try ShellQuote.quote(reader.versionsURL + "/"))"
    let lay = try ShellQuote.command(
      Array(["rsync"] + BackupReader.dataFlags.prefix(2) + ["--force", "--ignore-times", "--"]))
    let slash = isDirectory ? "/" : ""
    return [
      "sub=\(try ShellQuote.quote(sub))",
      "while IFS= read -r stamp; do printf '%s\\0' \"$stamp${sub:+/$sub}\"; done <\"$stamps\" >\"$stage\"/files "
        + "|| exit 73",
      "mkdir \"$stage\"/v || exit 73",
      "\(fetch) \"$stage\"/v/ >&2 || \(failed("reading the versions"))",
      "while IFS= read -r stamp; do",
      "  \(lay) \"$stage/v/$stamp${sub:+/$sub}\(slash)\" \(stage) >&2 || \(failed("laying version $stamp over the tree"))",
      "done <\"$stamps\"",
      "rm -rf \"$stage\"/v",
    ]
  }

  private func failed(_ what: String) -> String {
    "{ s=$?; echo \"\(what) failed (rsync exit $s)\" >&2; exit \(Self.readStatus); }"
  }
}

/// Pausing and resuming a watcher instance for a restore: systemd units are stopped and started;
/// without systemd the instance's supervisor is stopped by its pid file and started again.
enum WatcherPause {
  /// Stops the instance if it runs; prints `paused` when it did stop it.
  static func pause(_ instance: String) throws -> String {
    let service = ServiceName(.watch, instance)
    let unit = try ShellQuote.quote(service.unit)
    let pid = try ShellQuote.quote(Layout.pidFile(service))
    return """
      if [ -d /run/systemd/system ]; then
        if systemctl is-active --quiet \(unit); then systemctl stop \(unit) || exit 1; echo paused; fi
      elif [ -f \(pid) ] && kill -0 "$(cat \(pid))" 2>/dev/null; then
      \(PidFileServices.stop(pid: pid))
      echo paused
      fi
      """
  }

  /// Starts the instance again.
  static func resume(_ instance: String) throws -> String {
    let service = ServiceName(.watch, instance)
    let unit = try ShellQuote.quote(service.unit)
    let pid = try ShellQuote.quote(Layout.pidFile(service))
    let start = try PidFileServices.startWatch(
      pid: pid, log: try ShellQuote.quote(Layout.logFile(service)),
      conf: try ShellQuote.quote(Layout.watchConf(instance)))
    return """
      if [ -d /run/systemd/system ]; then systemctl start \(unit)
      else
      \(start)
      fi
      """
  }
}
