import FleetProvision
import FleetTestSupport
import FleetWatch
import FleetWire
import Foundation
import Testing

#if canImport(Glibc)
  import Glibc
#endif

extension WatchIntegration {
  /// A source that holds the module's password (ransomware on it) cannot destroy the good copies:
  /// the daemon's `pre-xfer exec` (``VersionsXferCheck``) refuses a write that keeps no versions or
  /// names a STAMP that exists, while the engine's own writes, and reads, go through.
  @Suite("The daemon refuses writes that would not keep versions", .serialized, .enabled(if: hasRsync))
  struct VersionsXferCheckTests {
    /// Runs the rsync client with `args`; returns its exit status and output.
    static func rsync(_ args: [String]) throws -> (status: Int32, output: String) {
      let p = Process()
      p.executableURL = URL(fileURLWithPath: "/usr/bin/rsync")
      p.arguments = args
      let out = Pipe()
      p.standardOutput = out
      p.standardError = out
      try p.run()
      let data = out.fileHandleForReading.readDataToEndOfFile()
      p.waitUntilExit()
      return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    @Test func aHostileSourceCannotOverwriteWithoutVersionsNorReuseAStamp() async throws {
      let tmp = try TempDir("xfer-check")
      defer { tmp.remove() }
      let script = tmp.path + "/fleetsync-xfer-check"
      try VersionsXferCheck.script.write(toFile: script, atomically: false, encoding: .utf8)
      chmod(script, 0o755)
      let fixture = try EngineFixture(versions: true, moduleLines: ["pre-xfer exec = \(script)"])
      fixture.config.keepVersions = 7
      let backup = fixture.daemon.backup
      let versionsOut = ["/\(VersionsLayout.directory)/"]
      try FS.write(fixture.src, "a.txt", "good")
      try await fixture.start()
      try await fixture.expectConverged(excludes: versionsOut)
      // The engine's writes keep versions, so the check lets them through.
      try FS.write(fixture.src, "a.txt", "good2")
      try await fixture.expectConverged(excludes: versionsOut)
      #expect(VersionsTests.versions(of: "a.txt", in: backup) == ["good"])
      try await fixture.stop()
      let stamps = VersionsTests.stamps(backup)
      let kept = try #require(stamps.last)

      let evil = try tmp.sub("evil")
      try FS.write(evil, "a.txt", "encrypted")
      let daemon = fixture.daemon
      let url = "rsync://\(daemon.user)@127.0.0.1:\(daemon.port)/\(daemon.module)/"
      let auth = "--password-file=\(daemon.passwordFile)"
      let plain = try Self.rsync(["-a", "--ignore-times", auth, evil + "/", url])
      #expect(plain.status != 0, "a write without --backup went through: \(plain.output)")
      let reuse = try Self.rsync([
        "-a", "--ignore-times", "--backup", "--backup-dir=\(VersionsLayout.directory)/\(kept)", auth,
        evil + "/",
        url,
      ])
      #expect(reuse.status != 0, "a write into an existing STAMP went through: \(reuse.output)")
      #expect(try String(contentsOfFile: backup + "/a.txt", encoding: .utf8) == "good2")
      #expect(VersionsTests.stamps(backup) == stamps)
      #expect(VersionsTests.versions(of: "a.txt", in: backup) == ["good"])

      // Reads (a restore pulls through the daemon) are not writes.
      let back = try tmp.sub("back")
      let pull = try Self.rsync(["-a", "--exclude=/\(VersionsLayout.directory)/", auth, url, back + "/"])
      #expect(pull.status == 0, "\(pull.output)")
      #expect(try String(contentsOfFile: back + "/a.txt", encoding: .utf8) == "good2")
    }
  }
}
