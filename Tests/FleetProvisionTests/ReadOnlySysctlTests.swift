import FleetCore
import FleetInventory
import Foundation
import Testing

@testable import FleetProvision

/// `up` on a source whose /proc/sys is read-only (containers, some VPS) — issue 8.
@Suite struct ReadOnlySysctlTests {
  /// ``fakeInventory`` with nfs1 asking for `watches` inotify watches.
  func inventory(watches: Int) -> String {
    fakeInventory.replacingOccurrences(
      of: "      address: 10.0.0.11\n",
      with: "      address: 10.0.0.11\n      inotify: { max_user_watches: \(watches) }\n")
  }

  /// Makes `host`'s /proc/sys read-only, with `watches` inotify watches and the other limits above the defaults.
  func makeReadOnly(_ host: FakeRemoteHost, watches: Int) {
    host.change {
      $0.sysctlReadOnly = true
      $0.sysctl = [
        "fs.inotify.max_user_watches": watches, "fs.inotify.max_user_instances": 8192,
        "fs.inotify.max_queued_events": 1_000_000,
      ]
    }
  }

  @Test func currentValuesThatSufficeAreAWarningAndTheHostIsFine() async throws {
    let fleet = try FakeFleet()
    makeReadOnly(fleet["nfs1"], watches: 2_000_000)
    let reports = try await fleet.up(inventory(watches: 1_048_576))
    #expect(reports["nfs1"]?.outcome == .changed, "\(String(describing: reports["nfs1"]?.failure))")
    let warnings = reports["nfs1"]?.plan?.desired?.warnings ?? []
    #expect(warnings.count == 1)
    #expect(warnings.first?.contains("read-only") == true)
    #expect(warnings.first?.contains("fs.inotify.max_user_watches 2000000 ≥ 1048576") == true)
    let nfs1 = fleet["nfs1"].state
    #expect(!nfs1.steps.contains(.applySysctl))
    #expect(nfs1.files[Layout.sysctl] == nil, "no sysctl file where it cannot apply")
    #expect(nfs1.manifest?.sysctl.isEmpty == true, "nothing to restore on down")
    #expect(reports["nfs2"]?.plan?.desired?.warnings == [])
    fleet["nfs1"].heal()
    #expect(try await fleet.up(inventory(watches: 1_048_576))["nfs1"]?.outcome == .ok)
  }

  @Test func valuesBelowTheInventoryFailTheHostWithWhatToDoAndTouchNothing() async throws {
    let fleet = try FakeFleet()
    makeReadOnly(fleet["nfs1"], watches: 8192)
    let reports = try await fleet.up(inventory(watches: 1_048_576))
    let failure = try #require(reports["nfs1"]?.failure)
    #expect(failure.contains("fs.inotify.max_user_watches is 8192, below the 1048576 the inventory asks"))
    #expect(failure.contains("read-only"))
    #expect(failure.contains("sysctl -w fs.inotify.max_user_watches=1048576"))
    #expect(!failure.contains("max_user_instances"), "only the settings that are too low are named")
    #expect(fleet["nfs1"].state.steps.filter(\.mutates) == [], "the failed host was touched")
    #expect(reports["nfs2"]?.outcome == .changed)
    #expect(reports["bk1"]?.outcome == .changed)
  }

  @Test func aWritableHostIsRaisedAsBefore() async throws {
    let fleet = try FakeFleet()
    let reports = try await fleet.up(inventory(watches: 1_048_576))
    #expect(reports["nfs1"]?.outcome == .changed)
    #expect(reports["nfs1"]?.plan?.desired?.warnings == [])
    #expect(fleet["nfs1"].state.sysctl["fs.inotify.max_user_watches"] == 1_048_576)
  }
}
