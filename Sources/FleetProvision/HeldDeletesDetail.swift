import FleetWatch
import Foundation

extension ServiceStatus {
  /// What `fleetsync status` says of deletes a watcher's delete limit holds, with the command that
  /// releases them; nil when none are held.
  static func heldDeletes(_ status: WatchStatus, instance: String, host: String) -> String? {
    guard let held = status.deletesHeld else { return nil }
    let directory = instance.split(separator: ":").first.map(String.init) ?? instance
    let since = status.deletesHeldSince.map { " since \($0.formatted(.iso8601))" } ?? ""
    let limit = status.deleteLimit.map { " (limit \($0))" } ?? ""
    let paths =
      (status.deletesHeldPaths ?? []).isEmpty
      ? "" : " e.g. " + (status.deletesHeldPaths ?? []).joined(separator: ", ")
    return "DELETES HELD: \(held) file(s)\(limit)\(since)\(paths); check why they are gone from the source, "
      + "then `fleetsync resume --deletes --limit \(host) --directory \(directory)`"
  }
}
