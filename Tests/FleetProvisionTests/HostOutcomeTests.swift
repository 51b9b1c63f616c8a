import FleetCore
import FleetInventory
import FleetSSH
import Foundation
import Testing

@testable import FleetProvision

/// A logged-in host that answers every command like a fresh node and fails as told: its commands with
/// `runError`, its SFTP writes with `writeError`.
private struct TroubledHost: RemoteHost {
  var runError: FleetError?
  var writeError: FleetError?

  func run(_ command: String) async throws -> CommandOutput {
    if let runError { throw runError }
    return CommandOutput(status: 0, stdout: "@@systemd\nno\n@@end\n", stderr: "")
  }

  func write(_ bytes: [UInt8], to path: String, mode: Int) async throws {
    if let writeError { throw writeError }
  }

  func upload(localPath: String, to path: String, mode: Int) async throws {
    if let writeError { throw writeError }
  }

  func read(_ path: String) async throws -> [UInt8]? { nil }

  func close() async {}
}

/// Connects every host the same way: to `host`, or failing with `error`.
private struct Connector: HostConnector {
  var error: FleetError?
  var host = TroubledHost()

  func connect(_ ref: HostRef) async throws -> any RemoteHost {
    if let error { throw error }
    return host
  }
}

/// How the provisioner reports a host by what happened to it: the meaning of the error its SSH layer
/// raised, not the error's name.
@Suite struct ProvisionerHostOutcomeTests {
  /// The outcome of each host (bk1, nfs1) when `command` runs with `connector`.
  private func outcomes(
    _ connector: Connector, _ command: (Provisioner) async throws -> RunReport
  ) async throws -> [HostOutcome] {
    let dir = NSTemporaryDirectory() + "fleetsync-outcome-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let inventory = try Inventory.parse(
      yaml: """
        backups:
          bk1: { address: 10.0.0.21, daemons: { main: { modules: { home: /srv/backup/home } } } }
        sources:
          nfs1:
            address: 10.0.0.11
            directories:
              home: { path: /srv/nfs/home, to: [bk1/home] }
        """, file: dir + "/fleet.yaml")
    var options = ProvisionOptions()
    options.watchBinary = "/bin/true"
    let provisioner = try Provisioner(inventory: inventory, connector: connector, options: options)
    return try await command(provisioner).hosts.map(\.outcome)
  }

  @Test func sftpWriteFailureOnALoggedInHostIsFailed() async throws {
    let full = FleetError(
      .sshSFTP, "writing /etc/fleetsync/manifest.json failed: no space left on the device")
    let outcomes = try await outcomes(Connector(host: TroubledHost(writeError: full))) { try await $0.up() }
    #expect(outcomes == [.failed(full.description), .failed(full.description)])
  }

  @Test func timeoutAfterLoginIsFailed() async throws {
    let late = FleetError(.sshTimeout, "running the command on root@10.0.0.21:22 did not finish within 300s")
    let outcomes = try await outcomes(Connector(host: TroubledHost(runError: late))) { try await $0.down() }
    #expect(outcomes == [.failed(late.description), .failed(late.description)])
  }

  @Test func connectionLostAfterLoginIsFailed() async throws {
    let lost = FleetError(
      .sshConnectionLost, "connection to root@10.0.0.21:22 was lost during reading output")
    let outcomes = try await outcomes(Connector(host: TroubledHost(runError: lost))) { try await $0.plan() }
    #expect(outcomes == [.failed(lost.description), .failed(lost.description)])
  }

  @Test func refusedConnectIsUnreachable() async throws {
    let refused = FleetError(.sshConnect, "root@10.0.0.21:22 refused the connection")
    let outcomes = try await outcomes(Connector(error: refused)) { try await $0.down() }
    #expect(outcomes == [.unreachable(refused.description), .unreachable(refused.description)])
  }

  @Test func refusedLoginIsAuth() async throws {
    let refused = FleetError(.sshAuth, "root@10.0.0.21:22 refused the key /root/.ssh/id_ed25519")
    let outcomes = try await outcomes(Connector(error: refused)) { try await $0.down() }
    #expect(outcomes == [.auth(refused.description), .auth(refused.description)])
  }

  @Test func errorsFromOutsideFleetsyncAreAFailedStep() {
    #expect(Provisioner.outcome(for: CocoaError(.fileReadNoPermission)).word == "failed")
  }
}
