import FleetCore
import FleetWatch
import Foundation

/// Everything one `fleetsync-watch` process runs with: the engine's config plus the agent's own.
///
/// Built from a config file by ``AgentSettings/load(file:)`` or from command-line options by
/// ``AgentSettings/fromOptions(_:)``; both go through the same value checks.
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

/// The quick form's options, as given on the command line (`fleetsync-watch run --source ...`).
public struct AgentOptions: Sendable {
  /// `--source DIR`.
  public var source: String?
  /// `--target rsync://USER@HOST[:PORT]/MODULE[/SUBDIR]`.
  public var target: String?
  /// `--password-file FILE`.
  public var passwordFile: String?
  /// `--state-dir DIR`.
  public var stateDir: String?
  /// `--health-address ADDR`.
  public var healthAddress: String?
  /// `--health-port N`.
  public var healthPort: String?
  /// `--exclude PATTERN`, repeatable.
  public var excludes: [String] = []
  /// `--batch-delay MS`.
  public var batchDelay: String?
  /// `--workers N`.
  public var workers: String?
  /// `--rsync-path PATH`.
  public var rsyncPath: String?

  /// Makes empty options.
  public init() {}
}

extension AgentSettings {
  /// The keys a config file may use, in the order docs/watcher.md lists them.
  public static let knownKeys = [
    "source", "target", "password-file", "state-dir", "health-address", "health-port", "exclude",
    "batch-delay", "workers", "rsync-path", "io-timeout", "connect-timeout", "full-sync-interval",
    "retry-max",
  ]

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

  /// Parses config file text; `file` names it in error messages.
  ///
  /// Lines are `key = value`; blank lines and lines starting with `#` are ignored; `exclude` may
  /// repeat, every other key at most once. All problems are collected before throwing.
  public static func parse(_ text: String, file: String) throws -> AgentSettings {
    var values: [String: (value: String, line: Int)] = [:]
    var excludes: [(value: String, line: Int)] = []
    var issues: [String] = []
    let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
    for (index, rawLine) in lines.enumerated() {
      let number = index + 1
      let line = rawLine.trimmingCharacters(in: .whitespaces.union(CharacterSet(charactersIn: "\r")))
      if line.isEmpty || line.hasPrefix("#") { continue }
      guard let equals = line.firstIndex(of: "=") else {
        issues.append("\(file):\(number): expected `key = value`, got \"\(line)\"")
        continue
      }
      let key = line[..<equals].trimmingCharacters(in: .whitespaces)
      let value = line[line.index(after: equals)...].trimmingCharacters(in: .whitespaces)
      guard knownKeys.contains(key) else {
        let hint = closestKey(to: key).map { "; did you mean `\($0)`?" } ?? ""
        issues.append(
          "\(file):\(number): unknown key \"\(key)\"\(hint) (known keys: \(knownKeys.joined(separator: ", ")))"
        )
        continue
      }
      if value.isEmpty {
        issues.append("\(file):\(number): \(key) has no value; write `\(key) = \(example(for: key))`")
        continue
      }
      if key == "exclude" {
        excludes.append((value, number))
      } else if let earlier = values[key] {
        issues.append(
          "\(file):\(number): \(key) is already set on line \(earlier.line); keep only one `\(key) = ...` line"
        )
      } else {
        values[key] = (value, number)
      }
    }
    let end = max(lines.count - (lines.last?.isEmpty == true ? 1 : 0), 1)
    var builder = Builder()
    for key in knownKeys where key != "exclude" {
      guard let entry = values[key] else { continue }
      if let problem = builder.set(key, entry.value) {
        issues.append("\(file):\(entry.line): \(problem)")
      }
    }
    for entry in excludes {
      if let problem = builder.set("exclude", entry.value) {
        issues.append("\(file):\(entry.line): \(problem)")
      }
    }
    for key in ["source", "target"] where values[key] == nil {
      issues.append(
        "\(file):\(end): missing required key \"\(key)\"; add a line `\(key) = \(example(for: key))`")
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
    let pairs: [(String, String, String?)] = [
      ("--source", "source", options.source), ("--target", "target", options.target),
      ("--password-file", "password-file", options.passwordFile),
      ("--state-dir", "state-dir", options.stateDir),
      ("--health-address", "health-address", options.healthAddress),
      ("--health-port", "health-port", options.healthPort),
      ("--batch-delay", "batch-delay", options.batchDelay),
      ("--workers", "workers", options.workers), ("--rsync-path", "rsync-path", options.rsyncPath),
    ]
    for (flag, key, value) in pairs {
      guard let value else {
        if key == "source" || key == "target" {
          issues.append("missing \(flag); e.g. \(flag) \(example(for: key)) (or use --config FILE)")
        }
        continue
      }
      if let problem = builder.set(key, value) { issues.append("\(flag): \(problem)") }
    }
    for pattern in options.excludes {
      if let problem = builder.set("exclude", pattern) { issues.append("--exclude: \(problem)") }
    }
    guard issues.isEmpty, let settings = builder.build() else {
      throw FleetError(.agentConfig, issues.joined(separator: "\n"))
    }
    return settings
  }

  static func example(for key: String) -> String {
    switch key {
    case "source": "/srv/data"
    case "target": "rsync://backup@backup1:873/data"
    case "password-file": "/etc/fleetsync/watch/data.password"
    case "state-dir": "/var/lib/fleetsync/watch/data"
    case "health-address": "127.0.0.1"
    case "health-port": "9100"
    case "exclude": "*.tmp"
    case "batch-delay": "100"
    case "workers": "4"
    case "rsync-path": "/usr/bin/rsync"
    case "io-timeout": "30"
    case "connect-timeout": "10"
    case "full-sync-interval": "3600"
    case "retry-max": "30"
    default: "..."
    }
  }

  static func closestKey(to key: String) -> String? {
    let lowered = key.lowercased().replacingOccurrences(of: "_", with: "-")
    if knownKeys.contains(lowered) { return lowered }
    return knownKeys.first { $0.hasPrefix(lowered) || lowered.hasPrefix($0) }
  }

  /// Collects checked values; each setter returns a problem description or `nil`.
  struct Builder {
    var source: String?
    var target: RsyncTarget?
    var passwordFile: String?
    var stateDir: String?
    var healthAddress: String?
    var healthPort: Int?
    var excludes: [String] = []
    var batchDelay: Duration?
    var workers: Int?
    var rsyncPath: String?
    var ioTimeout: Duration?
    var connectTimeout: Duration?
    var fullSyncInterval: Duration?
    var fullSyncOff = false
    var retryMax: Duration?

    mutating func set(_ key: String, _ value: String) -> String? {
      switch key {
      case "source":
        guard value.hasPrefix("/") else {
          return "source must be an absolute path, e.g. `source = /srv/data`"
        }
        source = Self.normalized(value)
      case "target":
        do {
          target = try RsyncTarget.parse(value)
        } catch let error as FleetError {
          let form = "rsync://USER@HOST[:PORT]/MODULE[/SUBDIR]"
          let hint = error.message.contains(form) ? "" : "; write \(form)"
          return "bad target \"\(value)\": \(error.message)\(hint)"
        } catch {
          return "bad target \"\(value)\"; write rsync://USER@HOST[:PORT]/MODULE[/SUBDIR]"
        }
      case "password-file":
        guard value.hasPrefix("/") else { return "password-file must be an absolute path" }
        passwordFile = value
      case "state-dir":
        guard value.hasPrefix("/") else { return "state-dir must be an absolute path" }
        stateDir = Self.normalized(value)
      case "health-address":
        guard !value.contains(where: \.isWhitespace) else {
          return "health-address must be an IP address such as 127.0.0.1"
        }
        healthAddress = value
      case "health-port":
        guard let port = Int(value), (0...65535).contains(port) else {
          return
            "health-port must be a number from 1 to 65535 (0 or absent disables the endpoint), not \"\(value)\""
        }
        healthPort = port == 0 ? nil : port
      case "exclude":
        excludes.append(value)
      case "batch-delay":
        guard let delay = Self.duration(value, defaultUnit: .milliseconds(1)), delay <= .seconds(600) else {
          return "batch-delay must be milliseconds from 0 to 600000 (e.g. 100, or 2s), not \"\(value)\""
        }
        batchDelay = delay
      case "workers":
        guard let count = Int(value), (1...64).contains(count) else {
          return "workers must be a number from 1 to 64, not \"\(value)\""
        }
        workers = count
      case "rsync-path":
        rsyncPath = value
      case "io-timeout", "connect-timeout", "retry-max":
        guard let duration = Self.duration(value, defaultUnit: .seconds(1)), duration >= .seconds(1),
          duration <= .seconds(86_400)
        else {
          return "\(key) must be seconds from 1 to 86400 (e.g. 30, or 2m), not \"\(value)\""
        }
        if key == "io-timeout" { ioTimeout = duration }
        if key == "connect-timeout" { connectTimeout = duration }
        if key == "retry-max" { retryMax = duration }
      case "full-sync-interval":
        guard let duration = Self.duration(value, defaultUnit: .seconds(1)), duration <= .seconds(86_400 * 30)
        else {
          return
            "full-sync-interval must be seconds from 0 (off) to 2592000 (e.g. 3600, or 1h), not \"\(value)\""
        }
        fullSyncInterval = duration == .zero ? nil : duration
        fullSyncOff = duration == .zero
      default:
        return "unknown key \"\(key)\""
      }
      return nil
    }

    func build() -> AgentSettings? {
      guard let source, let target else { return nil }
      var watch = WatchConfig(
        source: source, target: target, stateDir: stateDir ?? AgentSettings.defaultStateDir(forSource: source)
      )
      watch.passwordFile = passwordFile
      watch.excludes = excludes
      if let batchDelay { watch.batchDelay = batchDelay }
      if let workers { watch.workers = workers }
      if let rsyncPath { watch.rsyncPath = rsyncPath }
      if let ioTimeout { watch.ioTimeout = ioTimeout }
      if let connectTimeout { watch.connectTimeout = connectTimeout }
      if let fullSyncInterval { watch.fullSyncInterval = fullSyncInterval }
      if fullSyncOff { watch.fullSyncInterval = nil }
      if let retryMax {
        watch.retryMax = retryMax
        if watch.retryInitial > retryMax { watch.retryInitial = retryMax }
      }
      var settings = AgentSettings(watch: watch)
      if let healthAddress { settings.healthAddress = healthAddress }
      settings.healthPort = healthPort
      return settings
    }

    /// A whole number with an optional unit suffix (`ms`, `s`, `m`, `h`); bare numbers use `defaultUnit`.
    static func duration(_ text: String, defaultUnit: Duration) -> Duration? {
      let units: [(String, Duration)] = [
        ("ms", .milliseconds(1)), ("s", .seconds(1)), ("m", .seconds(60)), ("h", .seconds(3600)),
      ]
      var number = text
      var unit = defaultUnit
      for (suffix, value) in units where text.hasSuffix(suffix) {
        number = String(text.dropLast(suffix.count))
        unit = value
        break
      }
      guard let count = Int(number), count >= 0, count <= 10_000_000 else { return nil }
      return unit * count
    }

    /// Drops trailing slashes (rsync treats `dir/` and `dir` differently; the engine adds its own).
    static func normalized(_ path: String) -> String {
      var path = path
      while path.count > 1 && path.hasSuffix("/") { path.removeLast() }
      return path
    }
  }
}
