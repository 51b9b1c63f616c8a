import FleetWatch
import Foundation

extension ServiceStatus {
  /// What `fleetsync status` says of a watcher's standing mass-change alarm, with the command that
  /// clears it; nil when none stands.
  static func massChange(_ status: WatchStatus, instance: String, host: String) -> String? {
    guard let alarm = status.massChangeAlarm else { return nil }
    let directory = instance.split(separator: ":").first.map(String.init) ?? instance
    let hold = alarm.pruneHeld ? "pruning of versions held" : "prune hold not on the backup yet"
    return
      "MASS CHANGE: \(alarm.count) file(s) deleted or overwritten on the backup within \(alarm.windowSeconds) s "
      + "(alarm at \(alarm.threshold), normal \(alarm.normal)) since \(alarm.since.formatted(.iso8601)), \(hold); "
      + "check the source for a script gone wrong or ransomware, restore what is damaged (`fleetsync restore "
      + "--at TIME`), then `fleetsync resume --mass-change --limit \(host) --directory \(directory)`"
  }
}
