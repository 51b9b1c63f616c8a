import ArgumentParser
import FleetCore
import FleetProvision
import FleetSSH
import Foundation

#if canImport(Glibc)
  import Glibc
#endif

struct StatusCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "status", abstract: "Show every instance of the fleet: running, healthy, replication lag.",
    discussion: """
      Columns: RESTARTS since the host booted (by systemd, the pid-file supervisor or `fleetsync heal`), \
      UPTIME of the instance's process, LAG and QUEUE of a watcher, LAST OK (a transfer last succeeded) \
      and LAST ERROR (when the watcher's last error happened; its message is in --json and in \
      `fleetsync logs`).

      A host with an instance that is not healthy counts as failed. With --watch the command runs until \
      interrupted (Ctrl-C) and its exit status is that of the last reading.

      """ + ExitStatus.helpText)

  @OptionGroup var common: InventoryOptions
  @Flag(
    help: ArgumentHelp(
      "Print every host and instance as JSON instead of the table.",
      discussion: "The fields are described in docs/provisioning.md; the exit status is the same."))
  var json = false
  @Flag(
    help: ArgumentHelp(
      "Read the fleet again every --interval seconds until interrupted.",
      discussion: """
        On a terminal the table is redrawn in place; otherwise each reading follows the last, under a \
        line with its time, and with --json each reading is one line of JSON.
        """))
  var watch = false
  @Option(help: ArgumentHelp("Seconds between readings with --watch.", valueName: "seconds"))
  var interval: Double = 2

  func validate() throws {
    guard interval >= 0.5 else { throw ValidationError("--interval must be at least 0.5 seconds") }
  }

  func run() async throws {
    let inventory = try common.load()
    let options = common.options()
    let screen = StatusScreen(inPlace: watch && !json && isatty(STDOUT_FILENO) == 1, interval: interval)
    // `--watch` keeps each host's connection from one reading to the next.
    let last = try await withProvisioner(
      inventory, options, operationTimeout: SSHHostConnector.checkTimeout, connections: watch ? .kept : .fresh
    ) { provisioner in
      var hosts = await provisioner.status()
      while watch {
        try show(hosts, screen: screen)
        try await Task.sleep(for: .seconds(interval))
        hosts = await provisioner.status()
      }
      return hosts
    }
    try show(last, screen: screen)
    try ExitStatus(last.map(StatusTable.outcome)).throwIfNotOK()
  }

  private func show(_ hosts: [HostStatus], screen: StatusScreen) throws {
    if json {
      print(watch ? try StatusDocument(hosts).jsonLine() : try StatusDocument(hosts).json())
    } else if watch {
      screen.draw(StatusTable.render(hosts), summary: StatusTable.summary(hosts))
    } else {
      for line in StatusTable.render(hosts) { print(line) }
    }
    fflush(nil)
  }
}

/// How `status --watch` shows each reading: redrawn in place on a terminal, one after another
/// otherwise.
struct StatusScreen: Sendable {
  /// Redraw in place (a terminal, and not JSON).
  let inPlace: Bool
  /// Seconds between readings, for the title.
  let interval: Double

  /// Shows one reading under a title line with its time and `summary`.
  func draw(_ lines: [String], summary: String) {
    let time = Date().formatted(.iso8601.year().month().day().time(includingFractionalSeconds: false))
    let title = "fleetsync status every \(interval.formatted()) s: \(summary)  (\(time))"
    if inPlace {
      // Home, each line then clear to its end, then clear below: no flicker, nothing left over.
      let body = ([title, ""] + lines).map { $0 + "\u{1B}[K" }.joined(separator: "\n")
      print("\u{1B}[H" + body + "\n\u{1B}[J", terminator: "")
    } else {
      print("\n" + title)
      for line in lines { print(line) }
    }
  }
}
