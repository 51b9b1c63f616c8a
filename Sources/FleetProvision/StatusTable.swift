import FleetCore
import Foundation

/// What `fleetsync status` prints: a header and one row per instance, in aligned columns.
///
/// Watchers show their replication lag and queue depth (paths waiting to be sent; `-` when the
/// watcher's `/status` could not be read); rsync daemons leave both empty.
public enum StatusTable {
  /// The table's lines: a header, then one row per instance (one per host that could not be read).
  public static func render(_ hosts: [HostStatus]) -> [String] {
    let rows: [[String]] = hosts.flatMap { host -> [[String]] in
      if host.error != nil {
        let outcome = Self.outcome(host)
        return [[host.host, "-", "-", outcome.word, "", "", outcome.detail]]
      }
      if host.services.isEmpty { return [[host.host, "-", "-", "not set up", "", "", ""]] }
      return host.services.map { s in
        let state = s.healthy ? "healthy" : (s.running ? "unhealthy" : "down")
        let watcher = s.service.kind == .watch
        let lag = s.lagSeconds.map { String(format: "%.1fs", $0) } ?? (watcher ? "0s" : "")
        let queue = s.queueDepth.map(String.init) ?? (watcher ? "-" : "")
        return [host.host, s.service.description, String(s.port), state, lag, queue, s.detail]
      }
    }
    let header = ["HOST", "INSTANCE", "PORT", "STATE", "LAG", "QUEUE", "DETAIL"]
    let all = [header] + rows
    let widths = (0..<header.count).map { col in all.map { $0[col].count }.max() ?? 0 }
    return all.map { row in
      zip(row, widths).map { $0.padding(toLength: $1, withPad: " ", startingAt: 0) }.joined(separator: "  ")
    } + failingPathLines(hosts) + unconfinedLines(hosts) + moduleSizeLines(hosts)
  }

  /// A host is ok when it could be read and every instance on it is healthy.
  public static func outcome(_ host: HostStatus) -> HostOutcome {
    if let error = host.error { return HostOutcome(error) }
    let unhealthy = host.services.filter { !$0.healthy }.map(\.service.description)
    return unhealthy.isEmpty ? .ok : .failed("not healthy: \(unhealthy.joined(separator: ", "))")
  }
}
