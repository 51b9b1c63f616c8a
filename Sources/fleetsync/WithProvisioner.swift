import FleetCore
import FleetInventory
import FleetProvision
import FleetSSH

/// How a command reaches its hosts: the SSH client, the connector and the provisioner every
/// subcommand that works on hosts is built on, set up in one place.
enum Connections {
  /// Fresh connections for each host (a one-shot command).
  case fresh
  /// One connection per host kept for every use in the command (`supervise`, ``ConnectionPool``).
  case kept
}

/// Runs `body` with a provisioner of `inventory` over SSH; a ``FleetCore/FleetError`` it throws is
/// reported (``reportingFailures(_:)``).
///
/// - Parameters:
///   - threads: the SSH client's worker threads (default: the forks, 8 to 128).
///   - operationTimeout: how long one remote command may run (nil: FleetSSH's default).
///   - connections: fresh ones, or kept from one use to the next (closed when `body` returns).
func withProvisioner<T>(
  _ inventory: Inventory, _ options: ProvisionOptions, threads: Int? = nil, operationTimeout: Duration? = nil,
  connections: Connections = .fresh, progress: @escaping @Sendable (ProgressEvent) -> Void = { _ in },
  _ body: (Provisioner) async throws -> T
) async throws -> T {
  try await reportingFailures {
    try await SSHClient.withClient(threads: threads ?? max(8, min(options.forks, 128))) { client in
      let ssh = SSHHostConnector(client: client, operationTimeout: operationTimeout)
      let pool = connections == .kept ? ConnectionPool(ssh) : nil
      let provisioner = try Provisioner(
        inventory: inventory, connector: pool ?? ssh, options: options, progress: progress)
      do {
        let result = try await body(provisioner)
        await pool?.closeAll()
        return result
      } catch {
        await pool?.closeAll()
        throw error
      }
    }
  }
}
