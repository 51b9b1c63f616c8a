import FleetCore
import FleetWatch
import FleetWire

extension AgentSettings {
  /// Collects checked values, one ``FleetWire/WatcherConfigKey`` at a time, whether they come from a
  /// config file or from the command line.
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
    /// `.zero` turns the periodic full sync off.
    var fullSyncInterval: Duration?
    var retryMax: Duration?
    /// `.zero` turns the lag bound off.
    var maxLag: Duration?
    var maxDelete: DeleteLimit?
    var massChange: MassChangeLimit?
    var keepVersions: Int?
    var backend: EventBackend?

    /// Checks and keeps one value; returns what is wrong with it, or nil.
    mutating func set(_ key: WatcherConfigKey, _ value: String) -> String? {
      switch key {
      case .source:
        guard value.hasPrefix("/") else {
          return "source must be an absolute path, e.g. `source = /srv/data`"
        }
        source = Self.normalized(value)
      case .target: return setTarget(value)
      case .passwordFile:
        guard value.hasPrefix("/") else { return "password-file must be an absolute path" }
        passwordFile = value
      case .stateDir:
        guard value.hasPrefix("/") else { return "state-dir must be an absolute path" }
        stateDir = Self.normalized(value)
      case .healthAddress:
        guard !value.contains(where: \.isWhitespace) else {
          return "health-address must be an IP address such as 127.0.0.1"
        }
        healthAddress = value
      case .healthPort:
        guard let port = Int(value), (0...65535).contains(port) else {
          return
            "health-port must be a number from 1 to 65535 (0 or absent disables the endpoint), not \"\(value)\""
        }
        healthPort = port == 0 ? nil : port
      case .exclude: excludes.append(value)
      case .batchDelay:
        guard let delay = Self.duration(value, defaultUnit: .milliseconds(1)), delay <= .seconds(600) else {
          return "batch-delay must be milliseconds from 0 to 600000 (e.g. 100, or 2s), not \"\(value)\""
        }
        batchDelay = delay
      case .workers:
        guard let count = Int(value), (1...64).contains(count) else {
          return "workers must be a number from 1 to 64, not \"\(value)\""
        }
        workers = count
      case .rsyncPath: rsyncPath = value
      case .ioTimeout: return Self.timeout(key, value, into: &ioTimeout)
      case .connectTimeout: return Self.timeout(key, value, into: &connectTimeout)
      case .retryMax: return Self.timeout(key, value, into: &retryMax)
      case .maxLag:
        guard let duration = Self.duration(value, defaultUnit: .seconds(1)), duration <= .seconds(86_400 * 7)
        else {
          return "max-lag must be seconds from 0 (no bound) to 604800 (e.g. 300, or 5m), not \"\(value)\""
        }
        maxLag = duration
      case .fullSyncInterval:
        guard let duration = Self.duration(value, defaultUnit: .seconds(1)), duration <= .seconds(86_400 * 30)
        else {
          return
            "full-sync-interval must be seconds from 0 (off) to 2592000 (e.g. 3600, or 1h), not \"\(value)\""
        }
        fullSyncInterval = duration
      case .maxDelete:
        do {
          maxDelete = try DeleteLimit.parse(value)
        } catch let error as FleetError {
          return "\(key.name) \(error.message)"
        } catch {
          return "\(key.name) `\(value)` is not a limit; write \(DeleteLimit.syntax)"
        }
      case .massChange:
        do {
          massChange = try MassChangeLimit.parse(value)
        } catch let error as FleetError {
          return "\(key.name) \(error.message)"
        } catch {
          return "\(key.name) `\(value)` is not an alarm setting; write \(MassChangeLimit.syntax)"
        }
      case .keepVersions:
        guard let days = Int(value), (0...3650).contains(days) else {
          return "keep-versions must be whole days from 0 (a plain mirror) to 3650, not \"\(value)\""
        }
        keepVersions = days
      case .backend:
        guard let kind = EventBackend(rawValue: value) else {
          return "backend must be \(EventBackend.choices), not \"\(value)\""
        }
        backend = kind
      }
      return nil
    }

    private mutating func setTarget(_ value: String) -> String? {
      do {
        target = try RsyncTarget.parse(value)
        return nil
      } catch let error as FleetError {
        let form = "rsync://USER@HOST[:PORT]/MODULE[/SUBDIR]"
        let hint = error.message.contains(form) ? "" : "; write \(form)"
        return "bad target \"\(value)\": \(error.message)\(hint)"
      } catch {
        return "bad target \"\(value)\"; write rsync://USER@HOST[:PORT]/MODULE[/SUBDIR]"
      }
    }

    /// Seconds from 1 to 86400 (or with a unit) into `slot`; the problem otherwise.
    private static func timeout(_ key: WatcherConfigKey, _ value: String, into slot: inout Duration?)
      -> String?
    {
      guard let duration = duration(value, defaultUnit: .seconds(1)), duration >= .seconds(1),
        duration <= .seconds(86_400)
      else {
        return "\(key.name) must be seconds from 1 to 86400 (e.g. 30, or 2m), not \"\(value)\""
      }
      slot = duration
      return nil
    }

    /// The settings, once `source` and `target` are known.
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
      if let fullSyncInterval { watch.fullSyncInterval = fullSyncInterval == .zero ? nil : fullSyncInterval }
      if let maxLag { watch.maxLag = maxLag == .zero ? nil : maxLag }
      if let retryMax {
        watch.retryMax = retryMax
        if watch.retryInitial > retryMax { watch.retryInitial = retryMax }
      }
      if let maxDelete { watch.maxDelete = maxDelete }
      if let massChange { watch.massChange = massChange }
      if let keepVersions { watch.keepVersions = keepVersions }
      if let backend { watch.backend = backend }
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
