import ArgumentParser
import FleetCore
import FleetProvision
import FleetSSH
import Foundation

/// `fleetsync resume`: asks watchers to apply the deletes they hold, or to accept their source.
struct ResumeCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "resume",
    abstract:
      "Ask watchers to apply the deletes they hold (--deletes), accept their source (--accept-source) "
      + "or clear their mass-change alarm (--mass-change).",
    discussion: """
      Runs `fleetsync-watch resume` over SSH for every watcher of the selected source hosts (--limit) and \
      directories (--directory), and reports per host whether each watcher took the request. A watcher \
      that does not act within --wait (is it running?) has the request withdrawn.

      """ + ExitStatus.helpText)

  @OptionGroup var common: InventoryOptions

  @Flag(name: .long, help: "Apply the deletes the delete limit holds (once: what is held now).")
  var deletes = false

  @Flag(name: .long, help: "Accept the source as it is now as the real source.")
  var acceptSource = false

  @Flag(name: .long, help: "Clear the mass-change alarm, so pruning of versions may resume.")
  var massChange = false

  @Option(
    name: .long, help: "Only the watchers of this directory (its inventory name; repeat, or comma-separated)."
  )
  var directory: [String] = []

  @Option(name: .long, help: ArgumentHelp("Seconds to wait for each watcher (default 120).", valueName: "s"))
  var wait: Int = 120

  @Flag(name: .long, help: "Print the outcome as JSON.")
  var json = false

  func validate() throws {
    guard deletes || acceptSource || massChange else {
      throw ValidationError("say what to resume: --deletes, --accept-source and/or --mass-change")
    }
    guard (1...3600).contains(wait) else { throw ValidationError("--wait must be 1 to 3600 seconds") }
  }

  func run() async throws {
    let inventory = try common.load()
    let options = common.options()
    var request = ResumeRequest()
    request.releaseDeletes = deletes
    request.acceptSource = acceptSource
    request.clearMassChange = massChange
    request.directories = directory.flatMap { $0.split(separator: ",").map(String.init) }
    request.waitSeconds = wait
    let hosts = try await withProvisioner(inventory, options) { try await $0.resume(request) }
    if json {
      print(try ResumeReport.json(hosts))
    } else {
      for line in ResumeReport.lines(hosts) { print(line) }
    }
    try ExitStatus(hosts.map(\.outcome)).throwIfNotOK()
  }
}

/// How `fleetsync resume` prints its outcome.
enum ResumeReport {
  struct Host: Codable {
    var host: String
    var outcome: String
    var detail: String
    var instances: [InstanceResume]
  }

  static func lines(_ hosts: [HostResume]) -> [String] {
    let width = max(4, hosts.map(\.host.count).max() ?? 4)
    var out: [String] = []
    for host in hosts {
      let name = host.host.padding(toLength: width, withPad: " ", startingAt: 0)
      if host.instances.isEmpty { out.append("\(name)  \(host.outcome.word)  \(host.outcome.detail)") }
      for instance in host.instances {
        out.append("\(name)  \(instance.instance)  \(instance.outcome): \(instance.detail)")
      }
    }
    return out + ["", HostRecap.line(hosts.map(\.outcome), verb: "resume")]
  }

  static func json(_ hosts: [HostResume]) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    let report = hosts.map {
      Host(host: $0.host, outcome: $0.outcome.word, detail: $0.outcome.detail, instances: $0.instances)
    }
    return String(decoding: try encoder.encode(report), as: UTF8.self)
  }
}
