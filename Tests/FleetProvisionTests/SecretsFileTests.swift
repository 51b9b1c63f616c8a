import FleetCore
import FleetInventory
import Foundation
import Testing

@testable import FleetProvision

/// Issue 9 §6: `up` without the secrets file must not silently give a running fleet new secrets.
@Suite struct SecretsFileTests {
  /// The fleet after a first `up`, with its secrets file gone (a fresh checkout elsewhere, say).
  func provisionedFleetWithoutSecretsFile() async throws -> FakeFleet {
    let fleet = try FakeFleet()
    _ = try await fleet.up()
    let secrets = try fleet.inventory().secretsFile
    #expect(FileManager.default.fileExists(atPath: secrets))
    try FileManager.default.removeItem(atPath: secrets)
    for host in fleet.hosts.values { host.heal() }
    return fleet
  }

  @Test func aMissingSecretsFileIsRefusedWhenHostsRunFleetsync() async throws {
    let fleet = try await provisionedFleetWithoutSecretsFile()
    for run in ["plan", "up"] {
      let provisioner = try fleet.provisioner()
      let error = await #expect(throws: FleetError.self) {
        _ = run == "up" ? try await provisioner.up() : try await provisioner.plan()
      }
      #expect(error?.code == .localState)
      #expect(error?.message.contains("is missing, but bk1, nfs1, nfs2 already run fleetsync") == true)
      #expect(error?.message.contains("--new-secrets") == true)
    }
    for host in fleet.hosts.values {
      #expect(host.state.steps.filter(\.mutates) == [], "\(host.name) was touched")
    }
    #expect(
      !FileManager.default.fileExists(atPath: try fleet.inventory().secretsFile), "no new secrets saved")
  }

  @Test func newSecretsOnPurposeReachEveryHost() async throws {
    let fleet = try await provisionedFleetWithoutSecretsFile()
    let before = fleet["bk1"].state.files[Layout.rsyncdSecrets("main")]
    let report = try await fleet.provisioner(newSecrets: true).up()
    #expect(report.hosts.allSatisfy { $0.outcome == .changed }, "\(report.hosts.map(\.outcome))")
    #expect(fleet["bk1"].state.files[Layout.rsyncdSecrets("main")] != before)
    #expect(FileManager.default.fileExists(atPath: try fleet.inventory().secretsFile))
  }

  @Test func newSecretsWithLimitIsRefused() async throws {
    let fleet = try await provisionedFleetWithoutSecretsFile()
    let error = await #expect(throws: FleetError.self) {
      _ = try await fleet.provisioner(limit: ["nfs1"], newSecrets: true).up()
    }
    #expect(error?.code == .invalidInput)
  }

  @Test func aFirstRunWithoutSecretsFileIsFine() async throws {
    let fleet = try FakeFleet()
    #expect(try await fleet.up().values.allSatisfy { $0.outcome == .changed })
  }
}
