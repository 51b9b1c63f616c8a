import FleetCore
import FleetInventory
import Foundation

/// What `fleetsync status --json` prints: every host and instance as the table shows them, for
/// monitoring and scripts.
///
/// Field names are the contract with those readers: they are only ever added to. Sizes and
/// times are numbers (seconds, KiB, seconds since the epoch); a value fleetsync could not read
/// is left out rather than guessed.
public struct StatusDocument: Sendable, Equatable, Codable {
  /// One instance on a host.
  public struct Instance: Sendable, Equatable, Codable {
    /// `rsyncd` or `watch`.
    public var kind: String
    /// The instance name (daemon name, or `DIRECTORY:BACKUP:MODULE`).
    public var instance: String
    /// Its rsync or health port.
    public var port: Int
    /// `healthy`, `unhealthy` (its process runs) or `down`.
    public var state: String
    /// Whether its process runs.
    public var running: Bool
    /// Whether it answers healthy.
    public var healthy: Bool
    /// Replication lag in seconds (watchers).
    public var lagSeconds: Double?
    /// Paths waiting to be sent (watchers).
    public var queueDepth: Int?
    /// The watcher's state, or why the instance is unhealthy.
    public var detail: String
    /// Paths the watcher cannot send (watchers).
    public var failingPaths: Int?
    /// Whether the watcher's rsync sender runs confined to the source; absent when unknown.
    public var senderConfined: Bool?
    /// Where the watcher's change events come from: `fanotify` or `inotify`; absent when unknown.
    public var eventBackend: String?
    /// Restarts since the host booted, by systemd, the pid-file supervisor or `heal`.
    public var restarts: Int?
    /// Seconds since the instance's process started; absent when it does not run.
    public var uptimeSeconds: Int?
    /// When a transfer last succeeded (watchers), seconds since the epoch.
    public var lastSuccess: Int?
    /// The watcher's last error (it may be over: compare ``lastErrorAt`` with ``lastSuccess``).
    public var lastError: String?
    /// When ``lastError`` happened, seconds since the epoch.
    public var lastErrorAt: Int?
  }

  /// A backup module's sizes, as last measured on its host.
  public struct Module: Sendable, Equatable, Codable {
    /// The module's directory.
    public var path: String
    /// KiB in its mirror.
    public var mirrorKiB: Int
    /// KiB in its versions.
    public var versionsKiB: Int
    /// Seconds since the epoch.
    public var measuredAt: Int
  }

  /// One host.
  public struct Host: Sendable, Equatable, Codable {
    /// The inventory's name of the host.
    public var host: String
    /// `source`, `backup`, sorted.
    public var roles: [String]
    /// `ok`, `failed`, `auth` or `unreachable`, as the exit status counts it.
    public var outcome: String
    /// Why the host is not ok; absent when it is.
    public var error: String?
    /// Its instances (none when it could not be read).
    public var instances: [Instance]
    /// Its backup modules' sizes (backup hosts).
    public var modules: [Module]
  }

  /// Whether every host is ok (the exit status is 0 exactly then).
  public var ok: Bool
  /// Every selected host, in the inventory's order.
  public var hosts: [Host]

  /// The document of what `status()` read.
  public init(_ hosts: [HostStatus]) {
    self.hosts = hosts.map(Self.host)
    ok = self.hosts.allSatisfy { $0.outcome == HostOutcome.ok.word }
  }

  static func host(_ status: HostStatus) -> Host {
    let outcome = StatusTable.outcome(status)
    return Host(
      host: status.host, roles: status.roles.map(\.rawValue).sorted(), outcome: outcome.word,
      error: outcome.detail.isEmpty ? nil : outcome.detail,
      instances: status.services.map(instance),
      modules: status.moduleSizes.map {
        Module(
          path: $0.path, mirrorKiB: $0.mirrorKiB, versionsKiB: $0.versionsKiB,
          measuredAt: epoch($0.measured))
      })
  }

  static func instance(_ s: ServiceStatus) -> Instance {
    let watcher = s.service.kind == .watch
    return Instance(
      kind: s.service.kind.rawValue, instance: s.service.instance, port: s.port,
      state: s.healthy ? "healthy" : (s.running ? "unhealthy" : "down"), running: s.running,
      healthy: s.healthy, lagSeconds: s.lagSeconds ?? (watcher && s.healthy ? 0 : nil),
      queueDepth: s.queueDepth, detail: s.detail, failingPaths: watcher ? s.failingPathCount : nil,
      senderConfined: s.senderConfined, eventBackend: s.eventBackend, restarts: s.restarts,
      uptimeSeconds: s.uptimeSeconds,
      lastSuccess: s.lastSuccess.map(epoch), lastError: s.lastError, lastErrorAt: s.lastErrorAt.map(epoch))
  }

  /// Seconds since the epoch.
  static func epoch(_ date: Date) -> Int { Int(date.timeIntervalSince1970) }

  /// The document as one line of JSON with sorted keys (one reading of `status --watch --json`).
  public func jsonLine() throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return String(decoding: try encoder.encode(self), as: UTF8.self)
  }

  /// The document as pretty-printed JSON with sorted keys.
  public func json() throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    return String(decoding: try encoder.encode(self), as: UTF8.self)
  }
}
