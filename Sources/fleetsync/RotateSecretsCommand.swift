import ArgumentParser
import FleetCore
import FleetProvision
import FleetSSH
import Foundation

/// `fleetsync rotate-secrets`: new module secrets at both ends, without losing a change.
struct RotateSecretsCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "rotate-secrets",
    abstract: "Give rsync modules new secrets, on their backup host and their watchers, losing no change.",
    discussion: """
      --limit HOST|GROUP selects modules, not hosts: every module of a selected backup host, and every \
      module a selected source sends to. Each selected module's secret is changed at both of its ends \
      (its rsync daemon and every watcher sending to it), also on hosts --limit does not name. Without \
      --limit: every module of the inventory.

      Module by module, the daemon's secrets file gets the new secret, then at once the watchers' \
      password files; nothing restarts (both read their file at every connection). A transfer started \
      in between is refused, stays in the watcher's journal and is retried. The new secrets are kept \
      in the secrets file as pending (BACKUP/MODULE+next) until every end holds them: a rotation cut \
      off is finished, with the same secrets, by running this command again, and `up` meanwhile gives \
      both ends the secret the daemon holds. A module whose secret comes from a `secret_file` is \
      skipped: put a new secret in that file, then run `fleetsync up`.

      """ + ExitStatus.helpText)

  @OptionGroup var common: InventoryOptions
  @OptionGroup var lock: LockOptions
  @Flag(
    help:
      "Print the outcome as JSON: {modules: [{module, outcome, detail}], hosts: [{host, outcome, detail, changes}]}."
  )
  var json = false

  func run() async throws {
    let inventory = try common.load()
    var options = common.options()
    options.lockWait = .seconds(lock.waitLock)
    let report = try await withProvisioner(inventory, options, threads: max(8, min(options.forks * 2, 128))) {
      try await $0.rotateSecrets()
    }
    if json {
      Swift.print(try Self.json(report))
    } else {
      Self.render(report)
    }
    try ExitStatus(report.hosts.map(\.outcome)).throwIfNotOK()
  }

  /// One line per module, then one per host (what was written there, or why not), then the counts.
  static func render(_ report: RotationReport) {
    guard !report.modules.isEmpty else {
      Swift.print("no module selected: nothing to rotate")
      return
    }
    let moduleWidth = report.modules.map(\.module.count).max() ?? 0
    for module in report.modules {
      Swift.print(
        module.module.padding(toLength: moduleWidth, withPad: " ", startingAt: 0) + "  "
          + module.outcome.rawValue.padding(toLength: 8, withPad: " ", startingAt: 0) + " " + module.detail)
    }
    guard !report.hosts.isEmpty else { return }
    Swift.print("")
    let width = max(4, report.hosts.map(\.host.count).max() ?? 4)
    for host in report.hosts {
      let detail = host.outcome.succeeded ? host.changes.joined(separator: ", ") : host.outcome.detail
      Swift.print(
        host.host.padding(toLength: width, withPad: " ", startingAt: 0) + "  "
          + host.outcome.word.padding(toLength: 11, withPad: " ", startingAt: 0) + " " + detail)
    }
    Swift.print("\n" + HostRecap.line(report.hosts.map(\.outcome), verb: "rotate-secrets"))
  }

  struct Document: Encodable {
    struct Host: Encodable {
      var host: String
      var outcome: String
      var detail: String
      var changes: [String]
    }
    var modules: [ModuleRotation]
    var hosts: [Host]
  }

  static func json(_ report: RotationReport) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    let document = Document(
      modules: report.modules,
      hosts: report.hosts.map {
        Document.Host(host: $0.host, outcome: $0.outcome.word, detail: $0.outcome.detail, changes: $0.changes)
      })
    return String(decoding: try encoder.encode(document), as: UTF8.self)
  }
}
