import Foundation

/// What a verify run found for one protected directory → one backup module: counts and the first
/// few paths of each kind, read from rsync's itemized output (``VerifyItemize``).
///
/// Paths are relative to the directory and shown as rsync prints them: a byte that is not printable
/// (a newline, a byte of a name that is not UTF-8) as `\#ooo` (octal), so one path is one line.
public struct VerifyTally: Sendable, Equatable, Codable {
  /// How many paths of each kind are kept for the report.
  public static let examples = 5

  /// Regular files on the source that were compared (by checksum).
  public var compared = 0
  /// Entries on both sides whose content differs (checksum, size, symlink target or type).
  public var differing = 0
  /// Entries on the source that the backup lacks.
  public var missing = 0
  /// Entries only on the backup (versions never count: they are protected and hidden).
  public var extra = 0
  /// Entries whose content matches but whose owner, group, mode, ACLs or xattrs differ.
  public var attributes = 0
  /// The first ``examples`` paths that differ.
  public var differingPaths: [String] = []
  /// The first ``examples`` paths missing on the backup.
  public var missingPaths: [String] = []
  /// The first ``examples`` paths only on the backup.
  public var extraPaths: [String] = []
  /// The first ``examples`` paths whose attributes differ.
  public var attributePaths: [String] = []

  /// Makes an empty tally.
  public init() {}

  /// Whether the backup differs from the source in anything compared.
  public var drift: Bool { differing + missing + extra + attributes > 0 }

  /// `N compared, N differing, N missing, N extra, N attributes`.
  public var summary: String {
    "\(compared) compared, \(differing) differing, \(missing) missing, \(extra) extra, "
      + "\(attributes) with other attributes"
  }

  mutating func add(_ kind: VerifyItemize.Kind, _ path: String) {
    func keep(_ list: inout [String]) { if list.count < Self.examples { list.append(path) } }
    switch kind {
    case .differing:
      differing += 1
      keep(&differingPaths)
    case .missing:
      missing += 1
      keep(&missingPaths)
    case .extra:
      extra += 1
      keep(&extraPaths)
    case .attributes:
      attributes += 1
      keep(&attributePaths)
    case .same: break
    }
  }
}

/// Reads the output of verify's rsync run: itemized lines written with ``outFormat`` and the
/// `--stats` block.
public enum VerifyItemize {
  /// The marker every itemized line starts with, so no other output line is taken for one.
  static let marker = "@fsv "
  /// rsync's `--out-format`: the marker, the 11 itemize characters, a blank, the name.
  public static let outFormat = "--out-format=\(marker)%i %n"

  /// What one itemized line says about its path.
  public enum Kind: Sendable, Equatable {
    case differing, missing, extra, attributes, same
  }

  /// The tally of a whole run's standard output.
  public static func tally(_ output: String) -> VerifyTally {
    var tally = VerifyTally()
    for line in output.split(separator: "\n", omittingEmptySubsequences: true) {
      if line.hasPrefix(marker) {
        if let (kind, path) = item(line.dropFirst(marker.count)) { tally.add(kind, path) }
      } else if line.hasPrefix("Number of files: ") {
        tally.compared = regularFiles(line)
      }
    }
    return tally
  }

  /// The kind and path of one itemized line (without the marker): `YXcstpoguax NAME`.
  static func item(_ line: Substring) -> (Kind, String)? {
    let flags = line.prefix(11)
    guard flags.count == 11, line.count > 12 else { return nil }
    var path = String(line.dropFirst(12))
    if path.hasSuffix("/") && path != "./" { path.removeLast() }
    return (kind(flags), path)
  }

  /// `*deleting` → extra; a new entry (`+++++++++`) → missing; a changed checksum, size, type or
  /// symlink target (`c`, `s`, or an item rsync sends whole) → differing; other attribute letters
  /// (`p` `o` `g` `a` `x`; `t` of a file whose content matches) → attributes.
  static func kind(_ flags: Substring) -> Kind {
    let chars = Array(flags)
    if flags.hasPrefix("*deleting") { return .extra }
    let attributes = chars[2...]
    if attributes.allSatisfy({ $0 == "+" }) { return .missing }
    if chars[2] == "c" || chars[3] == "s" { return .differing }
    if attributes.contains(where: { $0 != "." && $0 != " " }) { return .attributes }
    // `<f.........`: sent although nothing is flagged (rsync re-sends a file it cannot compare).
    return chars[0] == "<" || chars[0] == ">" ? .differing : .same
  }

  /// The `reg:` count of `Number of files: 9 (reg: 6, dir: 3)`; 0 when there is none.
  static func regularFiles(_ line: Substring) -> Int {
    guard let range = line.range(of: "reg: ") else { return 0 }
    let digits = line[range.upperBound...].prefix { $0.isNumber || $0 == "," }
    return Int(digits.filter(\.isNumber)) ?? 0
  }
}
