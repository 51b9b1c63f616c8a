import ArgumentParser
import FleetCore
import FleetProvision
import FleetSSH
import Foundation

struct LogsCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "logs",
    abstract: "Show the recent log of a host's instances (the journal under systemd, else their log files).",
    discussion: """
      INSTANCE is `watch@DIR:BACKUP:MODULE`, `rsyncd@NAME`, a directory's name (all its watchers) or a \
      daemon's; without it, every instance of the host. With more than one, each line starts with the \
      instance. -f follows: the log is read again every second until interrupted.

      """ + ExitStatus.helpText)

  @OptionGroup var common: InventoryOptions
  @Argument(help: "The inventory's name of the host.")
  var host: String
  @Argument(help: "Only this instance (see below).")
  var instance: String?
  @Option(name: [.customShort("n"), .long], help: "How many of the last lines to show of each instance.")
  var lines = 100
  @Flag(name: .short, help: "Follow: keep showing new lines until interrupted.")
  var follow = false

  func validate() throws {
    guard (1...100_000).contains(lines) else { throw ValidationError("-n must be 1 to 100000") }
  }

  func run() async throws {
    let inventory = try common.load()
    let options = common.options()
    let (host, instance, lines, follow) = (self.host, self.instance, self.lines, self.follow)
    try await withProvisioner(inventory, options, threads: 4, connections: .kept) { provisioner in
      let services = try provisioner.logInstances(host: host, filter: instance)
      var positions: [String: LogPosition] = [:]
      repeat {
        let chunks = try await provisioner.readLogs(host: host, services, lines: lines, after: positions)
        for chunk in chunks {
          for line in chunk.lines { print(services.count > 1 ? "\(chunk.instance): \(line)" : line) }
          if let next = chunk.next { positions[chunk.instance] = next }
        }
        fflush(nil)
        if follow { try await Task.sleep(for: .seconds(1)) }
      } while follow && !Task.isCancelled
    }
  }
}
