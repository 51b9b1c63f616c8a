import FleetWire
import Foundation
import Testing

@testable import FleetProvision

/// The daemon's `pre-xfer exec` of a module that keeps versions, run with `/bin/sh` on a real module
/// directory with the environment rsync gives it (arguments as rsync 3.5 passes them to the server).
@Suite struct VersionsXferCheckTests {
  static let now = 1_795_000_000  // 2026-11-18T11:06:40Z
  static let stamp = VersionsLayout.stamp(Date(timeIntervalSince1970: TimeInterval(now)))

  /// Runs the check for a client whose server arguments are `args`; returns its exit status and output.
  func check(_ args: [String], request: String = "m/", in root: String) throws -> CommandOutput {
    try VersionsXferCheck.script.write(toFile: "\(root)/check", atomically: false, encoding: .utf8)
    var env = [
      "FLEETSYNC_NOW=\(Self.now)", "RSYNC_MODULE_NAME=m", "RSYNC_MODULE_PATH=\(root)/m",
      "RSYNC_REQUEST='\(request)'", "RSYNC_ARG0=rsyncd", "RSYNC_ARG1=--server",
    ]
    for (i, arg) in args.enumerated() { env.append("RSYNC_ARG\(i + 2)='\(arg)'") }
    return try LocalShellHost.runNow("env \(env.joined(separator: " ")) sh \(root)/check")
  }

  func withModule(_ body: (String) throws -> Void) throws {
    let root = FileManager.default.temporaryDirectory.appendingPathComponent("xfer-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(
      atPath: "\(root)/m/\(VersionsLayout.directory)", withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: root) }
    try body(root)
  }

  @Test func aWatcherRunWithANewStampOfNowPasses() throws {
    try withModule { root in
      let run = ["-blHogDtpAXrSe.iLsfxCIvu", "--backup-dir", ".fleetsync-versions/\(Self.stamp)", ".", "."]
      let result = try check(run, in: root)
      #expect(result.status == 0, "\(result)")
    }
  }

  @Test func aWriteWithoutBackupIsRefused() throws {
    try withModule { root in
      let result = try check(["-lHogDtpAXrSe.iLsfxCIvu", "--numeric-ids", ".", "."], in: root)
      #expect(result.status != 0)
      #expect(result.stdout.contains("a write without --backup"), "\(result)")
      // A `b` among the capability letters after `e.` is not --backup.
      let capability = try check(["-lHogDtpe.iLsfxCIvub", ".", "."], in: root)
      #expect(capability.status != 0)
    }
  }

  @Test func anExistingOrFarAwayOrOtherBackupDirIsRefused() throws {
    try withModule { root in
      try FileManager.default.createDirectory(
        atPath: "\(root)/m/\(VersionsLayout.directory)/\(Self.stamp)", withIntermediateDirectories: true)
      let existing = try check(
        ["-blogDtpre.iLsfxCIvu", "--backup-dir", ".fleetsync-versions/\(Self.stamp)"], in: root)
      #expect(existing.status != 0 && existing.stdout.contains("exists"), "\(existing)")
      let old = VersionsLayout.stamp(Date(timeIntervalSince1970: TimeInterval(Self.now - 8 * 86_400)))
      let stale = try check(["-blogDtpre.iLsfxCIvu", "--backup-dir=.fleetsync-versions/\(old)"], in: root)
      #expect(stale.status != 0 && stale.stdout.contains("an hour away"), "\(stale)")
      let elsewhere = try check(["-blogDtpre.iLsfxCIvu", "--backup-dir", "keep"], in: root)
      #expect(elsewhere.status != 0 && elsewhere.stdout.contains("is not .fleetsync-versions/STAMP"))
    }
  }

  /// A STAMP within an hour of the clock passes either way; beyond it, or one that is no time, does not.
  @Test(arguments: [(-3_540, true), (3_540, true), (-3_660, false), (3_660, false)])
  func theHourWindowHoldsBothWays(offset: Int, passes: Bool) throws {
    try withModule { root in
      let stamp = VersionsLayout.stamp(Date(timeIntervalSince1970: TimeInterval(Self.now + offset)))
      let result = try check(["-blogDtpre.iLsfxCIvu", "--backup-dir=.fleetsync-versions/\(stamp)"], in: root)
      #expect((result.status == 0) == passes, "\(offset) s: \(result)")
      if !passes { #expect(result.stdout.contains("an hour away"), "\(result)") }
    }
  }

  @Test func aStampThatIsNoTimeIsRefused() throws {
    try withModule { root in
      let result = try check(
        ["-blogDtpre.iLsfxCIvu", "--backup-dir=.fleetsync-versions/2026-13-45T25-61-00.000Z"], in: root)
      #expect(result.status != 0 && result.stdout.contains("cannot read the clock or STAMP"), "\(result)")
    }
  }

  @Test func readsDryRunsAndPruneHoldMarkersPass() throws {
    try withModule { root in
      let read = try check(["--sender", "-logDtpre.iLsfxCIvu", ".", "m/"], in: root)
      let dryRun = try check(["-nlogDtpre.iLsfxCIvu", ".", "."], in: root)
      let marker = try check(
        ["-logDtpre.iLsfxCIvu", "--delete", ".", "."], request: "m/.fleetsync-versions/", in: root)
      #expect(read.status == 0 && dryRun.status == 0 && marker.status == 0, "\(read) \(dryRun) \(marker)")
    }
  }
}
