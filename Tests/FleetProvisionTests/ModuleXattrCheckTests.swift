import FleetCore
import FleetInventory
import Foundation
import Testing

@testable import FleetProvision

/// `up` refuses a backup host whose module cannot store user xattrs (`fake super` keeps owners and
/// ACLs in them) before it writes anything there.
@Suite struct ModuleXattrCheckTests {
  @Test func aModuleWithoutUserXattrsFailsTheBackupBeforeAnythingIsWritten() async throws {
    let fleet = try FakeFleet()
    fleet["bk1"].change { $0.noUserXattrs = ["/srv/backup/proj"] }
    let reports = try await fleet.up()
    let failure = reports["bk1"]?.failure ?? ""
    #expect(reports["bk1"]?.outcome.succeeded == false)
    #expect(failure.contains("module proj (/srv/backup/proj; rsync --fake-super said:"), "\(failure)")
    #expect(failure.contains("cannot store user extended attributes") && failure.contains("fleetsync up"))
    #expect(!failure.contains("module home"))
    let bk1 = fleet["bk1"].state
    #expect(bk1.steps.contains(.xattrCheck))
    #expect(!bk1.steps.contains { $0.mutates }, "written before the refusal: \(bk1.steps)")
    #expect(bk1.files[Layout.rsyncdConf("main")] == nil)
  }

  @Test func modulesThatStoreXattrsPassWithoutWarnings() async throws {
    let fleet = try FakeFleet()
    let reports = try await fleet.up()
    #expect(reports["bk1"]?.outcome == .changed)
    #expect(reports["bk1"]?.plan?.desired?.warnings == [])
    #expect(fleet["bk1"].state.steps.contains(.xattrCheck))
    #expect(!fleet["nfs1"].state.steps.contains(.xattrCheck), "a source has no modules to check")
  }

  @Test func aCheckThatPrintsNothingIsAWarningNotAPass() {
    let verdicts = ModuleXattrCheck.parse("@@xattr\nok\t/a\t\n@@end\n", paths: ["/a", "/b"])
    #expect(verdicts["/a"] == .ok)
    #expect(verdicts["/b"] == .unknown("the check printed nothing"))
  }

  /// The real script, run here: on this machine's filesystem, for a module not made yet, and on a
  /// ramfs (no xattrs at all) mounted in a private mount namespace that ends with the command.
  @Test(.enabled(if: getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/rsync")))
  func theRealScriptTellsAFilesystemWithoutXattrs() async throws {
    let dir = NSTemporaryDirectory() + "fleetsync-xattr-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir + "/ext/module", withIntermediateDirectories: true)
    try FileManager.default.createDirectory(atPath: dir + "/ram", withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let paths = [dir + "/ext/module", dir + "/ext/not/made/yet", dir + "/ram/module"]
    let script = try ModuleXattrCheck.script(paths: paths)
    let wrapped =
      "unshare --mount --propagation private sh -c "
      + (try ShellQuote.quote("mount -t ramfs ramfs \(dir)/ram && mkdir \(dir)/ram/module && \(script)"))
    let out = try await LocalShellHost().run(wrapped)
    let verdicts = ModuleXattrCheck.parse(out.stdout, paths: paths)
    #expect(verdicts[paths[0]] == .ok, "\(out)")
    #expect(verdicts[paths[1]] == .ok, "\(out)")
    guard case .unsupported(let detail) = verdicts[paths[2]] else {
      Issue.record("ramfs not refused: \(out)")
      return
    }
    #expect(detail.contains("Operation not supported"))
    #expect(try FileManager.default.contentsOfDirectory(atPath: dir + "/ext/module").isEmpty, "left behind")
  }
}
