import FleetWire
import Foundation
import Testing

@testable import FleetProvision

/// Versions give way to the mirror: above 90 % use of a module's filesystem the oldest versions go
/// first, whatever their age, across the list's modules; a held module keeps its own. The filesystem
/// is a stand-in `df` whose use grows with the STAMPs left under the test's root (5 % each over 80 %).
extension VersionsPruneTests {
  /// A `df` on PATH whose use is 80 % plus 5 % per STAMP directory under `root`.
  func fakeDF(_ root: String) throws -> String {
    let bin = "\(root)/bin"
    try FileManager.default.createDirectory(atPath: bin, withIntermediateDirectories: true)
    let script = """
      #!/bin/sh
      n=$(ls -d '\(root)'/*/.fleetsync-versions/20* 2>/dev/null | wc -l)
      echo 'Filesystem 1024-blocks Used Available Capacity Mounted on'
      echo "/dev/fake 1000 800 200 $((80 + n * 5))% /"

      """
    try script.write(toFile: "\(bin)/df", atomically: false, encoding: .utf8)
    try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: "\(bin)/df")
    return "PATH=\(bin):$PATH"
  }

  @Test func aFullFilesystemTakesTheOldestVersionsFirstAcrossModules() throws {
    try withRoot { root in
      // Five STAMPs (105 %): three go, oldest first, whichever module holds them, and stop at 90 %.
      let home = try Module(root, "home", ages: [3 * Self.day, 60, 0])
      let proj = try Module(root, "proj", ages: [5 * Self.day, 2 * Self.day])
      let out = try prune(root, list: "7 \(home.path)\n7 \(proj.path)\n", env: try fakeDF(root))
      #expect(out.status == 0, "\(out)")
      #expect(!proj.exists(proj.stamps[0]) && !home.exists(home.stamps[0]) && !proj.exists(proj.stamps[1]))
      #expect(home.exists(home.stamps[1]) && home.exists(home.stamps[2]), "\(out.stdout)")
      #expect(
        out.stdout.contains(
          "removed \(proj.path)/.fleetsync-versions/\(proj.stamps[0]): the filesystem of \(proj.path) is 105% used"
        ),
        "\(out.stdout)")
      #expect(FileManager.default.fileExists(atPath: "\(home.path)/file"), "the mirror is never touched")
    }
  }

  @Test func aHeldModuleKeepsItsVersionsOnAFullFilesystem() throws {
    try withRoot { root in
      let held = try Module(root, "held", ages: [9 * Self.day / 2, 4 * Self.day, 3 * Self.day])
      let free = try Module(root, "free", ages: [60])
      _ = FileManager.default.createFile(
        atPath: "\(held.path)/\(VersionsLayout.directory)/\(VersionsLayout.holdPrefix)w", contents: nil)
      let out = try prune(root, list: "7 \(held.path)\n7 \(free.path)\n", env: try fakeDF(root))
      #expect(held.stamps.allSatisfy(held.exists), "\(out.stdout)")
      #expect(!free.exists(free.stamps[0]), "\(out.stdout)")
    }
  }

  @Test func roomEnoughRemovesNothing() throws {
    try withRoot { root in
      let home = try Module(root, "home", ages: [2 * Self.day, 60])
      let out = try prune(root, list: "7 \(home.path)\n", env: try fakeDF(root))
      #expect(home.stamps.allSatisfy(home.exists), "90 % is not above the limit: \(out.stdout)")
      #expect(!out.stdout.contains("give way"))
    }
  }
}
