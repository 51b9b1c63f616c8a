import ArgumentParser
import FleetCore
import FleetHealth
import FleetProvision
import FleetSSH
import FleetSupervise
import Foundation
import Logging
import ServiceLifecycle
import UnixSignals

struct SuperviseCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "supervise",
    abstract: "Check every instance on an interval and repair what fails (a long-running `heal`).",
    discussion: """
      Each pass is `fleetsync heal` over the hosts that are due: what does not run is started, what runs \
      but does not answer is restarted, what answers unhealthy (its backup is down, its source held) is \
      reported and left. An instance is started or restarted at most 5 times an hour, with a backoff of \
      10 s doubling to 10 min between; a host that cannot be reached is tried again after a backoff \
      doubling from the interval to 10 min. Every action is logged with its reason (standard error; the \
      journal under systemd). /healthz, /status (the last pass) and /metrics (Prometheus) are served on \
      --metrics-address:--metrics-port. Stops on SIGTERM or SIGINT, exit 0. See systemd/fleetsync-supervise.service.
      """)

  @OptionGroup var common: InventoryOptions
  @Option(help: "Seconds between the end of a pass and the next.")
  var interval = 30
  @Option(help: "Seconds to wait for repaired instances to answer healthy.")
  var deadline = 60
  @Option(help: "Address of the /healthz, /status and /metrics endpoint.")
  var metricsAddress = "127.0.0.1"
  @Option(help: "Port of the endpoint (0: pick a free one and log it).")
  var metricsPort = 9479

  func validate() throws {
    guard (1...86_400).contains(interval) else {
      throw ValidationError("--interval must be 1 to 86400 seconds")
    }
    guard (1...3_600).contains(deadline) else {
      throw ValidationError("--deadline must be 1 to 3600 seconds")
    }
    guard (0...65_535).contains(metricsPort) else {
      throw ValidationError("--metrics-port must be 0 to 65535")
    }
  }

  func run() async throws {
    let inventory = try common.load()
    let options = common.options()
    var logger = Logger(label: "fleetsync.supervise")
    logger.logLevel = .info
    // Each host's connection is kept from pass to pass: a pass costs a host one command.
    try await withProvisioner(
      inventory, options, operationTimeout: SSHHostConnector.checkTimeout, connections: .kept
    ) { provisioner in
      let supervisor = Supervisor(
        provisioner: provisioner, interval: .seconds(interval), deadline: deadline, logger: logger)
      let server = try await HealthServer.start(
        host: metricsAddress, port: metricsPort, source: supervisor.healthSource, logger: logger)
      let group = ServiceGroup(
        services: [supervisor], gracefulShutdownSignals: [.sigterm, .sigint], cancellationSignals: [],
        logger: logger)
      do {
        try await group.run()
      } catch {
        await server.close()
        throw error
      }
      await server.close()
    }
  }
}
