import FleetCore
import FleetInventory
import Foundation

/// What `fleetsync rotate-secrets` did with one module.
public struct ModuleRotation: Sendable, Equatable, Codable {
  /// How the module's rotation ended.
  public enum Outcome: String, Sendable, Codable {
    /// Every end holds the new secret, and the controller's store only that one.
    case rotated
    /// Not finished (see the detail); running `rotate-secrets` again finishes it with the same secret.
    case failed
    /// Not fleetsync's to rotate (its secret comes from a `secret_file`), or not set up yet.
    case skipped
  }
  /// `BACKUP/MODULE`.
  public var module: String
  /// How it ended.
  public var outcome: Outcome
  /// Where the new secret went, or why not.
  public var detail: String
}

/// One host's part in a rotation.
public struct RotationHost: Sendable {
  /// Host name.
  public var host: String
  /// `changed` when a file was written there, `ok` when it held the new secret already, or why not.
  public var outcome: HostOutcome
  /// What was written there: `rsyncd@NAME: MODULE`, `watch@INSTANCE`.
  public var changes: [String]
}

/// The result of `fleetsync rotate-secrets`; its exit status is ``ExitStatus`` of the hosts' outcomes.
public struct RotationReport: Sendable {
  /// Every module in scope, in inventory order.
  public var modules: [ModuleRotation]
  /// Every host that holds a secret of a module rotated or tried, in inventory order.
  public var hosts: [RotationHost]
}

/// One module a rotation works on, and the ends that hold its secret.
struct RotationModule: Sendable, Equatable {
  /// A watcher that logs in to the module.
  struct Watcher: Sendable, Equatable, Hashable {
    /// Its source host.
    var host: String
    /// Its instance (`DIR:BACKUP:MODULE`).
    var instance: String
    /// `watch@INSTANCE`.
    var service: String { ServiceName(.watch, instance).description }
  }
  /// The backup host.
  var backup: String
  /// The rsync daemon instance serving it.
  var daemon: String
  /// The module's name.
  var module: String
  /// The inventory's `secret_file` of the module: not fleetsync's to rotate.
  var secretFile: String?
  /// The watchers sending to it.
  var watchers: [Watcher]

  /// `BACKUP/MODULE`, the store's key.
  var key: String { "\(backup)/\(module)" }
  /// `rsyncd@DAEMON`.
  var daemonService: String { ServiceName(.rsyncd, daemon).description }
  /// The hosts that hold its secret: the backup host first, then the watchers' hosts.
  var hosts: [String] {
    var out = [backup]
    for watcher in watchers where !out.contains(watcher.host) { out.append(watcher.host) }
    return out
  }
}

/// Which modules a rotation works on.
enum RotationScope {
  /// The modules `selected` hosts take part in: every module of a selected backup host and every
  /// module a selected source sends to, in inventory order, each with all of its watchers (also on
  /// hosts not selected: a module has one secret, which both ends must hold).
  static func modules(of inventory: Inventory, selected: [HostRef]) -> [RotationModule] {
    let names = Set(selected.map(\.name))
    let sent = Set(
      inventory.sources.filter { names.contains($0.name) }.flatMap { $0.directories.flatMap(\.destinations) })
    var out: [RotationModule] = []
    for backup in inventory.backups {
      for daemon in backup.daemons {
        for module in daemon.modules {
          let destination = Destination(backup: backup.name, module: module.name)
          guard names.contains(backup.name) || sent.contains(destination) else { continue }
          out.append(
            RotationModule(
              backup: backup.name, daemon: daemon.name, module: module.name, secretFile: module.secretFile,
              watchers: watchers(of: destination, in: inventory)))
        }
      }
    }
    return out
  }

  /// The watchers that send to `destination`, in inventory order.
  static func watchers(of destination: Destination, in inventory: Inventory) -> [RotationModule.Watcher] {
    inventory.sources.flatMap { source in
      source.directories.filter { $0.destinations.contains(destination) }.map {
        RotationModule.Watcher(
          host: source.name, instance: Layout.watchInstance(directory: $0.name, to: destination))
      }
    }
  }
}

/// What a rotation found and did, gathered as it goes: each module's result, and what was written
/// on each host or failed there.
struct RotationLedger: Sendable {
  /// Module results, by `BACKUP/MODULE`.
  var results: [String: ModuleRotation] = [:]
  /// What was written, by host.
  var changes: [String: [String]] = [:]
  /// What failed, by host.
  var errors: [String: [String]] = [:]

  /// An error as one line of a report (a remote command's stderr ends in a newline).
  static func describe(_ error: any Error) -> String {
    String(describing: error).trimmingCharacters(in: .whitespacesAndNewlines)
  }

  /// Records how `module` ended.
  mutating func finish(_ module: RotationModule, _ outcome: ModuleRotation.Outcome, _ detail: String) {
    results[module.key] = ModuleRotation(module: module.key, outcome: outcome, detail: detail)
  }

  /// Records a file written on `host`.
  mutating func changed(_ host: String, _ what: String) { changes[host, default: []].append(what) }

  /// Records a step that failed on `host`.
  mutating func failed(_ host: String, _ why: String) { errors[host, default: []].append(why) }

  /// Adds what `other` recorded.
  mutating func merge(_ other: RotationLedger) {
    results.merge(other.results) { _, new in new }
    changes.merge(other.changes) { $0 + $1 }
    errors.merge(other.errors) { $0 + $1 }
  }

  /// The report: every module of `scope`, and every host of `hosts` with its outcome (`unreached`:
  /// the hosts that could not be worked on, and why).
  func report(scope: [RotationModule], hosts: [String], unreached: [String: FleetError]) -> RotationReport {
    let modules = scope.map {
      results[$0.key] ?? ModuleRotation(module: $0.key, outcome: .failed, detail: "internal: no result")
    }
    let outcomes = hosts.map { host -> RotationHost in
      let written = changes[host] ?? []
      if let error = unreached[host] {
        return RotationHost(host: host, outcome: HostOutcome(error), changes: written)
      }
      if let failures = errors[host], !failures.isEmpty {
        return RotationHost(host: host, outcome: .failed(failures.joined(separator: "; ")), changes: written)
      }
      return RotationHost(host: host, outcome: written.isEmpty ? .ok : .changed, changes: written)
    }
    return RotationReport(modules: modules, hosts: outcomes)
  }
}
