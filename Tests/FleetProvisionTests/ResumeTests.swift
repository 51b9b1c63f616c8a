import FleetCore
import Foundation
import Testing

@testable import FleetProvision

/// `fleetsync resume` over the fake fleet: which hosts and watchers it asks, and how it reports.
@Suite struct ResumeTests {
  private func releaseDeletes(directories: [String] = []) -> ResumeRequest {
    var request = ResumeRequest()
    request.releaseDeletes = true
    request.directories = directories
    request.waitSeconds = 7
    return request
  }

  private func resumes(_ host: FakeRemoteHost) -> [FakeStep] {
    host.state.steps.filter { if case .resume = $0 { true } else { false } }
  }

  @Test func asksTheWatchersOfTheSelectedSourcesOnly() async throws {
    let fleet = try FakeFleet()
    _ = try await fleet.up()
    for host in fleet.hosts.values { host.heal() }
    let hosts = try await fleet.provisioner(limit: ["nfs1"]).resume(releaseDeletes())
    #expect(hosts.map(\.host) == ["nfs1"])
    #expect(hosts[0].outcome == .ok)
    #expect(
      hosts[0].instances == [
        InstanceResume(outcome: "taken", instance: "watch@home:bk1:home", detail: "release-deletes: taken")
      ])
    #expect(
      resumes(fleet["nfs1"]) == [
        .resume(config: Layout.watchConf("home:bk1:home"), flags: ["--deletes", "--wait", "7"])
      ])
    #expect(resumes(fleet["nfs2"]).isEmpty && fleet["bk1"].state.steps.isEmpty)
    #expect(fleet.unknownCommands.isEmpty)
  }

  @Test func massChangeAsksTheAgentToClearTheAlarm() async throws {
    let fleet = try FakeFleet()
    _ = try await fleet.up()
    for host in fleet.hosts.values { host.heal() }
    var request = ResumeRequest()
    request.clearMassChange = true
    request.waitSeconds = 9
    let hosts = try await fleet.provisioner(limit: ["nfs1"]).resume(request)
    #expect(hosts.map(\.outcome) == [.ok])
    #expect(
      resumes(fleet["nfs1"]) == [
        .resume(config: Layout.watchConf("home:bk1:home"), flags: ["--mass-change", "--wait", "9"])
      ])
  }

  @Test func directorySelectorsPickWatchersAndUnknownNamesAreRefusedBeforeAnything() async throws {
    let fleet = try FakeFleet()
    _ = try await fleet.up()
    for host in fleet.hosts.values { host.heal() }
    let hosts = try await fleet.provisioner().resume(releaseDeletes(directories: ["proj"]))
    #expect(hosts.map(\.host) == ["nfs2"])
    #expect(hosts[0].instances.map(\.instance) == ["watch@proj:bk1:proj"])

    for host in fleet.hosts.values { host.heal() }
    await #expect {
      try await fleet.provisioner().resume(releaseDeletes(directories: ["prj"]))
    } throws: { error in
      let fleetError = error as? FleetError
      return fleetError?.code.meaning == .invalidInput && fleetError?.message.contains("proj") == true
    }
    await #expect(throws: FleetError.self) { try await fleet.provisioner().resume(ResumeRequest()) }
    #expect(fleet.hosts.values.allSatisfy { $0.state.steps.isEmpty })
  }

  @Test func aStoppedWatcherOrAnUnreachableHostIsNotOK() async throws {
    let fleet = try FakeFleet()
    _ = try await fleet.up()
    fleet["nfs1"].change { $0.running["watch@home:bk1:home"] = nil }
    let hosts = try await fleet.provisioner(unreachable: ["nfs2"]).resume(releaseDeletes())
    let byName = Dictionary(uniqueKeysWithValues: hosts.map { ($0.host, $0) })
    #expect(byName["nfs1"]?.instances.first?.outcome == "not taken")
    #expect(byName["nfs1"]?.outcome.word == "failed")
    #expect(byName["nfs1"]?.outcome.detail.contains("watch@home:bk1:home: not taken") == true)
    #expect(byName["nfs2"]?.outcome.word == "unreachable")
    #expect(ExitStatus(hosts.map(\.outcome)) == .failedAndUnreachable)
  }

  @Test func aWatcherNotSetUpSaysSo() async throws {
    let fleet = try FakeFleet()
    let hosts = try await fleet.provisioner(limit: ["nfs1"]).resume(releaseDeletes())
    #expect(hosts[0].instances.first?.outcome == "failed")
    #expect(hosts[0].instances.first?.detail.contains("fleetsync up") == true)
  }
}
