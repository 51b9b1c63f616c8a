import FleetCore
import Foundation

/// The syntax of a watcher config file, for the agent that reads it and the controller that writes it.
///
/// One `key = value` per line (LF or CRLF line ends). Blank lines and lines whose first non-blank character is `#` are
/// ignored; there are no end-of-line comments. Blanks around the key and the value are trimmed and
/// the value is everything after the first `=`. So a value can hold any text but a line break and
/// blanks at its ends: ``problem(with:)`` says which values cannot be written.
public enum WatcherConfigFile {
  /// What the reader trims around keys and values: spaces, tabs and the other Unicode blanks.
  static let blanks = CharacterSet.whitespaces

  /// One line that is neither blank nor a comment.
  public struct Line: Sendable, Equatable {
    /// What the line says.
    public enum Content: Sendable, Equatable {
      /// `key = value` with a known key; the value may be empty.
      case setting(WatcherConfigKey, String)
      /// `key = value` with a key the table does not have.
      case unknownKey(String)
      /// A line without `=`.
      case notKeyValue(String)
    }
    /// 1-based line number.
    public var number: Int
    /// What the line says.
    public var content: Content
  }

  /// The lines of a config file that are not blank or comments, and the number of the file's last line.
  public static func read(_ text: String) -> (lines: [Line], lastLine: Int) {
    // "\r\n" is one Character in Swift, so splitting on "\n" alone would not end a CRLF line.
    let raw = text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" })
    var lines: [Line] = []
    for (index, rawLine) in raw.enumerated() {
      let line = rawLine.trimmingCharacters(in: blanks.union(CharacterSet(charactersIn: "\r")))
      if line.isEmpty || line.hasPrefix("#") { continue }
      guard let equals = line.firstIndex(of: "=") else {
        lines.append(Line(number: index + 1, content: .notKeyValue(line)))
        continue
      }
      let name = line[..<equals].trimmingCharacters(in: blanks)
      let value = line[line.index(after: equals)...].trimmingCharacters(in: blanks)
      let content: Line.Content =
        WatcherConfigKey(rawValue: name).map { .setting($0, value) } ?? .unknownKey(name)
      lines.append(Line(number: index + 1, content: content))
    }
    return (lines, max(raw.count - (raw.last?.isEmpty == true ? 1 : 0), 1))
  }

  /// Why `value` cannot be written as a config value (it would read back as something else), or nil.
  public static func problem(with value: String) -> String? {
    if value.isEmpty { return "is empty" }
    if value.unicodeScalars.contains(where: { $0 == "\n" || $0 == "\r" }) { return "spans several lines" }
    if let first = value.unicodeScalars.first, let last = value.unicodeScalars.last,
      blanks.contains(first) || blanks.contains(last)
    {
      return "begins or ends with a blank, which a `key = value` line cannot hold"
    }
    return nil
  }

  /// Config lines as the controller writes them: settings in the order they are added.
  public struct Writer: Sendable {
    /// The `key = value` lines so far, each ending in a newline.
    public private(set) var text = ""
    private var given: Set<WatcherConfigKey> = []

    /// Makes an empty config.
    public init() {}

    /// Adds `key = value`.
    ///
    /// - Throws: ``FleetError`` ``FleetError/Code/internal`` when the value cannot be written (see
    ///   ``WatcherConfigFile/problem(with:)``; the inventory refuses such values first) or a key
    ///   that is not repeatable is given again.
    public mutating func add(_ key: WatcherConfigKey, _ value: String) throws {
      if let problem = WatcherConfigFile.problem(with: value) {
        throw FleetError(
          .internal, "cannot write \(key.name) `\(value)` into a watcher config: it \(problem)")
      }
      guard given.insert(key).inserted || key.isRepeatable else {
        throw FleetError(.internal, "watcher config: \(key.name) is given twice")
      }
      text += "\(key.name) = \(value)\n"
    }
  }
}
