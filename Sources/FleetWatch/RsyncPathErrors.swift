import FleetWire
import Foundation

/// One error rsync printed about a path during a run that ended with exit 23 (some files were not
/// transferred), and the source path it names, as far as the line tells.
///
/// rsync names a path on the sender as the absolute source path
/// (`rsync: [sender] send_files failed to open "/srv/data/a/b": Permission denied (13)`) and on a
/// daemon receiver relative to the module, with the target's sub-directory in front
/// (`rsync: [receiver] mkstemp "/sub/a/.b.Xy12Zq" (in data) failed: Permission denied (13)`); a file
/// being received is named by its temp file `.NAME.XXXXXX`.
struct RsyncPathError: Equatable, Sendable {
  /// What an error line names.
  enum Location: Hashable, Sendable {
    /// The source root itself (`"."`).
    case root
    /// A path inside the source (or, for a temp name, both it and the file it stands for).
    case path(RelativePath, orTempFor: RelativePath?)
    /// No path that can be told: the line names none, or one outside the source or the target.
    case unknown
  }

  var location: Location
  /// The line as rsync printed it, shortened.
  var line: String

  /// The lines of `stderr` that report a failure, each with what it names.
  ///
  /// `complete` is false when the start of stderr was dropped (it was too long): the errors read
  /// then do not account for the whole run, so one `.unknown` error is added.
  static func parse(stderr: String, complete: Bool, source: String, target: RsyncTarget) -> [RsyncPathError] {
    var errors: [RsyncPathError] = []
    for raw in stderr.split(whereSeparator: \.isNewline) {
      let line = raw.trimmingCharacters(in: .whitespaces)
      guard isPathError(line) else { continue }
      let shown = line.count > 300 ? String(line.prefix(300)) + "…" : line
      errors.append(RsyncPathError(location: locate(line, source: source, target: target), line: shown))
    }
    if !complete || errors.isEmpty {
      errors.append(RsyncPathError(location: .unknown, line: "(rsync did not name every failing path)"))
    }
    return errors
  }

  /// Whether `line` reports a failure (not the closing summary, not a progress or stats line).
  static func isPathError(_ line: String) -> Bool {
    if line.hasPrefix("rsync error:") || line.hasPrefix("rsync warning:") { return false }
    if line.hasPrefix("rsync:") { return true }
    return line.hasPrefix("ERROR:") || line.hasPrefix("file has vanished:")
      || line.hasPrefix("cannot delete non-empty directory:") || line.hasPrefix("could not make way for")
  }

  /// The source path `line` names.
  ///
  /// A receiver that cannot rename a received file into place names its temp file, then the file,
  /// relative to the destination: `rename "/a/.b.Xy12Zq" (in data) -> "a/b": Permission denied`.
  /// A name in the versions directory tells no source path.
  static func locate(_ line: String, source: String, target: RsyncTarget) -> Location {
    if line.hasPrefix("rsync: [receiver] rename "), let arrow = line.range(of: " -> \"", options: .backwards),
      let close = line.lastIndex(of: "\""), arrow.upperBound <= close
    {
      let name = String(line[arrow.upperBound..<close])
      return location(of: unescape(name), sender: false, source: source, target: target, relative: true)
    }
    if let quoted = quotedName(line) {
      let inModule = line.contains("\" (in \(target.module))")
      return location(of: unescape(quoted), sender: !inModule, source: source, target: target)
    }
    // `cannot delete non-empty directory: a/b`, `could not make way for new symlink: a/b`: the
    // receiver's path, relative to the destination.
    if let colon = line.lastIndex(of: ":"),
      line.hasPrefix("cannot delete") || line.hasPrefix("could not make")
    {
      let name = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
      return location(
        of: Array(unescape(name)), sender: false, source: source, target: target, relative: true)
    }
    return .unknown
  }

  /// The text between the first and the last `"` of `line` (names may hold quotes: rsync does not escape them).
  static func quotedName(_ line: String) -> String? {
    guard let open = line.firstIndex(of: "\""), let close = line.lastIndex(of: "\""), open < close else {
      return nil
    }
    return String(line[line.index(after: open)..<close])
  }

  /// Maps a name rsync printed to a source location.
  ///
  /// A sender's name is absolute under `source`; a receiver's is relative to the module, with a
  /// leading `/` and the target's sub-directory when the target has one, or relative to the
  /// destination (`relative`).
  private static func location(
    of name: [UInt8], sender: Bool, source: String, target: RsyncTarget, relative: Bool = false
  ) -> Location {
    var bytes = name[...]
    if sender {
      let root = Array((source.hasSuffix("/") ? source : source + "/").utf8)
      if bytes.elementsEqual(root.dropLast()) { return .root }
      guard bytes.starts(with: root) else { return .unknown }
      bytes = bytes.dropFirst(root.count)
    } else if !relative {
      while bytes.first == UInt8(ascii: "/") { bytes = bytes.dropFirst() }
      if let subdir = target.subdir, !subdir.isEmpty {
        let prefix = Array(subdir.utf8)
        if bytes.elementsEqual(prefix) { return .root }
        guard bytes.starts(with: prefix + [UInt8(ascii: "/")]) else { return .unknown }
        bytes = bytes.dropFirst(prefix.count + 1)
      }
    }
    while bytes.last == UInt8(ascii: "/") { bytes = bytes.dropLast() }
    if bytes.isEmpty || bytes.elementsEqual([UInt8(ascii: ".")]) { return .root }
    if !sender && bytes.starts(with: Array((VersionsLayout.directory + "/").utf8)) { return .unknown }
    guard let path = RelativePath(Array(bytes)) else { return .unknown }
    return .path(path, orTempFor: tempTarget(path))
  }

  /// The file a receiver's temp name `dir/.NAME.XXXXXX` stands for (`dir/NAME`), or nil.
  static func tempTarget(_ path: RelativePath) -> RelativePath? {
    let bytes = path.bytes
    let slash = bytes.lastIndex(of: UInt8(ascii: "/"))
    let name = bytes[(slash.map { $0 + 1 } ?? 0)...]
    let dot = UInt8(ascii: ".")
    guard name.count > 8, name.first == dot, name[name.endIndex - 7] == dot else { return nil }
    let base = Array(name[(name.startIndex + 1)..<(name.endIndex - 7)])
    let dir = slash.map { Array(bytes[..<$0]) } ?? []
    return base.isEmpty ? nil : RelativePath(dir.isEmpty ? base : dir + [UInt8(ascii: "/")] + base)
  }

  /// Undoes rsync's `\#ooo` escapes of bytes it does not print as they are.
  static func unescape(_ text: String) -> [UInt8] {
    let bytes = Array(text.utf8)
    var out: [UInt8] = []
    var i = 0
    while i < bytes.count {
      if bytes[i] == UInt8(ascii: "\\"), i + 5 <= bytes.count, bytes[i + 1] == UInt8(ascii: "#"),
        let value = UInt8(String(decoding: bytes[(i + 2)..<(i + 5)], as: UTF8.self), radix: 8)
      {
        out.append(value)
        i += 5
      } else {
        out.append(bytes[i])
        i += 1
      }
    }
    return out
  }
}
