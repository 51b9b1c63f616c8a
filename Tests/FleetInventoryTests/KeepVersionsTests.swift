import FleetCore
import FleetInventory
import Foundation
import Testing

/// `keep_versions`: the default, the layers (defaults.rsync → groups → backup host → daemon →
/// module), and refusals with their location.
@Suite struct KeepVersionsTests {
  static let backups = """
    backups:
      bk1:
        address: 10.0.0.21
        daemons:
          main:
            modules:
              home: /srv/backup/home
              proj: /srv/backup/proj
          other:
            keep_versions: 30
            modules:
              odd: /srv/backup/odd
              even: { path: /srv/backup/even, keep_versions: 0 }

    """

  func keep(_ inventory: Inventory, _ module: String) -> Int? {
    inventory.backups[0].module(named: module)?.module.keepVersions
  }

  @Test func defaultsToSevenDaysAndEachLevelOverridesTheOneAbove() throws {
    let plain = try Inventory.parse(yaml: Self.backups, file: "inv.yaml")
    #expect(keep(plain, "home") == 7)
    #expect(keep(plain, "odd") == 30)
    #expect(keep(plain, "even") == 0)
    let layered = try Inventory.parse(
      yaml: "defaults:\n  rsync:\n    keep_versions: 2\n" + Self.backups, file: "inv.yaml")
    #expect(keep(layered, "home") == 2)
    #expect(keep(layered, "proj") == 2)
    #expect(keep(layered, "odd") == 30)
    #expect(keep(layered, "even") == 0)
    let host = Self.backups.replacingOccurrences(
      of: "address: 10.0.0.21\n", with: "address: 10.0.0.21\n    rsync: { keep_versions: 14 }\n")
    let byHost = try Inventory.parse(yaml: "defaults:\n  rsync:\n    keep_versions: 2\n" + host, file: "i")
    #expect(keep(byHost, "home") == 14)
    #expect(keep(byHost, "odd") == 30)
  }

  @Test func aBadValueIsRefusedWithItsLocationAndWhatToWrite() {
    for value in ["-1", "seven", "1.5", "[7]", "3651", "~"] {
      let yaml = Self.backups.replacingOccurrences(of: "keep_versions: 30", with: "keep_versions: \(value)")
      let found = issues(yaml)
      #expect(found.count == 1, "\(value): \(found)")
      #expect(found.first?.line == 10, "\(value): \(found)")
      #expect(found.first?.message.contains("keep_versions") == true, "\(value): \(found)")
      #expect(found.first?.hint?.contains("0") == true, "\(value): \(found)")
    }
    let onModule = issues(
      Self.backups.replacingOccurrences(of: "keep_versions: 0 }", with: "keep_versions: forever }"))
    #expect(onModule.count == 1 && onModule.first?.line == 13, "\(onModule)")
  }

  @Test func aSourceDirectoryCannotSetIt() {
    let yaml =
      Self.backups + """
        sources:
          nfs1:
            address: 10.0.0.11
            directories:
              home: { path: /srv/nfs/home, to: [bk1/home], keep_versions: 3 }
        """
    #expect(issues(yaml).first?.message.contains("keep_versions") == true)
  }

  private func issues(_ yaml: String) -> [InventoryIssue] {
    do {
      _ = try Inventory.parse(yaml: yaml, file: "inv.yaml")
      return []
    } catch let error as FleetError {
      return (error.cause as? InventoryIssues)?.issues ?? []
    } catch {
      return []
    }
  }
}
