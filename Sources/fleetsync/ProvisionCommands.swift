import ArgumentParser
import FleetCore
import FleetInventory
import FleetProvision
import FleetSSH
import Foundation
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// Options every inventory command shares.
struct InventoryOptions: ParsableArguments {
  @Option(name: [.short, .long], help: "The inventory file.")
  var inventory: String = "inventory.yaml"

  @Option(name: .long, help: "Only these hosts or groups (repeat, or comma-separated).")
  var limit: [String] = []

  @Option(name: .long, help: "How many hosts to work on at once.")
  var forks: Int = 32

  func load() throws -> Inventory {
    do {
      return try Inventory.load(path: inventory)
    } catch let error as FleetError {
      throw Failure.report(error)
    }
  }

  func options() -> ProvisionOptions {
    var options = ProvisionOptions()
    options.forks = max(1, forks)
    options.limit = limit.flatMap { $0.split(separator: ",").map(String.init) }
    return options
  }
}

/// Prints progress: a live line on a terminal, plain lines otherwise.
final class ProgressPrinter: Sendable {
  let live = isatty(STDERR_FILENO) == 1
  let total: Int
  let done = Mutex(0)

  init(total: Int) { self.total = total }

  func callAsFunction(_ event: ProgressEvent) {
    switch event {
    case .phase(let host, let phase):
      if live {
        let count = done.withLock { $0 }
        FileHandle.standardError.write(Data("\r\u{1B}[K[\(count)/\(total)] \(host): \(phase)".utf8))
      } else {
        FileHandle.standardError.write(Data("\(host): \(phase)\n".utf8))
      }
    case .finished:
      done.withLock { $0 += 1 }
    }
  }

  func finish() {
    if live { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
  }
}

enum Recap {
  static func print(_ report: RunReport, verb: String) {
    let width = max(4, report.hosts.map(\.host.count).max() ?? 4)
    var counts: [String: Int] = [:]
    Swift.print("")
    for host in report.hosts {
      let (word, detail): (String, String)
      switch host.outcome {
      case .ok: (word, detail) = ("ok", "")
      case .changed: (word, detail) = ("changed", summary(host.plan))
      case .failed(let why): (word, detail) = ("failed", why)
      case .unreachable(let why): (word, detail) = ("unreachable", why)
      }
      counts[word, default: 0] += 1
      let note = host.waiting.isEmpty ? "" : " (\(host.waiting.count) waiting for an unreachable backup)"
      Swift.print(
        host.host.padding(toLength: width, withPad: " ", startingAt: 0) + "  "
          + word.padding(toLength: 11, withPad: " ", startingAt: 0) + " " + detail + note)
    }
    let order = ["ok", "changed", "failed", "unreachable"]
    Swift.print("\n\(verb): " + order.map { "\($0)=\(counts[$0] ?? 0)" }.joined(separator: " "))
  }

  static func summary(_ plan: HostPlan?) -> String {
    guard let plan else { return "" }
    var parts: [String] = []
    let files = plan.files.count
    if files > 0 { parts.append("\(files) file\(files == 1 ? "" : "s")") }
    for kind in [ServiceAction.Kind.start, .restart, .stop] {
      let n = plan.services.filter { $0.kind == kind }.count
      if n > 0 { parts.append("\(n) \(kind.rawValue)") }
    }
    if !plan.sysctl.isEmpty { parts.append("sysctl") }
    return parts.joined(separator: ", ")
  }

  static func printPlan(_ report: RunReport) {
    for host in report.hosts {
      guard let plan = host.plan else { continue }
      if plan.isEmpty {
        Swift.print("== \(host.host): no changes")
        continue
      }
      Swift.print("== \(host.host)")
      for change in plan.files {
        let note = change.secret ? " (secret: content not shown)" : ""
        Swift.print("  \(change.kind.rawValue) \(change.path)\(note)")
        if let diff = change.diff, !diff.isEmpty {
          Swift.print(
            diff.split(separator: "\n", omittingEmptySubsequences: false).map { "    " + $0 }.joined(
              separator: "\n"))
        }
      }
      for change in plan.sysctl {
        Swift.print("  sysctl \(change.key): \(change.from) -> \(change.to)")
      }
      for action in plan.services {
        Swift.print("  \(action.kind.rawValue) \(action.service) (\(action.reason))")
      }
    }
  }
}

struct PlanCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "plan",
    abstract: "Show what `up` would change on each host (diffs, secrets masked); change nothing.")

  @OptionGroup var common: InventoryOptions
  @Option(help: "The fleetsync-watch binary to install (default: beside this program).")
  var watchBinary: String?

  func run() async throws {
    let inventory = try common.load()
    var options = common.options()
    options.watchBinary = watchBinary
    let report = try await runProvisioner(inventory, options) { try await $0.plan() }
    Recap.printPlan(report)
    Recap.print(report, verb: "plan")
    if report.exitCode != 0 { throw ExitCode(report.exitCode) }
  }
}

struct UpCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "up", abstract: "Set up hot backup on every host of the inventory (idempotent).")

  @OptionGroup var common: InventoryOptions
  @Flag(help: "Show the plan instead of applying it (same as `fleetsync plan`).")
  var dryRun = false
  @Option(help: "The fleetsync-watch binary to install (default: beside this program).")
  var watchBinary: String?
  @Option(help: "Seconds to wait for every instance to report healthy.")
  var healthTimeout = 60

  func run() async throws {
    let inventory = try common.load()
    var options = common.options()
    options.watchBinary = watchBinary
    options.healthDeadline = healthTimeout
    let report = try await runProvisioner(inventory, options) {
      dryRun ? try await $0.plan() : try await $0.up()
    }
    if dryRun { Recap.printPlan(report) }
    Recap.print(report, verb: dryRun ? "plan" : "up")
    if report.exitCode != 0 { throw ExitCode(report.exitCode) }
  }
}

struct DownCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "down",
    abstract: "Stop and remove everything fleetsync made; restore changed settings. Backup data is kept.")

  @OptionGroup var common: InventoryOptions
  @Flag(help: "Also delete the backup data directories (module paths). Cannot be undone.")
  var deleteData = false

  func run() async throws {
    let inventory = try common.load()
    var options = common.options()
    options.deleteData = deleteData
    let report = try await runProvisioner(inventory, options) { try await $0.down() }
    Recap.print(report, verb: "down")
    if report.exitCode != 0 { throw ExitCode(report.exitCode) }
  }
}

struct StatusCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "status", abstract: "Show every instance of the fleet: running, healthy, replication lag.")

  @OptionGroup var common: InventoryOptions

  func run() async throws {
    let inventory = try common.load()
    let client = SSHClient(threads: max(8, min(common.forks, 128)))
    let hosts = try await reportingFailures {
      let provisioner = try Provisioner(
        inventory: inventory, connector: SSHHostConnector(client: client), options: common.options())
      return await provisioner.status()
    }
    await client.shutdown()
    let table = StatusTable.render(hosts)
    for line in table.lines { print(line) }
    if !table.allHealthy { throw ExitCode(2) }
  }
}

/// Runs a provisioner over SSH with progress output; maps bad input to clear errors.
func runProvisioner(
  _ inventory: Inventory, _ options: ProvisionOptions, _ body: (Provisioner) async throws -> RunReport
) async throws -> RunReport {
  let client = SSHClient(threads: max(8, min(options.forks * 2, 128)))
  let progress = ProgressPrinter(total: inventory.hosts.count)
  do {
    let provisioner = try Provisioner(
      inventory: inventory, connector: SSHHostConnector(client: client), options: options,
      progress: { progress($0) })
    let report = try await body(provisioner)
    progress.finish()
    await client.shutdown()
    return report
  } catch let error as FleetError {
    progress.finish()
    await client.shutdown()
    throw Failure.report(error)
  } catch {
    progress.finish()
    await client.shutdown()
    throw error
  }
}
