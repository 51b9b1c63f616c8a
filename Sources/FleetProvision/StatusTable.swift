import FleetCore
import Foundation

/// What `fleetsync status` prints: a header and one row per instance, in aligned columns.
///
/// Every instance shows its restarts since boot and how long its process has run. Watchers also
/// show their replication lag, queue depth (paths waiting to be sent; `-` when the watcher's
/// `/status` could not be read), how long ago a transfer last succeeded and the last error
/// happened; rsync daemons leave those empty.
public enum StatusTable {
  /// The column headers, in order.
  static let header = [
    "HOST", "INSTANCE", "PORT", "STATE", "RESTARTS", "UPTIME", "LAG", "QUEUE", "LAST OK", "LAST ERROR",
    "DETAIL",
  ]

  /// The table's lines: a header, then one row per instance (one per host that could not be read).
  public static func render(_ hosts: [HostStatus], now: Date = Date()) -> [String] {
    let rows: [[String]] = hosts.flatMap { host -> [[String]] in
      if host.error != nil {
        let outcome = Self.outcome(host)
        return [row(host.host, state: outcome.word, detail: outcome.detail)]
      }
      if host.services.isEmpty { return [row(host.host, state: "not set up", detail: "")] }
      return host.services.map { row(host.host, $0, now: now) }
    }
    let all = [header] + rows
    let widths = (0..<header.count).map { col in all.map { $0[col].count }.max() ?? 0 }
    return all.map { row in
      zip(row, widths).map { $0.padding(toLength: $1, withPad: " ", startingAt: 0) }.joined(separator: "  ")
        .trimmingTrailingSpaces()
    } + failingPathLines(hosts) + unconfinedLines(hosts) + moduleSizeLines(hosts)
  }

  /// The row of a host without instances to show.
  static func row(_ host: String, state: String, detail: String) -> [String] {
    [host, "-", "-", state] + Array(repeating: "", count: header.count - 5) + [detail]
  }

  /// The row of one instance.
  static func row(_ host: String, _ s: ServiceStatus, now: Date) -> [String] {
    let state = s.healthy ? "healthy" : (s.running ? "unhealthy" : "down")
    let watcher = s.service.kind == .watch
    let lag = s.lagSeconds.map { String(format: "%.1fs", $0) } ?? (watcher ? "0s" : "")
    let queue = s.queueDepth.map(String.init) ?? (watcher ? "-" : "")
    let never = watcher ? "-" : ""
    let lastOK = s.lastSuccess.map { span(now.timeIntervalSince($0)) + " ago" } ?? never
    let lastError =
      s.lastErrorAt.map { span(now.timeIntervalSince($0)) + " ago" } ?? (s.lastError == nil ? never : "yes")
    return [
      host, s.service.description, String(s.port), state, s.restarts.map(String.init) ?? "-",
      s.uptimeSeconds.map { span(TimeInterval($0)) } ?? "-", lag, queue, lastOK, lastError, s.detail,
    ]
  }

  /// A duration in its largest fitting unit: `45s`, `12m`, `5h`, `3d`.
  static func span(_ seconds: TimeInterval) -> String {
    let s = max(0, Int(seconds))
    if s < 120 { return "\(s)s" }
    if s < 7200 { return "\(s / 60)m" }
    if s < 172_800 { return "\(s / 3600)h" }
    return "\(s / 86400)d"
  }

  /// One line for a title: how many instances are healthy, and which hosts could not be read.
  public static func summary(_ hosts: [HostStatus]) -> String {
    let instances = hosts.flatMap(\.services)
    let healthy = instances.filter(\.healthy).count
    var parts = ["\(healthy)/\(instances.count) instances healthy"]
    let unread = hosts.filter { $0.error != nil }.map(\.host)
    if !unread.isEmpty { parts.append("not read: " + unread.joined(separator: ", ")) }
    return parts.joined(separator: "; ")
  }

  /// A host is ok when it could be read and every instance on it is healthy.
  public static func outcome(_ host: HostStatus) -> HostOutcome {
    if let error = host.error { return HostOutcome(error) }
    let unhealthy = host.services.filter { !$0.healthy }.map(\.service.description)
    return unhealthy.isEmpty ? .ok : .failed("not healthy: \(unhealthy.joined(separator: ", "))")
  }
}

extension String {
  /// The string without the spaces at its end (a table row whose last cells are empty).
  func trimmingTrailingSpaces() -> String {
    var end = endIndex
    while end > startIndex, self[index(before: end)] == " " { end = index(before: end) }
    return String(self[..<end])
  }
}
