import FleetCore
import FleetInventory
import Foundation
import Testing

@testable import FleetProvision

/// The order in which ``Applier`` changes a node, and what an interrupted run leaves behind.
@Suite struct ApplierTests {
  /// The apply phase of each step: directories, widened manifest, files, units, sysctl, stops,
  /// removals (with the boot script's links), starts (with the boot script's), final manifest, health. Facts and reads are not part of applying.
  static func phases(_ steps: [FakeStep]) -> [String] {
    var manifestWrites = 0
    return steps.compactMap { step -> String? in
      switch step {
      case .facts, .read, .status, .lease, .resume, .xattrCheck, .unknown: return nil
      case .makeDirectories: return "1 directories"
      case .write(Layout.manifest):
        manifestWrites += 1
        return manifestWrites == 1 ? "2 widened manifest" : "9 final manifest"
      case .write: return "3 files"
      case .reloadUnits: return "4 units"
      case .applySysctl: return "5 sysctl"
      case .stop: return "6 stop"
      case .remove: return "7 remove"
      case .bootScript(let enabled): return enabled ? "8 start" : "7 remove"
      case .start, .restart: return "8 start"
      case .health: return "10 health"
      case .restoreSysctl, .removeDirectories: return "down"
      }
    }
  }

  /// The phases in order, each once.
  static func phaseOrder(_ steps: [FakeStep]) -> [String] {
    phases(steps).reduce(into: []) { order, phase in if order.last != phase { order.append(phase) } }
  }

  static func written(_ steps: [FakeStep]) -> Set<String> {
    Set(steps.compactMap { if case .write(let path) = $0, path != Layout.manifest { path } else { nil } })
  }

  @Test func aNewHostIsSetUpInOrder() async throws {
    let fleet = try FakeFleet(systemd: ["bk1"])
    let reports = try await fleet.up()
    let nfs1 = fleet["nfs1"].state
    #expect(
      Self.phaseOrder(nfs1.steps) == [
        "1 directories", "2 widened manifest", "3 files", "5 sysctl", "8 start", "9 final manifest",
        "10 health",
      ])
    let desired = try #require(reports["nfs1"]?.plan?.desired)
    #expect(Self.written(nfs1.steps) == Set(desired.files.map(\.path)))
    let bk1 = fleet["bk1"].state
    #expect(
      Self.phaseOrder(bk1.steps) == [
        "1 directories", "2 widened manifest", "3 files", "4 units", "8 start", "9 final manifest",
        "10 health",
      ])
    #expect(bk1.manifestWrites.count == 2 && bk1.manifestWrites[0] == bk1.manifestWrites[1])
  }

  @Test func anEditWidensTheManifestStopsRemovesThenStarts() async throws {
    let fleet = try FakeFleet()
    _ = try await fleet.up()
    fleet["nfs1"].heal()
    let reports = try await fleet.up(fakeInventoryEdited)
    #expect(reports["nfs1"]?.outcome == .changed)
    let nfs1 = fleet["nfs1"].state
    #expect(
      Self.phaseOrder(nfs1.steps) == [
        "1 directories", "2 widened manifest", "3 files", "6 stop", "7 remove", "8 start", "9 final manifest",
        "10 health",
      ])
    #expect(nfs1.steps.contains(.stop("watch@home:bk1:home")))
    #expect(nfs1.steps.contains(.start("watch@docs:bk1:home")))
    #expect(
      nfs1.steps.contains(
        .remove([Layout.watchConf("home:bk1:home"), Layout.watchPassword("home:bk1:home")])))
    // The widened manifest lists the old and the new instance and their files; the final one only the new.
    let (widened, final) = (nfs1.manifestWrites[0], nfs1.manifestWrites[1])
    #expect(Set(widened.services.keys) == ["watch@home:bk1:home", "watch@docs:bk1:home"])
    #expect(widened.files[Layout.watchConf("home:bk1:home")] != nil)
    #expect(widened.files[Layout.watchConf("docs:bk1:home")] != nil)
    #expect(Set(final.services.keys) == ["watch@docs:bk1:home"])
    #expect(final.files[Layout.watchConf("home:bk1:home")] == nil)
    #expect(nfs1.differencesFromRecord == [])
  }

  /// How many changing steps a clean run of `yaml` makes on `host` after `before` was applied.
  static func cleanRunSteps(host: String, before: String?, yaml: String) async throws -> Int {
    let fleet = try FakeFleet()
    if let before { _ = try await fleet.up(before) }
    fleet[host].heal()
    _ = try await fleet.up(yaml)
    return fleet[host].state.steps.filter(\.mutates).count
  }

  /// For every step of a run: the connection to `host` is lost at that step; what the node holds
  /// is all on its record; the next run converges and a third changes nothing.
  static func interruptEveryStep(host: String, before: String?, yaml: String) async throws {
    let steps = try await cleanRunSteps(host: host, before: before, yaml: yaml)
    #expect(steps >= 5)
    for k in 1...steps {
      let fleet = try FakeFleet()
      if let before { _ = try await fleet.up(before) }
      fleet[host].heal()
      fleet[host].loseConnection(atStep: k)
      let interrupted = try await fleet.up(yaml)
      #expect(interrupted[host]?.failure?.contains("connection lost") == true, "step \(k)")
      #expect(fleet[host].state.offRecord == [], "step \(k)")

      fleet[host].heal()
      let again = try await fleet.up(yaml)
      #expect(again.values.allSatisfy { $0.failure == nil }, "step \(k)")
      #expect(fleet[host].state.differencesFromRecord == [], "step \(k)")
      let third = try await fleet.provisioner(yaml).plan()
      #expect(third.hosts.allSatisfy { $0.outcome == .ok }, "step \(k)")
      #expect(fleet.unknownCommands == [])
    }
  }

  @Test(arguments: ["nfs1", "bk1"])
  func anInterruptedFirstRunIsOnRecordAndTheNextConverges(host: String) async throws {
    try await Self.interruptEveryStep(host: host, before: nil, yaml: fakeInventory)
  }

  @Test func anInterruptedEditIsOnRecordAndTheNextConverges() async throws {
    try await Self.interruptEveryStep(host: "nfs1", before: fakeInventory, yaml: fakeInventoryEdited)
  }

  /// Issue 9: a run cut off after writing a new config but before restarting its instance must not
  /// leave the old config running: the next run restarts it.
  @Test func anInterruptedRestartHappensOnTheNextRun() async throws {
    let edited = fakeInventory.replacingOccurrences(
      of: #"excludes: ["*.tmp"]"#, with: #"excludes: ["*.log"]"#)
    try await Self.interruptEveryStep(host: "nfs1", before: fakeInventory, yaml: edited)
  }
}
