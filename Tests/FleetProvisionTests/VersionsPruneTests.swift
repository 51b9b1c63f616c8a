import FleetCore
import FleetInventory
import FleetWire
import Foundation
import Testing

@testable import FleetProvision

/// The prune script `up` installs on backup hosts, run with `/bin/sh` on real directories and a
/// controlled clock (`FLEETSYNC_NOW`).
@Suite struct VersionsPruneTests {
  static let now = 1_795_000_000  // 2026-11-18T11:06:40Z
  static let day = 86_400

  /// A module directory with versions at the given ages (seconds before ``now``), one file each.
  struct Module {
    let path: String
    let stamps: [String]

    init(_ root: String, _ name: String, ages: [Int]) throws {
      path = "\(root)/\(name)"
      let versions = "\(path)/\(VersionsLayout.directory)"
      stamps = ages.map { VersionsLayout.stamp(Date(timeIntervalSince1970: TimeInterval(now - $0))) }
      try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
      for stamp in stamps {
        try FileManager.default.createDirectory(
          atPath: "\(versions)/\(stamp)/sub", withIntermediateDirectories: true)
        try "old".write(toFile: "\(versions)/\(stamp)/sub/file", atomically: false, encoding: .utf8)
      }
      try "mirror".write(toFile: "\(path)/file", atomically: false, encoding: .utf8)
    }

    func exists(_ stamp: String) -> Bool {
      FileManager.default.fileExists(atPath: "\(path)/\(VersionsLayout.directory)/\(stamp)")
    }
  }

  /// Runs the script on `list`; `env` goes before it (`PATH=…` for a stand-in `df`).
  func prune(_ root: String, list: String, now: Int = now, env: String = "") throws -> CommandOutput {
    try VersionsPrune.script.write(toFile: "\(root)/prune", atomically: false, encoding: .utf8)
    try list.write(toFile: "\(root)/list", atomically: false, encoding: .utf8)
    return try LocalShellHost.runNow(
      "\(env) FLEETSYNC_NOW=\(now) FLEETSYNC_SIZES_DIR=\(root)/sizes sh \(root)/prune \(root)/list")
  }

  func withRoot(_ body: (String) throws -> Void) throws {
    let root = FileManager.default.temporaryDirectory.appendingPathComponent("prune-\(UUID().uuidString)")
      .path
    try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: root) }
    try body(root)
  }

  @Test func removesOnlyVersionsOlderThanTheRetention() throws {
    try withRoot { root in
      let home = try Module(root, "home", ages: [8 * Self.day, 7 * Self.day + 1, 7 * Self.day - 1, 60, 0])
      let plain = try Module(root, "plain mirror", ages: [400 * Self.day])
      let out = try prune(root, list: "# header\n7 \(home.path)\n0 \(plain.path)\n3 \(root)/missing\n")
      #expect(out.status == 0, "\(out)")
      #expect(!home.exists(home.stamps[0]) && !home.exists(home.stamps[1]), "\(out.stdout)")
      #expect(home.stamps[2...].allSatisfy(home.exists), "\(out.stdout)")
      #expect(plain.exists(plain.stamps[0]), "keep_versions 0 removes nothing")
      #expect(FileManager.default.fileExists(atPath: "\(home.path)/file"), "the mirror is never touched")
      #expect(
        out.stdout.contains("removed \(home.path)/.fleetsync-versions/\(home.stamps[0]) (older than 7 days)"))
      #expect(out.stdout.contains("\(home.path): 2 expired version(s) removed, keeping 7 days"))
    }
  }

  @Test func aHoldStopsAllPruningOfItsModule() throws {
    try withRoot { root in
      let held = try Module(root, "held", ages: [30 * Self.day, 20 * Self.day])
      let free = try Module(root, "free", ages: [30 * Self.day])
      _ = FileManager.default.createFile(
        atPath: "\(held.path)/\(VersionsLayout.directory)/\(VersionsLayout.holdPrefix)home:bk1:held",
        contents: nil)
      let out = try prune(root, list: "7 \(held.path)\n7 \(free.path)\n")
      #expect(out.status == 0, "\(out)")
      #expect(held.stamps.allSatisfy(held.exists), "\(out.stdout)")
      #expect(!free.exists(free.stamps[0]), "another module is pruned as usual")
      #expect(
        out.stdout.contains("\(held.path): held by \(held.path)/.fleetsync-versions/.hold-home:bk1:held"))
      #expect(out.stdout.contains("fleetsync resume"))
    }
  }

  @Test func neverFollowsASymlink() throws {
    try withRoot { root in
      let outside = try Module(root, "outside", ages: [30 * Self.day])
      let home = try Module(root, "home", ages: [])
      let versions = "\(home.path)/\(VersionsLayout.directory)"
      try FileManager.default.createDirectory(atPath: versions, withIntermediateDirectories: true)
      // An old-looking STAMP that is a link to a directory outside: the link goes, not its target.
      let linkStamp = VersionsLayout.stamp(Date(timeIntervalSince1970: 0))
      try FileManager.default.createSymbolicLink(
        atPath: "\(versions)/\(linkStamp)", withDestinationPath: "\(outside.path)/\(VersionsLayout.directory)"
      )
      // A versions directory that is a link is skipped, with a message.
      let linked = "\(root)/linked"
      try FileManager.default.createDirectory(atPath: linked, withIntermediateDirectories: true)
      try FileManager.default.createSymbolicLink(
        atPath: "\(linked)/\(VersionsLayout.directory)",
        withDestinationPath: "\(outside.path)/\(VersionsLayout.directory)")
      let out = try prune(root, list: "7 \(home.path)\n7 \(linked)\n")
      #expect((try? FileManager.default.destinationOfSymbolicLink(atPath: "\(versions)/\(linkStamp)")) == nil)
      #expect(outside.exists(outside.stamps[0]), "\(out)")
      #expect(out.status == 1 && out.stderr.contains("\(linked)/.fleetsync-versions is a symlink"), "\(out)")
    }
  }

  @Test func aBadClockIsRefused() throws {
    try withRoot { root in
      let out = try LocalShellHost.runNow(
        "printf '%s' \(try ShellQuote.quote(VersionsPrune.script)) > \(root)/p; FLEETSYNC_NOW=soon sh \(root)/p"
      )
      #expect(out.status == 64 && out.stderr.contains("FLEETSYNC_NOW must be seconds since the epoch"))
    }
  }

  @Test func recordsEachModulesMirrorAndVersionsSizesForStatus() throws {
    try withRoot { root in
      let home = try Module(root, "home", ages: [60])
      try String(repeating: "x", count: 200_000).write(
        toFile: "\(home.path)/big", atomically: false, encoding: .utf8)
      let bare = try Module(root, "bare", ages: [])
      let out = try prune(root, list: "7 \(home.path)\n0 \(bare.path)\n")
      #expect(out.status == 0, "\(out)")
      let text = try String(contentsOfFile: "\(root)/sizes/list", encoding: .utf8)
      let sizes = ModuleSize.parse(text)
      #expect(sizes.map(\.path) == [home.path, bare.path], "\(text)")
      #expect(sizes.first.map { $0.mirrorKiB >= 196 && $0.versionsKiB > 0 } == true, "\(text)")
      #expect(sizes.last?.versionsKiB == 0, "\(text)")
      #expect(sizes.allSatisfy { $0.measured == Date(timeIntervalSince1970: TimeInterval(Self.now)) })
      let status = HostStatus(host: "bk1", roles: [.backup], error: nil, services: [], moduleSizes: sizes)
      let lines = StatusTable.render([status])
      #expect(lines.contains { $0.hasPrefix("bk1 modules (measured ") }, "\(lines)")
      #expect(
        lines.contains { $0.contains(home.path) && $0.contains(" mirror ") && $0.contains(" versions ") },
        "\(lines)")
    }
  }

  @Test func sizesReadFromAHostSkipWhatIsNotASizeLine() {
    let sizes = ModuleSize.parse("12 3 1795000000 /srv/backup/a b\ngarbage\n\n1 x 2 /p\n")
    #expect(
      sizes == [
        ModuleSize(
          path: "/srv/backup/a b", mirrorKiB: 12, versionsKiB: 3,
          measured: Date(timeIntervalSince1970: 1_795_000_000))
      ])
    #expect(StatusTable.bytes(kib: 3) == "3 KiB" && StatusTable.bytes(kib: 1536) == "1.5 MiB")
    #expect(StatusTable.bytes(kib: 20 << 20) == "20 GiB")
  }

  @Test func upInstallsTheScheduleOfItsInitAndDownRemovesIt() async throws {
    for systemd in [false, true] {
      let fleet = try FakeFleet(systemd: systemd ? ["bk1"] : [])
      _ = try await fleet.up()
      let files = fleet["bk1"].state.files
      let list = String(decoding: files[Layout.pruneList("main")] ?? [], as: UTF8.self)
      #expect(list.hasSuffix("7 /srv/backup/home\n7 /srv/backup/proj\n"), "\(list)")
      #expect(files[Layout.pruneScript] == Array(VersionsPrune.script.utf8))
      #expect((files[Layout.pruneCron] != nil) == !systemd)
      #expect((files["\(Layout.units)/fleetsync-prune@.timer"] != nil) == systemd)
      _ = try await fleet.provisioner().down()
      let left = fleet["bk1"].state.files.keys.filter { $0.contains("prune") }
      #expect(left.isEmpty, "\(left)")
    }
  }
}
