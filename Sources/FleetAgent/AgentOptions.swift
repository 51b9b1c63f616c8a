import FleetCore
import FleetWire

/// The quick form's settings, as given on the command line (`fleetsync-watch run --source DIR ...`).
///
/// Its flags are the keys of `FleetWire.WatcherConfigKey` that have a quick-form flag, spelled
/// `--KEY VALUE` or `--KEY=VALUE`; ``AgentSettings/fromOptions(_:)`` checks the values with the
/// config file's rules.
public struct AgentOptions: Sendable {
  /// The settings given, in command-line order (a repeatable key once per value).
  public private(set) var values: [(key: WatcherConfigKey, value: String)] = []

  /// Whether no quick-form option was given.
  public var isEmpty: Bool { values.isEmpty }

  /// Makes empty options.
  public init() {}

  /// Reads the quick form's options from the arguments the command line did not consume itself.
  ///
  /// - Throws: ``FleetError`` ``FleetError/Code/agentConfig`` listing every problem: an unknown
  ///   option (with the likely one), an option without a value, a key given twice.
  public static func parse(_ arguments: [String]) throws -> AgentOptions {
    var options = AgentOptions()
    var issues: [String] = []
    var rest = arguments[...]
    while let argument = rest.popFirst() {
      guard argument.hasPrefix("-") else {
        issues.append("unexpected argument \"\(argument)\"; options are written --KEY VALUE")
        continue
      }
      let equals = argument.firstIndex(of: "=")
      let flag = equals.map { String(argument[..<$0]) } ?? argument
      guard let key = WatcherConfigKey(flag: flag) else {
        issues.append(unknownFlagMessage(flag))
        // Its value, if it has one, is not a second problem.
        if equals == nil, let next = rest.first, !next.hasPrefix("-") { rest = rest.dropFirst() }
        continue
      }
      let value: String
      if let equals {
        value = String(argument[argument.index(after: equals)...])
      } else if let next = rest.first, !next.hasPrefix("-") {
        value = next
        rest = rest.dropFirst()
      } else {
        issues.append(
          "\(flag) needs a value, e.g. \(flag) \(key.example) (a value starting with `-`: \(flag)=VALUE)")
        continue
      }
      if !key.isRepeatable && options.values.contains(where: { $0.key == key }) {
        issues.append("\(flag) is given twice; give it once")
        continue
      }
      options.values.append((key, value))
    }
    guard issues.isEmpty else { throw FleetError(.agentConfig, issues.joined(separator: "\n")) }
    return options
  }

  static func unknownFlagMessage(_ flag: String) -> String {
    if flag.hasPrefix("--"), let key = WatcherConfigKey(rawValue: String(flag.dropFirst(2))) {
      return
        "\(flag) is not a command-line option; set `\(key.name) = \(key.example)` in a config file (--config FILE)"
    }
    let flags = WatcherConfigKey.allCases.compactMap(\.flag) + ["--config", "--log-level"]
    let hint = Suggestion.didYouMean(flag, among: flags).map { "; \($0)" } ?? ""
    return "unknown option \(flag)\(hint)"
  }

  /// The quick form's usage, from the table: `command`, the required options, the others in
  /// brackets, then `others` (the command's own options), wrapped at `width` columns under the first option.
  public static func usage(command: String, others: [String], width: Int = 92) -> String {
    let words = WatcherConfigKey.allCases.compactMap { key -> String? in
      guard let flag = key.flag, let valueName = key.row.flag?.valueName else { return nil }
      let text = "\(flag) <\(valueName)>"
      if key.isRequired { return text }
      return key.isRepeatable ? "[\(text) ...]" : "[\(text)]"
    }
    let indent = String(repeating: " ", count: command.count + 1)
    var lines = [command]
    for word in words + others {
      if lines[lines.count - 1].count + 1 + word.count > width && lines[lines.count - 1] != indent {
        lines.append(indent)
      }
      lines[lines.count - 1] += (lines[lines.count - 1] == indent ? "" : " ") + word
    }
    return lines.joined(separator: "\n")
  }

  /// The quick form's options for help, from the table: each option on a line, its help indented below.
  public static var help: String {
    WatcherConfigKey.allCases.compactMap { key -> String? in
      guard let flag = key.flag, let row = key.row.flag else { return nil }
      return "  \(flag) <\(row.valueName)>\n        \(row.help)"
    }
    .joined(separator: "\n")
  }
}
