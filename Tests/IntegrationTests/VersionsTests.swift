import FleetTestSupport
import FleetWatch
import FleetWire
import Foundation
import Testing

extension WatchIntegration {
  /// Versions on a real rsync daemon with the module lines `fleetsync up` renders: what the engine
  /// overwrites or deletes is kept under `.fleetsync-versions/STAMP/`, no `--delete` removes it,
  /// and clients do not see inside it.
  @Suite("Versions of overwritten and deleted files", .serialized, .enabled(if: hasRsync))
  struct VersionsTests {
    /// The STAMP directories under the backup's versions directory, sorted.
    static func stamps(_ backup: String) -> [String] {
      let names =
        (try? FileManager.default.contentsOfDirectory(atPath: "\(backup)/\(VersionsLayout.directory)"))
      return (names ?? []).filter { !$0.hasPrefix(".") }.sorted()
    }

    /// The contents the versions hold for `path`, newest first, each once: a write the event loop
    /// saw twice (truncate, then write) is sent twice, and each run keeps what it replaced, so
    /// the same or an empty (half-written) content may be kept more than once, depending on timing.
    static func versions(of path: String, in backup: String) -> [String] {
      let all = stamps(backup).reversed().compactMap {
        try? String(contentsOfFile: "\(backup)/\(VersionsLayout.directory)/\($0)/\(path)", encoding: .utf8)
      }
      var out: [String] = []
      for content in all where !content.isEmpty && !out.contains(content) { out.append(content) }
      return out
    }

    /// `rsync --list-only -r` of `url` with the daemon's password: what a client sees.
    static func clientListing(_ daemon: RsyncDaemon, _ module: String) throws -> String {
      let p = Process()
      p.executableURL = URL(fileURLWithPath: "/usr/bin/rsync")
      p.arguments = [
        "--list-only", "-r", "--password-file=\(daemon.passwordFile)",
        "rsync://\(daemon.user)@127.0.0.1:\(daemon.port)/\(module)/",
      ]
      let out = Pipe()
      p.standardOutput = out
      p.standardError = out
      try p.run()
      let data = out.fileHandleForReading.readDataToEndOfFile()
      p.waitUntilExit()
      return "exit \(p.terminationStatus)\n" + String(decoding: data, as: UTF8.self)
    }

    @Test("overwritten and deleted files, and a removed subtree, are kept with their paths")
    func overwritesAndDeletesAreKept() async throws {
      let fixture = try EngineFixture(versions: true)
      fixture.config.keepVersions = 7
      let src = fixture.src
      let backup = fixture.daemon.backup
      try FS.write(src, "a.txt", "a1")
      try FS.mkdir(src, "dir/tree/x")
      try FS.write(src, "dir/b.txt", "b1")
      try FS.write(src, "dir/tree/x/y.txt", "y1")
      try await fixture.start()
      try await fixture.expectConverged(excludes: ["/\(VersionsLayout.directory)/"])
      #expect(Self.stamps(backup).isEmpty, "nothing was replaced yet: \(Self.stamps(backup))")

      try FS.write(src, "a.txt", "a2")
      unlink(src + "/dir/b.txt")
      try FileManager.default.removeItem(atPath: src + "/dir/tree")
      try await fixture.expectConverged(excludes: ["/\(VersionsLayout.directory)/"])
      try FS.write(src, "a.txt", "a3")
      try await fixture.expectConverged(excludes: ["/\(VersionsLayout.directory)/"])

      #expect(Self.versions(of: "a.txt", in: backup) == ["a2", "a1"])
      #expect(Self.versions(of: "dir/b.txt", in: backup) == ["b1"])
      #expect(Self.versions(of: "dir/tree/x/y.txt", in: backup) == ["y1"])
      let stamps = Self.stamps(backup)
      let format = #/\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}\.\d{3}Z/#
      #expect(!stamps.isEmpty && stamps.allSatisfy { $0.wholeMatch(of: format) != nil }, "\(stamps)")

      // A full sync (`--delete`) keeps every version.
      let before = fixture.engine.status().fullSyncs
      fixture.engine.requestFullSync()
      let synced = try await eventually { fixture.engine.status().fullSyncs > before }
      #expect(synced)
      try await fixture.expectConverged(excludes: ["/\(VersionsLayout.directory)/"])
      #expect(Self.versions(of: "a.txt", in: backup) == ["a2", "a1"])
      #expect(Self.versions(of: "dir/tree/x/y.txt", in: backup) == ["y1"])

      // A client of the module sees no version's content; the read-only module serves them.
      let listing = try Self.clientListing(fixture.daemon, fixture.daemon.module)
      #expect(listing.hasPrefix("exit 0\n") && listing.contains(" a.txt\n"), "\(listing)")
      #expect(!listing.contains("\(VersionsLayout.directory)/\(stamps[0])/"), "\(listing)")
      let versions = try Self.clientListing(fixture.daemon, fixture.daemon.versionsModule)
      #expect(versions.contains("\(stamps.last!)/a.txt"), "\(versions)")
      try await fixture.stop()
    }

    @Test("a full sync never deletes versions, also with versions off and no daemon filter")
    func aFullSyncKeepsVersions() async throws {
      let fixture = try EngineFixture()
      #expect(fixture.config.keepVersions == 0)
      let old = "\(fixture.daemon.backup)/\(VersionsLayout.directory)/2026-01-01T00-00-00.000Z"
      try FileManager.default.createDirectory(atPath: old + "/dir", withIntermediateDirectories: true)
      try "kept".write(toFile: old + "/dir/f", atomically: false, encoding: .utf8)
      try FS.write(fixture.src, "a.txt", "a1")
      try await fixture.start()
      try await fixture.expectConverged(excludes: ["/\(VersionsLayout.directory)/"])
      try FS.write(fixture.src, "a.txt", "a2")
      try await fixture.expectConverged(excludes: ["/\(VersionsLayout.directory)/"])
      let before = fixture.engine.status().fullSyncs
      fixture.engine.requestFullSync()
      #expect(try await eventually { fixture.engine.status().fullSyncs > before })
      try await fixture.expectConverged(excludes: ["/\(VersionsLayout.directory)/"])
      #expect((try? String(contentsOfFile: old + "/dir/f", encoding: .utf8)) == "kept")
      #expect(Self.stamps(fixture.daemon.backup) == ["2026-01-01T00-00-00.000Z"], "no versions when off")
      try await fixture.stop()
    }

    @Test("a first start with an empty source is not held by a backup that holds only versions")
    func versionsAreNotBackupData() async throws {
      let fixture = try EngineFixture(versions: true)
      fixture.config.keepVersions = 7
      let old = "\(fixture.daemon.backup)/\(VersionsLayout.directory)/2026-01-01T00-00-00.000Z"
      try FileManager.default.createDirectory(atPath: old, withIntermediateDirectories: true)
      try "kept".write(toFile: old + "/f", atomically: false, encoding: .utf8)
      try await fixture.start()
      #expect(fixture.engine.status().state != .sourceHeld)
      try FS.write(fixture.src, "new.txt", "new")
      try await fixture.expectConverged(excludes: ["/\(VersionsLayout.directory)/"])
      #expect((try? String(contentsOfFile: old + "/f", encoding: .utf8)) == "kept")
      try await fixture.stop()
    }
  }
}
