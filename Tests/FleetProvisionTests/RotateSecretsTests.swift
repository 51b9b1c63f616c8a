import FleetCore
import FleetInventory
import Foundation
import Testing

@testable import FleetProvision

/// `rotate-secrets` of the real ``Provisioner`` over in-memory nodes: both ends switched, the store
/// and the nodes' records kept in step, a rotation cut off finished by the next run, and `up`
/// meanwhile never handing out a secret the other end refuses.
@Suite struct RotateSecretsTests {
  static let home = "home:bk1:home"
  static let proj = "proj:bk1:proj"

  /// A fleet after a first `up`, its nodes' step logs cleared.
  func provisioned() async throws -> FakeFleet {
    let fleet = try FakeFleet()
    _ = try await fleet.up()
    for host in fleet.hosts.values { host.heal() }
    return fleet
  }

  func store(_ fleet: FakeFleet) throws -> SecretStore {
    try SecretStore(path: fleet.inventory().secretsFile)
  }

  /// The secret each end of `module` holds: the daemon's line, and the watcher's password file.
  func ends(_ fleet: FakeFleet, _ module: String, watcher: (host: String, instance: String)) -> [Secret?] {
    let daemon = fleet["bk1"].state.files[Layout.rsyncdSecrets("main")]
    let password = fleet[watcher.host].state.files[Layout.watchPassword(watcher.instance)]
    return [
      daemon.flatMap { SecretFiles.daemonSecret(module: module, in: $0) },
      password.flatMap { SecretFiles.password(in: $0) },
    ]
  }

  func outcomes(_ report: RotationReport) -> [String: ModuleRotation.Outcome] {
    Dictionary(uniqueKeysWithValues: report.modules.map { ($0.module, $0.outcome) })
  }

  @Test func everyModuleGetsANewSecretAtBothEndsAndASecondUpChangesNothing() async throws {
    let fleet = try await provisioned()
    let before = try store(fleet)
    let report = try await fleet.provisioner().rotateSecrets()
    #expect(outcomes(report) == ["bk1/home": .rotated, "bk1/proj": .rotated])
    #expect(report.hosts.map(\.host) == ["nfs1", "nfs2", "bk1"])
    #expect(report.hosts.allSatisfy { $0.outcome == .changed }, "\(report.hosts)")
    let after = try store(fleet)
    #expect(after.pendingKeys == [])
    for (module, watcher) in [("home", ("nfs1", Self.home)), ("proj", ("nfs2", Self.proj))] {
      let secret = try #require(after.current("bk1/\(module)"))
      #expect(secret != before.current("bk1/\(module)"))
      #expect(ends(fleet, module, watcher: watcher) == [secret, secret])
    }
    // Nothing restarted, and only files were written: no secret travels in a command line.
    for host in fleet.hosts.values {
      let steps = host.state.steps
      #expect(steps.allSatisfy { [.facts, .lease].contains($0) || $0.isFileStep }, "\(host.name): \(steps)")
      #expect(host.state.differencesFromRecord == [], "\(host.name)")
    }
    #expect(fleet.unknownCommands == [])

    for host in fleet.hosts.values { host.heal() }
    let up = try await fleet.up()
    #expect(up.values.allSatisfy { $0.outcome == .ok }, "\(up.mapValues(\.outcome))")
    for host in fleet.hosts.values {
      #expect(host.state.steps.filter(\.mutates) == [], "\(host.name): a second up changed something")
    }
  }

  @Test func limitRotatesTheModulesItSelectsAtBothEnds() async throws {
    let fleet = try await provisioned()
    let before = try store(fleet)
    let report = try await fleet.provisioner(limit: ["nfs2"]).rotateSecrets()
    #expect(outcomes(report) == ["bk1/proj": .rotated])
    #expect(report.hosts.map(\.host) == ["nfs2", "bk1"], "bk1 holds the other end, though not named")
    let after = try store(fleet)
    #expect(after.current("bk1/home") == before.current("bk1/home"))
    let home = before.current("bk1/home")
    #expect(ends(fleet, "home", watcher: ("nfs1", Self.home)) == [home, home])
    #expect(fleet["nfs1"].state.steps.isEmpty, "nfs1 has no end of bk1/proj")
  }

  @Test func aModuleWithASecretFileIsSkippedAndTheOthersRotate() async throws {
    let secretFile = NSTemporaryDirectory() + "fleetsync-own-secret-\(UUID().uuidString)"
    try "my-own-secret\n".write(toFile: secretFile, atomically: true, encoding: .utf8)
    let yaml = fakeInventory.replacingOccurrences(
      of: "proj: /srv/backup/proj", with: "proj: { path: /srv/backup/proj, secret_file: \(secretFile) }")
    let fleet = try FakeFleet(yaml)
    _ = try await fleet.up(yaml)
    let report = try await fleet.provisioner(yaml).rotateSecrets()
    #expect(outcomes(report) == ["bk1/home": .rotated, "bk1/proj": .skipped])
    let skipped = try #require(report.modules.first { $0.module == "bk1/proj" })
    #expect(skipped.detail.contains("secret_file \(secretFile)") && skipped.detail.contains("fleetsync up"))
    #expect(
      ends(fleet, "proj", watcher: ("nfs2", Self.proj)) == [Secret("my-own-secret"), Secret("my-own-secret")])
    #expect(!report.hosts.contains { $0.host == "nfs2" }, "no end of a rotated module there")
    #expect(ExitStatus(report.hosts.map(\.outcome)) == .ok)
  }

  @Test func aWatcherThatCannotBeWrittenLeavesItsModulePendingAndTheNextRunFinishesIt() async throws {
    let fleet = try await provisioned()
    let old = try #require(try store(fleet).current("bk1/home"))
    fleet["nfs1"].failSteps { $0 == .write(Layout.watchPassword(Self.home)) }
    let first = try await fleet.provisioner().rotateSecrets()
    #expect(outcomes(first) == ["bk1/home": .failed, "bk1/proj": .rotated])
    #expect(first.hosts.first { $0.host == "nfs1" }?.outcome.word == "failed")
    #expect(ExitStatus(first.hosts.map(\.outcome)) == .someFailed)
    let detail = try #require(first.modules.first { $0.module == "bk1/home" }?.detail)
    #expect(detail.contains("rsyncd@main on bk1 has the new secret") && detail.contains("rotate-secrets"))
    let pending = try #require(try store(fleet).pending("bk1/home"))
    #expect(
      try store(fleet).current("bk1/home") == old,
      "the store keeps the old secret until every end has the new")
    #expect(ends(fleet, "home", watcher: ("nfs1", Self.home)) == [pending, old])

    fleet["nfs1"].heal()
    let second = try await fleet.provisioner().rotateSecrets()
    #expect(outcomes(second) == ["bk1/home": .rotated, "bk1/proj": .rotated])
    #expect(second.hosts.first { $0.host == "nfs1" }?.outcome == .changed)
    // Every run rotates every selected module: bk1/proj gets another new secret; bk1/home's daemon
    // had its new one already.
    #expect(second.hosts.first { $0.host == "bk1" }?.changes == ["rsyncd@main: proj"])
    let done = try store(fleet)
    #expect(done.pendingKeys == [] && done.current("bk1/home") == pending, "finished with the same secret")
    #expect(ends(fleet, "home", watcher: ("nfs1", Self.home)) == [pending, pending])
    for host in fleet.hosts.values { host.heal() }
    #expect(try await fleet.up().values.allSatisfy { $0.outcome == .ok })
  }

  @Test func upMeanwhileGivesTheWatcherTheSecretItsDaemonHolds() async throws {
    let fleet = try await provisioned()
    fleet["nfs1"].failSteps { $0 == .write(Layout.watchPassword(Self.home)) }
    _ = try await fleet.provisioner().rotateSecrets()
    let pending = try #require(try store(fleet).pending("bk1/home"))
    for host in fleet.hosts.values { host.heal() }

    let up = try await fleet.provisioner(limit: ["nfs1"]).up()
    let nfs1 = try #require(up.hosts.first { $0.host == "nfs1" })
    #expect(nfs1.outcome == .changed)
    #expect(nfs1.notes.contains { $0.contains("rotation of bk1/home has not finished") }, "\(nfs1.notes)")
    #expect(ends(fleet, "home", watcher: ("nfs1", Self.home)) == [pending, pending])
    #expect(try store(fleet).pending("bk1/home") == pending, "still rotate-secrets' to finish")
    let finished = try await fleet.provisioner().rotateSecrets()
    #expect(outcomes(finished) == ["bk1/home": .rotated, "bk1/proj": .rotated])
    #expect(try store(fleet).current("bk1/home") == pending)
  }

  @Test func aDaemonThatCannotBeWrittenChangesNothingElseAndUpKeepsTheOldSecret() async throws {
    let fleet = try await provisioned()
    let old = try store(fleet)
    fleet["bk1"].failSteps { $0 == .write(Layout.rsyncdSecrets("main")) }
    let report = try await fleet.provisioner().rotateSecrets()
    #expect(outcomes(report) == ["bk1/home": .failed, "bk1/proj": .failed])
    #expect(fleet["nfs1"].state.steps.filter(\.mutates) == [], "no watcher got a secret its daemon refuses")
    #expect(fleet["nfs2"].state.steps.filter(\.mutates) == [])
    #expect(try store(fleet).pendingKeys == ["bk1/home", "bk1/proj"])

    for host in fleet.hosts.values { host.heal() }
    let up = try await fleet.up()
    #expect(
      up.values.allSatisfy { $0.outcome == .ok }, "up keeps what both ends hold: \(up.mapValues(\.outcome))")
    #expect(
      ends(fleet, "home", watcher: ("nfs1", Self.home)) == [old.current("bk1/home"), old.current("bk1/home")])
  }

  @Test func anUnreachableEndLeavesItsModuleUntouched() async throws {
    let fleet = try await provisioned()
    let old = try store(fleet)
    let report = try await fleet.provisioner(unreachable: ["nfs2"]).rotateSecrets()
    #expect(outcomes(report) == ["bk1/home": .rotated, "bk1/proj": .failed])
    #expect(report.modules.first { $0.module == "bk1/proj" }?.detail.contains("nfs2") == true)
    #expect(report.hosts.first { $0.host == "nfs2" }?.outcome.word == "unreachable")
    #expect(ExitStatus(report.hosts.map(\.outcome)) == .someUnreachable)
    #expect(
      ends(fleet, "proj", watcher: ("nfs2", Self.proj)) == [old.current("bk1/proj"), old.current("bk1/proj")])
    #expect(try store(fleet).pendingKeys == [], "nothing pending for a module not started")
  }

  @Test func aModuleNotSetUpYetIsSkipped() async throws {
    let fleet = try FakeFleet()
    _ = try await fleet.provisioner(limit: ["bk1", "nfs1"]).up()
    let report = try await fleet.provisioner().rotateSecrets()
    #expect(outcomes(report) == ["bk1/home": .rotated, "bk1/proj": .skipped])
    #expect(report.modules.first { $0.module == "bk1/proj" }?.detail.contains("not set up on nfs2") == true)
  }
}

extension FakeStep {
  /// A file read or written (SFTP), as opposed to a command.
  var isFileStep: Bool {
    switch self {
    case .read, .write: true
    default: false
    }
  }
}
