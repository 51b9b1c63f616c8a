import FleetCore
import Foundation

/// A mass-change alarm that stands: many more files were deleted or overwritten on the backup
/// within a few minutes than the directory's normal rate (see ``MassChangeDetector``).
///
/// While it stands the agent's `/healthz` says `degraded`, replication goes on (versions keep the
/// old copies), and the prune-hold marker `.fleetsync-versions/.hold-INSTANCE` on the backup module
/// stops the pruning of versions. An operator clears it (`request.clear-mass-change`).
public struct MassChangeAlarm: Sendable, Codable, Equatable {
  /// When the alarm was raised.
  public var since: Date
  /// Files deleted or overwritten on the backup within the window when it was raised.
  public var count: Int
  /// The count that raised it: `max(minFiles, factor × normal)`.
  public var threshold: Int
  /// The directory's normal count per window then.
  public var normal: Int
  /// The window, in seconds.
  public var windowSeconds: Int
  /// Whether the prune-hold marker is on the backup (false while it is still being written).
  public var pruneHeld: Bool

  /// Makes an alarm record.
  public init(since: Date, count: Int, threshold: Int, normal: Int, windowSeconds: Int, pruneHeld: Bool) {
    self.since = since
    self.count = count
    self.threshold = threshold
    self.normal = normal
    self.windowSeconds = windowSeconds
    self.pruneHeld = pruneHeld
  }

  /// One line for people: what happened and what to do.
  public var summary: String {
    let hold =
      pruneHeld
      ? "pruning of versions is held" : "the prune hold is not on the backup yet (retrying; check the daemon)"
    if threshold == 0 {
      return
        "mass-change alarm kept since \(since.formatted(.iso8601)) because its record could not be read "
        + "(see the log); \(hold); check the source, then clear with `fleetsync resume --mass-change`"
    }
    return
      "mass change: \(count) file(s) deleted or overwritten on the backup within \(windowSeconds) s "
      + "(alarm at \(threshold); normal \(normal) per window) since \(since.formatted(.iso8601)); "
      + "\(hold); check the source for a script gone wrong or ransomware and restore what is damaged "
      + "(`fleetsync restore --at TIME`), then clear with `fleetsync resume --mass-change`"
  }
}

/// What the mass-change alarm keeps in the state directory (`mass-change.json`), so a restart
/// keeps the alarm and knows whether the prune-hold marker is on the backup.
struct MassChangeRecord: Codable, Equatable, Sendable {
  /// The file's name in the state directory.
  static let fileName = "mass-change.json"

  /// The alarm, while it stands.
  var alarm: MassChangeAlarm?
  /// Whether the marker may be on the backup: set before it is written, cleared once it is removed.
  var markerOnBackup = false

  /// Reads the record in `stateDir`; an empty record when there is none.
  ///
  /// - Throws: when the file exists but cannot be read or parsed.
  static func load(stateDir: String) throws -> MassChangeRecord {
    let path = stateDir + "/" + fileName
    guard FileManager.default.fileExists(atPath: path) else { return MassChangeRecord() }
    let decoder = JSONDecoder()
    decoder.dateDecodingStrategy = .iso8601
    return try decoder.decode(MassChangeRecord.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
  }

  /// Writes the record into `stateDir` atomically.
  func save(stateDir: String) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    encoder.dateEncodingStrategy = .iso8601
    try AtomicFile.write(
      Array(try encoder.encode(self)) + [0x0A], to: stateDir + "/" + Self.fileName, mode: 0o600)
  }
}

/// The deletes and overwrites one rsync run made on the backup, from its `--stats`.
struct MassChangeStats: Equatable, Sendable {
  /// `Number of deleted files` (files, directories, links).
  var deleted = 0
  /// Regular files transferred that already existed: `Number of regular files transferred` minus
  /// the regular files of `Number of created files`.
  var overwritten = 0

  /// Reads rsync's `--stats` output (`--no-human-readable`); what is missing counts 0.
  init(stats stdout: String) {
    var transferred = 0
    var createdRegular = 0
    for line in stdout.split(whereSeparator: \.isNewline) {
      if line.hasPrefix("Number of deleted files:") {
        deleted = Self.leadingNumber(after: ":", in: line)
      } else if line.hasPrefix("Number of regular files transferred:") {
        transferred = Self.leadingNumber(after: ":", in: line)
      } else if line.hasPrefix("Number of created files:") {
        createdRegular = line.range(of: "reg: ").map { Self.leadingNumber(in: line[$0.upperBound...]) } ?? 0
      }
    }
    overwritten = max(0, transferred - createdRegular)
  }

  init(deleted: Int, overwritten: Int) {
    self.deleted = deleted
    self.overwritten = overwritten
  }

  private static func leadingNumber(after separator: Character, in line: Substring) -> Int {
    guard let i = line.firstIndex(of: separator) else { return 0 }
    return leadingNumber(in: line[line.index(after: i)...])
  }

  private static func leadingNumber(in text: Substring) -> Int {
    let digits = text.drop(while: { $0 == " " }).prefix(while: { $0.isNumber || $0 == "," })
    return Int(String(digits.filter(\.isNumber))) ?? 0
  }
}
