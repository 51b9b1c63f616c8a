import FleetCore
import FleetWatch
import FleetWire
import Foundation

/// Everything one `fleetsync-watch` process runs with: the engine's config plus the agent's own.
///
/// Built from a config file by ``AgentSettings/load(file:)`` or from the quick form's options by
/// ``AgentSettings/fromOptions(_:)``; both check every value with the same rules, keyed by the one
/// table of settings, `FleetWire.WatcherConfigKey`.
public struct AgentSettings: Sendable {
  /// The replication engine's configuration.
  public var watch: WatchConfig
  /// The address the health endpoint binds to.
  public var healthAddress: String = "127.0.0.1"
  /// The health endpoint's TCP port; `nil` disables the endpoint.
  public var healthPort: Int?

  /// Makes settings around an engine configuration, with the health endpoint disabled.
  public init(watch: WatchConfig) {
    self.watch = watch
  }

  /// The state directory used when none is given: one per watched directory under
  /// `/var/lib/fleetsync/watch`, named by a stable hash of the source path.
  public static func defaultStateDir(forSource source: String) -> String {
    "/var/lib/fleetsync/watch/" + stableHash(source)
  }

  /// FNV-1a 64-bit of the path, as 16 hex digits: stable across runs and builds.
  static func stableHash(_ text: String) -> String {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in text.utf8 {
      hash ^= UInt64(byte)
      hash = hash &* 0x0000_0100_0000_01b3
    }
    let hex = String(hash, radix: 16)
    return String(repeating: "0", count: 16 - hex.count) + hex
  }
}

extension AgentSettings {
  /// Reads and checks a config file.
  ///
  /// - Throws: ``FleetError`` ``FleetError/Code/agentConfig`` listing every problem, one
  ///   `FILE:LINE: message` per line, or when the file cannot be read.
  public static func load(file path: String) throws -> AgentSettings {
    guard FileManager.default.fileExists(atPath: path) else {
      throw FleetError(.agentConfig, "\(path): the config file does not exist; check the --config path")
    }
    guard let data = FileManager.default.contents(atPath: path) else {
      throw FleetError(
        .agentConfig, "\(path): cannot read the config file; check that it is a readable file")
    }
    guard let text = String(data: data, encoding: .utf8) else {
      throw FleetError(.agentConfig, "\(path): the config file is not UTF-8 text")
    }
    return try parse(text, file: path)
  }

  /// Parses config file text (the syntax of `FleetWire.WatcherConfigFile`); `file` names it in
  /// error messages.
  ///
  /// A repeatable key (`exclude`) may appear many times, every other key at most once. All
  /// problems are collected before throwing.
  public static func parse(_ text: String, file: String) throws -> AgentSettings {
    let (lines, lastLine) = WatcherConfigFile.read(text)
    var single: [WatcherConfigKey: (value: String, line: Int)] = [:]
    var repeated: [(key: WatcherConfigKey, value: String, line: Int)] = []
    var issues: [String] = []
    for line in lines {
      let at = "\(file):\(line.number)"
      switch line.content {
      case .notKeyValue:
        // The line itself is not repeated: it may be a secret pasted in the wrong place.
        issues.append("\(at): expected `key = value` (this line has no `=`)")
      case .unknownKey(let name):
        issues.append("\(at): \(unknownKeyMessage(name))")
      case .setting(let key, let value) where value.isEmpty:
        issues.append("\(at): \(key.name) has no value; write `\(key.name) = \(key.example)`")
      case .setting(let key, let value) where key.isRepeatable:
        repeated.append((key, value, line.number))
      case .setting(let key, let value):
        if let earlier = single[key] {
          issues.append(
            "\(at): \(key.name) is already set on line \(earlier.line); keep only one `\(key.name) = ...` line"
          )
        } else {
          single[key] = (value, line.number)
        }
      }
    }
    var builder = Builder()
    let checked =
      WatcherConfigKey.allCases.compactMap { key in single[key].map { (key, $0.value, $0.line) } } + repeated
    for (key, value, line) in checked {
      if let problem = builder.set(key, value) { issues.append("\(file):\(line): \(problem)") }
    }
    for key in WatcherConfigKey.allCases where key.isRequired && single[key] == nil {
      issues.append(
        "\(file):\(lastLine): missing required key \"\(key.name)\"; add a line `\(key.name) = \(key.example)`"
      )
    }
    guard issues.isEmpty, let settings = builder.build() else {
      throw FleetError(.agentConfig, issues.joined(separator: "\n"))
    }
    return settings
  }

  /// Checks the quick form's options with the same rules as the config file.
  ///
  /// - Throws: ``FleetError`` ``FleetError/Code/agentConfig`` listing every problem.
  public static func fromOptions(_ options: AgentOptions) throws -> AgentSettings {
    var builder = Builder()
    var issues: [String] = []
    for key in WatcherConfigKey.allCases
    where key.isRequired && !options.values.contains(where: { $0.key == key }) {
      let flag = key.flag ?? key.name
      issues.append("missing \(flag); e.g. \(flag) \(key.example) (or use --config FILE)")
    }
    for (key, value) in options.values {
      if let problem = builder.set(key, value) { issues.append("\(key.flag ?? key.name): \(problem)") }
    }
    guard issues.isEmpty, let settings = builder.build() else {
      throw FleetError(.agentConfig, issues.joined(separator: "\n"))
    }
    return settings
  }

  /// `unknown key "NAME"; did you mean ...? (known keys: ...)`.
  static func unknownKeyMessage(_ name: String) -> String {
    let known = WatcherConfigKey.allCases.map(\.name)
    let hint = Suggestion.didYouMean(name, among: known).map { "; \($0)" } ?? ""
    return "unknown key \"\(name)\"\(hint) (known keys: \(known.joined(separator: ", ")))"
  }
}
