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

/// The controller lock's option of `up` and `down`.
struct LockOptions: ParsableArguments {
  @Option(
    help: ArgumentHelp(
      "Seconds to wait when another `up`/`down` run on this inventory holds its lock (default: fail at once).",
      valueName: "seconds"))
  var waitLock: Int = 0

  func validate() throws {
    guard waitLock >= 0 else { throw ValidationError("--wait-lock must be 0 or more seconds") }
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
  /// Prints one line per host (outcome and what changed or went wrong), then the counts.
  static func print(_ report: RunReport, verb: String) {
    let width = max(4, report.hosts.map(\.host.count).max() ?? 4)
    Swift.print("")
    for host in report.hosts {
      let detail = host.outcome == .changed ? summary(host.plan) : host.outcome.detail
      let note = host.waiting.isEmpty ? "" : " (\(host.waiting.count) waiting for an unreachable backup)"
      Swift.print(
        host.host.padding(toLength: width, withPad: " ", startingAt: 0) + "  "
          + host.outcome.word.padding(toLength: 11, withPad: " ", startingAt: 0) + " " + detail + note)
      for warning in host.plan?.desired?.warnings ?? [] {
        Swift.print(String(repeating: " ", count: width + 2) + "warning: " + warning)
      }
      for note in host.notes {
        Swift.print(String(repeating: " ", count: width + 2) + "note: " + note)
      }
    }
    Swift.print("\n" + HostRecap.line(report.hosts.map(\.outcome), verb: verb))
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
    abstract: "Show what `up` would change on each host (diffs, secrets masked); change nothing.",
    discussion: ExitStatus.helpText)

  @OptionGroup var common: InventoryOptions
  @Option(help: "The fleetsync-watch binary to install (default: beside this program).")
  var watchBinary: String?
  @Flag(
    help: "Generate new module secrets although hosts already run fleetsync and the secrets file is missing.")
  var newSecrets = false

  func run() async throws {
    let inventory = try common.load()
    var options = common.options()
    options.watchBinary = watchBinary
    options.newSecrets = newSecrets
    let report = try await runProvisioner(inventory, options) { try await $0.plan() }
    Recap.printPlan(report)
    Recap.print(report, verb: "plan")
    try ExitStatus(report.hosts.map(\.outcome)).throwIfNotOK()
  }
}

struct UpCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "up", abstract: "Set up hot backup on every host of the inventory (idempotent).",
    discussion: ExitStatus.helpText)

  @OptionGroup var common: InventoryOptions
  @Flag(help: "Show the plan instead of applying it (same as `fleetsync plan`).")
  var dryRun = false
  @Option(help: "The fleetsync-watch binary to install (default: beside this program).")
  var watchBinary: String?
  @Option(help: "Seconds to wait for every instance to report healthy.")
  var healthTimeout = 60
  @Flag(
    help: "Generate new module secrets although hosts already run fleetsync and the secrets file is missing.")
  var newSecrets = false
  @OptionGroup var lock: LockOptions

  func run() async throws {
    let inventory = try common.load()
    var options = common.options()
    options.lockWait = .seconds(lock.waitLock)
    options.watchBinary = watchBinary
    options.healthDeadline = healthTimeout
    options.newSecrets = newSecrets
    let report = try await runProvisioner(inventory, options) {
      dryRun ? try await $0.plan() : try await $0.up()
    }
    if dryRun { Recap.printPlan(report) }
    Recap.print(report, verb: dryRun ? "plan" : "up")
    try ExitStatus(report.hosts.map(\.outcome)).throwIfNotOK()
  }
}

struct DownCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "down",
    abstract: "Stop and remove everything fleetsync made; restore changed settings. Backup data is kept.",
    discussion: ExitStatus.helpText)

  @OptionGroup var common: InventoryOptions
  @Flag(help: "Also delete the backup data directories (module paths). Cannot be undone.")
  var deleteData = false
  @OptionGroup var lock: LockOptions

  func run() async throws {
    let inventory = try common.load()
    var options = common.options()
    options.lockWait = .seconds(lock.waitLock)
    options.deleteData = deleteData
    let report = try await runProvisioner(inventory, options) { try await $0.down() }
    Recap.print(report, verb: "down")
    try ExitStatus(report.hosts.map(\.outcome)).throwIfNotOK()
  }
}

/// Runs a provisioner over SSH with progress output; maps bad input to clear errors.
func runProvisioner(
  _ inventory: Inventory, _ options: ProvisionOptions, _ body: (Provisioner) async throws -> RunReport
) async throws -> RunReport {
  let progress = ProgressPrinter(total: inventory.hosts.count)
  defer { progress.finish() }
  return try await withProvisioner(
    inventory, options, threads: max(8, min(options.forks * 2, 128)), progress: { progress($0) }, body)
}
