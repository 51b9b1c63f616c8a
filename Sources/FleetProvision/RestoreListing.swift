import FleetCore
import FleetWire
import Foundation

/// One entry of an `rsync --list-only` listing of a backup module or its versions module.
public struct BackupEntry: Sendable, Equatable, Codable {
  /// The version STAMP holding the entry; nil for the mirror (the latest state).
  public var stamp: String?
  /// The path relative to the protected directory.
  public var path: String
  /// `file`, `directory`, `symlink` or `other`.
  public var kind: String
  /// Size in bytes as rsync lists it.
  public var size: Int64
  /// Modification time as rsync lists it (`YYYY/MM/DD HH:MM:SS`, the backup host's local time).
  public var modified: String
}

/// How `restore` and `versions` talk to a backup module from a host: the URLs of the module's
/// read-only views, the password file on that host, and the listings they read.
///
/// Every read goes through a read-only view, never the module the watcher writes: the daemon
/// refuses any write through it, and admits every host of the inventory (`restore --to`).
struct BackupReader: Sendable {
  /// `rsync://USER@HOST:PORT/MODULE`, as the watcher's config names it (written, never read here).
  var moduleURL: String
  /// The password file on the host that runs rsync (never its content in argv).
  var passwordFile: String

  /// The read-only view of the mirror: `MODULE.mirror` (its versions directory left out).
  var mirrorURL: String { moduleURL + VersionsLayout.mirrorModuleSuffix }
  /// The read-only view of the versions: `MODULE.versions`.
  var versionsURL: String { moduleURL + VersionsLayout.versionsModuleSuffix }

  /// The flags every rsync that moves data uses (the team's contract), plus deadlines.
  static let dataFlags = ["-aAXHS", "--numeric-ids", "--timeout=600", "--contimeout=30"]

  /// Shell words of an rsync run against the daemon: the password file, then `args`.
  func rsync(_ args: [String]) throws -> String {
    try ShellQuote.command(["rsync", "--password-file=\(passwordFile)"] + args)
  }

  /// Lists `sub` in the mirror (itself, not its content): one entry, or none when it is not there.
  func mirrorProbeCommand(sub: String) throws -> String {
    try rsync(["--list-only", "--no-h", "--contimeout=30", "--timeout=120", "--", url(mirrorURL, sub)])
  }

  /// Lists `sub` (and, with `recursive`, everything beneath it) in every version STAMP in one run:
  /// filters keep `STAMP/…/sub` and drop everything else.
  func versionsListCommand(sub: String, recursive: Bool) throws -> String {
    try rsync(
      ["--list-only", "--no-h", "-r", "--contimeout=30", "--timeout=600"]
        + Self.filters(sub: sub, recursive: recursive)
        + ["--", versionsURL + "/"])
  }

  /// `--include`/`--exclude` rules that keep `*/sub` (and beneath it when `recursive`).
  static func filters(sub: String, recursive: Bool) -> [String] {
    var rules = ["--include=/*/"]
    var prefix = "/*"
    let parts = sub.split(separator: "/").map { escape(String($0)) }
    for (index, part) in parts.enumerated() {
      prefix += "/" + part
      rules.append("--include=\(prefix)" + (index < parts.count - 1 ? "/" : ""))
    }
    if recursive { rules.append("--include=\(prefix)/***") }
    return rules + ["--exclude=*"]
  }

  /// Escapes rsync's wildcard characters; every rule here holds a `*`, so rsync reads `\` as an escape.
  static func escape(_ name: String) -> String {
    var out = ""
    for char in name {
      if "*?[\\".contains(char) { out.append("\\") }
      out.append(char)
    }
    return out
  }

  /// `base/sub`, or `base/` for the module's root.
  func url(_ base: String, _ sub: String, slash: Bool = false) -> String {
    sub.isEmpty ? base + "/" : base + "/" + sub + (slash ? "/" : "")
  }

  /// Parses `rsync --list-only --no-h` lines (`PERMS SIZE DATE TIME NAME`); other lines are skipped.
  static func parse(_ listing: String) -> [(kind: String, size: Int64, modified: String, name: String)] {
    listing.split(separator: "\n").compactMap { line in
      let fields = line.split(separator: " ", maxSplits: 4, omittingEmptySubsequences: true)
      guard fields.count == 5, fields[0].count == 10, let size = Int64(fields[1]) else { return nil }
      let kind: String
      switch fields[0].first {
      case "-": kind = "file"
      case "d": kind = "directory"
      case "l": kind = "symlink"
      default: kind = "other"
      }
      var name = String(fields[4])
      if kind == "symlink", let arrow = name.range(of: " -> ") { name = String(name[..<arrow.lowerBound]) }
      return (kind, size, "\(fields[2]) \(fields[3])", name)
    }
  }

  /// The entries of a versions listing (names `STAMP/…`): entries under `sub` only, by STAMP then path;
  /// a STAMP's own directory has the path "" (the protected directory itself).
  static func versionEntries(_ listing: String, sub: String) -> [BackupEntry] {
    parse(listing).compactMap { entry in
      let slash = entry.name.firstIndex(of: "/") ?? entry.name.endIndex
      let stamp = String(entry.name[..<slash])
      let path = slash == entry.name.endIndex ? "" : String(entry.name[entry.name.index(after: slash)...])
      guard RestoreTime.isStamp(stamp), sub.isEmpty || path == sub || path.hasPrefix(sub + "/") else {
        return nil
      }
      return BackupEntry(
        stamp: stamp, path: path, kind: entry.kind, size: entry.size, modified: entry.modified)
    }
  }

  /// The STAMPs that hold `sub` itself (not only a directory above it), with the kind it has there.
  static func stampsHolding(_ entries: [BackupEntry], sub: String) -> [(stamp: String, kind: String)] {
    entries.filter { $0.path == sub }.compactMap { entry in entry.stamp.map { ($0, entry.kind) } }
      .sorted { $0.stamp < $1.stamp }
  }
}
