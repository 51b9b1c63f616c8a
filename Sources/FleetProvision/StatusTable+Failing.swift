import FleetWatch
import Foundation

extension StatusTable {
  /// Below the table, for each watcher with paths it cannot send: how many, and the first of them
  /// with their failures, next retry and rsync's error.
  static func failingPathLines(_ hosts: [HostStatus]) -> [String] {
    var lines: [String] = []
    for host in hosts {
      for s in host.services where s.failingPathCount > 0 {
        let count = s.failingPathCount
        lines.append("")
        lines.append(
          "\(host.host) \(s.service): \(count) path\(count == 1 ? "" : "s") cannot be sent to the backup "
            + "(check owner, mode and what is in the way on the backup; each is retried on its own):")
        for path in s.failingPaths {
          let retry = path.nextRetryAt.map { "next retry \(Self.time($0))" } ?? "retrying now"
          lines.append("  \(path.path)  (\(path.failures) failures, \(retry)): \(path.error)")
        }
        if count > s.failingPaths.count { lines.append("  … and \(count - s.failingPaths.count) more") }
      }
    }
    return lines
  }

  /// Below the table, for each watcher whose rsync sender is not confined to the source: a warning.
  static func unconfinedLines(_ hosts: [HostStatus]) -> [String] {
    let watchers = hosts.flatMap { host in
      host.services.filter { $0.senderConfined == false }.map { "\(host.host) \($0.service)" }
    }
    guard !watchers.isEmpty else { return [] }
    return [
      "",
      "not confined to the source (no Landlock on the host; its log says why): \(watchers.joined(separator: ", "))",
      "  a symlink swapped in while a transfer starts could make rsync read outside the source; "
        + "see docs/safety.md",
    ]
  }

  private static func time(_ date: Date) -> String {
    let formatter = ISO8601DateFormatter()
    formatter.formatOptions = [.withTime, .withColonSeparatorInTime, .withTimeZone]
    return formatter.string(from: date)
  }
}
