import ArgumentParser
import FleetCore
import FleetProvision
import FleetSSH
import Foundation

struct HealCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "heal",
    abstract: "One repair pass: start instances that do not run, restart those that do not answer.",
    discussion: """
      An instance that runs and answers its health check but is unhealthy (its backup is down, its \
      source is held, deletes are held) is left alone and reported: a restart does not fix those. After \
      its repairs a host is read again until they answer healthy (--deadline). A host is `changed` when \
      it was repaired and is healthy, `failed` when anything is still unhealthy.

      """ + ExitStatus.helpText)

  @OptionGroup var common: InventoryOptions
  @OptionGroup var lock: LockOptions
  @Option(help: "Seconds to wait for repaired instances to answer healthy.")
  var deadline = 60
  @Flag(
    help:
      "Print the reports as JSON: [{host, outcome, detail, actions: [{action, instance, reason, healthyAfter}]}]."
  )
  var json = false

  func run() async throws {
    let inventory = try common.load()
    var options = common.options()
    options.lockWait = .seconds(lock.waitLock)
    let deadline = max(1, deadline)
    let reports = try await withProvisioner(
      inventory, options, operationTimeout: SSHHostConnector.checkTimeout
    ) { try await $0.heal(deadline: deadline) }
    if json {
      Swift.print(try Self.json(reports))
    } else {
      Self.render(reports)
    }
    try ExitStatus(reports.map(\.outcome)).throwIfNotOK()
  }

  static func render(_ reports: [HealReport]) {
    let width = max(4, reports.map(\.host.count).max() ?? 4)
    for report in reports {
      let pad = report.host.padding(toLength: width, withPad: " ", startingAt: 0)
      guard !report.actions.isEmpty else {
        Swift.print(
          "\(pad)  \(report.outcome.word.padding(toLength: 11, withPad: " ", startingAt: 0)) \(report.outcome.detail)"
        )
        continue
      }
      for action in report.actions {
        let after =
          action.action == "leave" ? "" : (action.healthyAfter ? " -> healthy" : " -> still unhealthy")
        Swift.print(
          "\(pad)  \(action.action.padding(toLength: 11, withPad: " ", startingAt: 0)) \(action.instance): \(action.reason)\(after)"
        )
      }
    }
    Swift.print("\n" + HostRecap.line(reports.map(\.outcome), verb: "heal"))
  }

  struct Document: Encodable {
    var host: String
    var outcome: String
    var detail: String
    var actions: [HealAction]
  }

  static func json(_ reports: [HealReport]) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    let documents = reports.map {
      Document(host: $0.host, outcome: $0.outcome.word, detail: $0.outcome.detail, actions: $0.actions)
    }
    return String(decoding: try encoder.encode(documents), as: UTF8.self)
  }
}
