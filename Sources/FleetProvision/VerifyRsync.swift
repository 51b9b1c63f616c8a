import FleetCore
import FleetWatch
import FleetWire

/// One protected directory → one backup module, as its watcher sends it: read from the watcher's
/// own config file on the source host, so verify compares exactly what the watcher replicates.
public struct VerifyTarget: Sendable, Equatable {
  /// The watcher instance (`DIRECTORY:BACKUP:MODULE`).
  public var instance: String
  /// The protected directory on the source host.
  public var source: String
  /// The module's URL (`rsync://USER@HOST:PORT/MODULE`).
  public var target: RsyncTarget
  /// The watcher's password file on the source host (never read by the controller).
  public var passwordFile: String
  /// The watcher's state directory (holds `source-identity.json`).
  public var stateDir: String?
  /// The watcher's exclude patterns.
  public var excludes: [String]
  /// Whether the module keeps versions (`keep-versions` not 0; the default keeps them).
  public var keepsVersions: Bool

  /// Reads a watcher config file's text (``WatcherConfigFile``).
  ///
  /// - Throws: ``FleetError`` ``FleetError/Code/remoteStep`` when the config lacks the source, the
  ///   target or the password file, or its target is not an rsync URL.
  public static func parse(instance: String, config text: String) throws -> VerifyTarget {
    var values: [String: [String]] = [:]
    for line in WatcherConfigFile.read(text).lines {
      if case .setting(let key, let value) = line.content { values[key.name, default: []].append(value) }
    }
    func one(_ key: WatcherConfigKey) throws -> String {
      guard let value = values[key.name]?.last else {
        throw FleetError(
          .remoteStep,
          "the watcher config \(Layout.watchConf(instance)) has no \(key.name) (run `fleetsync up` to rewrite it)"
        )
      }
      return value
    }
    return VerifyTarget(
      instance: instance, source: try one(.source), target: try RsyncTarget.parse(try one(.target)),
      passwordFile: try one(.passwordFile), stateDir: values[WatcherConfigKey.stateDir.name]?.last,
      excludes: values[WatcherConfigKey.exclude.name] ?? [],
      keepsVersions: values["keep-versions"]?.last.map { $0 != "0" } ?? true)
  }
}

/// The rsync runs of verify and repair, as shell commands for the source host.
enum VerifyRsync {
  /// What one run does.
  enum Mode: Equatable {
    /// Compare only (`-n`), every file, extras included.
    case check
    /// Compare only a random `percent` of the source's regular files.
    case sample(percent: Double)
    /// Send what differs or is missing; delete extras only when `delete`.
    case repair(delete: Bool)
  }

  /// The arguments every run shares: low priority, checksums, every kind of metadata, the
  /// itemized list and the statistics, versions protected, the watcher's password file and excludes.
  static func arguments(_ target: VerifyTarget, _ mode: Mode) -> [String] {
    var args = [
      "nice", "-n", "19", "ionice", "-c", "3", "rsync", "-c", "-aAXHS", "--numeric-ids", "--omit-dir-times",
      "--no-human-readable", "--stats", VerifyItemize.outFormat, "--filter=P /\(VersionsLayout.directory)/",
      "--timeout=600", "--contimeout=30", "--password-file=\(target.passwordFile)",
    ]
    switch mode {
    case .check: args += ["-n", "--delete"]
    case .sample: args += ["-n"]
    case .repair(let delete): args += delete ? ["--delete"] : []
    }
    return args + target.excludes.map { "--exclude=\($0)" }
  }

  /// The shell command of one run. A repair into a module that keeps versions moves what it
  /// overwrites or deletes to `.fleetsync-versions/STAMP` (STAMP: the source host's UTC time);
  /// a sample lists the source's files, picks `percent` of them at random (`shuf`) and compares those.
  static func command(_ target: VerifyTarget, _ mode: Mode) throws -> String {
    let source = try ShellQuote.quote(target.source.hasSuffix("/") ? target.source : target.source + "/")
    let destination = try ShellQuote.quote(target.target.url + "/")
    let rsync = try ShellQuote.command(arguments(target, mode))
    switch mode {
    case .check:
      return "\(rsync) \(source) \(destination)"
    case .repair:
      guard target.keepsVersions else { return "\(rsync) \(source) \(destination)" }
      return """
        stamp=$(date -u +%Y-%m-%dT%H-%M-%S.%3NZ) && \
        \(rsync) --backup "--backup-dir=\(VersionsLayout.directory)/$stamp" \(source) \(destination)
        """
    case .sample(let percent):
      return """
        list=$(mktemp -d) || exit 1
        trap 'rm -rf "$list"' EXIT
        cd \(source) || exit 1
        find . -type f -print0 > "$list/all" || exit 1
        n=$(tr -cd '\\000' < "$list/all" | wc -c)
        k=$(awk -v n="$n" -v p=\(percent) 'BEGIN { k = int(n * p / 100); if (k < n * p / 100) k++; print k }')
        shuf -z -n "$k" "$list/all" | sort -z > "$list/pick" || exit 1
        \(rsync) --files-from="$list/pick" --from0 \(source) \(destination)
        """
    }
  }
}
