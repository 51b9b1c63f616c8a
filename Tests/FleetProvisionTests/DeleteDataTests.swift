import FleetCore
import FleetInventory
import Foundation
import Testing

@testable import FleetProvision

/// Issue 9 §6: `down --delete-data` deletes only the data directories fleetsync created.
@Suite struct DeleteDataTests {
  /// `down --delete-data` over `fleet`.
  static func downDeletingData(_ fleet: FakeFleet) async throws -> [String: HostReport] {
    var options = try fleet.provisioner().options
    options.deleteData = true
    let provisioner = try Provisioner(
      inventory: try fleet.inventory(), connector: FakeConnector(hosts: fleet.hosts), options: options)
    return Dictionary(uniqueKeysWithValues: try await provisioner.down().hosts.map { ($0.host, $0) })
  }

  @Test func aDirectoryThatExistedBeforeUpSurvivesAndOneUpMadeGoes() async throws {
    let fleet = try FakeFleet()
    fleet["bk1"].change {
      $0.directories.formUnion(["/srv/backup", "/srv/backup/proj"])
      $0.files["/srv/backup/proj/irreplaceable"] = Array("data".utf8)
    }
    _ = try await fleet.up()
    #expect(
      fleet["bk1"].state.manifest?.dataDirectories.sorted() == ["/srv/backup/home", "/srv/backup/proj"])
    let report = try await Self.downDeletingData(fleet)
    let bk1 = fleet["bk1"].state
    #expect(!bk1.directories.contains("/srv/backup/home"), "the directory up created is deleted")
    #expect(bk1.files["/srv/backup/proj/irreplaceable"] == Array("data".utf8))
    let notes = try #require(report["bk1"]?.notes)
    #expect(notes.count == 1 && notes[0].hasPrefix("kept /srv/backup/proj: fleetsync did not create"))
    #expect(report["bk1"]?.outcome == .changed)
    #expect(bk1.createdData.isEmpty, "down forgets the record")
    #expect(fleet.unknownCommands == [])
  }

  /// The manifest is the node's file, and anyone may edit it: listing a directory there does not
  /// make it fleetsync's to delete.
  @Test func aDirectoryAddedToTheManifestIsNotDeleted() async throws {
    let fleet = try FakeFleet()
    _ = try await fleet.up()
    fleet["bk1"].change { m in
      m.directories.insert("/srv/projects")
      m.files["/srv/projects/thesis.tex"] = Array("years of work".utf8)
      var manifest = m.manifest!
      manifest.dataDirectories.append("/srv/projects")
      m.files[Layout.manifest] = Array(try! JSONEncoder().encode(manifest))
    }
    let report = try await Self.downDeletingData(fleet)
    #expect(fleet["bk1"].state.files["/srv/projects/thesis.tex"] != nil)
    #expect(report["bk1"]?.notes.contains { $0.hasPrefix("kept /srv/projects:") } == true)
    #expect(!fleet["bk1"].state.directories.contains("/srv/backup/home"))
  }

  /// The mark outlives the manifest: after the manifest is lost (and the instances stopped) and `up`
  /// runs again, the directory the first `up` made is still known as fleetsync's.
  @Test func theMarkSurvivesALostManifest() async throws {
    let fleet = try FakeFleet()
    _ = try await fleet.up()
    fleet["bk1"].change {
      $0.files[Layout.manifest] = nil
      $0.running = [:]
    }
    #expect(try await fleet.up()["bk1"]?.failure == nil)
    let report = try await Self.downDeletingData(fleet)
    #expect(report["bk1"]?.notes == [])
    #expect(!fleet["bk1"].state.directories.contains("/srv/backup/home"))
    #expect(!fleet["bk1"].state.directories.contains("/srv/backup/proj"))
  }
}

/// The record's shell functions on real directories (the fake above only mirrors what they decide).
@Suite struct CreatedDataDirectoriesScriptTests {
  let root = NSTemporaryDirectory() + "fleetsync-data-\(UUID().uuidString)"
  var record: String { root + "/state/created" }

  func run(_ lines: String) async throws -> CommandOutput {
    let out = try await LocalShellHost().run(
      "set -e\n" + (try CreatedDataDirectories.functions(record: record)) + lines)
    #expect(out.status == 0, "\(out.stderr)")
    return out
  }

  func dir(_ name: String) -> DesiredDirectory {
    DesiredDirectory(path: root + "/" + name, owner: "\(getuid()):\(getgid())", mode: 0o750, data: true)
  }

  func exists(_ name: String) -> Bool { FileManager.default.fileExists(atPath: root + "/" + name) }

  @Test func deletesOnlyTheVeryDirectoriesItCreated() async throws {
    let fm = FileManager.default
    try fm.createDirectory(atPath: root + "/before", withIntermediateDirectories: true)
    defer { try? fm.removeItem(atPath: root) }
    try Data("keep".utf8).write(to: URL(fileURLWithPath: root + "/before/file"))
    let names = ["before", "made", "replaced", "mounted-over", "linked"]
    _ = try await run(try names.map { try CreatedDataDirectories.create(dir($0)) }.joined())
    let mode = try fm.attributesOfItem(atPath: root + "/made")[.posixPermissions] as? Int
    #expect(mode == 0o750)
    // Replaced since: removed and made again (a new inode at the same path).
    try fm.removeItem(atPath: root + "/replaced")
    try fm.createDirectory(atPath: root + "/replaced", withIntermediateDirectories: false)
    try Data("new".utf8).write(to: URL(fileURLWithPath: root + "/replaced/file"))
    // Moved aside and something else put in its place (what a mount over it looks like by inode).
    try fm.moveItem(atPath: root + "/mounted-over", toPath: root + "/aside")
    try fm.createDirectory(atPath: root + "/mounted-over", withIntermediateDirectories: false)
    // A symlink to a directory it did create.
    try fm.removeItem(atPath: root + "/linked")
    try fm.createSymbolicLink(atPath: root + "/linked", withDestinationPath: root + "/aside")

    let out = try await run(
      try (names + ["never-existed"]).map { try CreatedDataDirectories.delete(root + "/" + $0) }.joined())
    #expect(!exists("made"), "the directory it created is deleted")
    #expect(exists("before/file") && exists("replaced/file") && exists("mounted-over") && exists("aside"))
    #expect(
      CreatedDataDirectories.kept(in: out.stdout)
        == ["before", "replaced", "mounted-over", "linked"].map { root + "/" + $0 })
  }

  @Test func aLineBreakInAPathIsRefused() throws {
    #expect(throws: FleetError.self) { try CreatedDataDirectories.delete("/srv/a\nb") }
  }
}
