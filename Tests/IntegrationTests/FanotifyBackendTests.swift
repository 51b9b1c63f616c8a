import FleetCore
import FleetTestSupport
import FleetWatch
import FleetWire
import Foundation
import Testing

#if canImport(Glibc)
  import Glibc
#endif

extension WatchIntegration {
  /// What only the fanotify backend does: the choice, the filter to the source, its overflow. The
  /// engine suite also runs with `FLEETSYNC_TEST_BACKEND=fanotify` (see the README's test command).
  @Suite("fanotify backend: chosen when allowed, filtered to the source", .serialized, .enabled(if: isRoot))
  struct FanotifyBackendTests {
    @Test("auto watches with fanotify as root, with no watch per directory, and says so")
    func autoPicksFanotify() async throws {
      let fixture = try EngineFixture()
      fixture.config.backend = .auto
      for i in 0..<50 { try FS.mkdir(fixture.src, "d\(i)/e") }
      try await fixture.start()
      let status = fixture.engine.status()
      #expect(status.eventBackend == "fanotify")
      #expect(status.watches == 0)
      try FS.write(fixture.src, "d7/e/new.txt", "seen without a watch of its own")
      try await fixture.expectConverged()
      try await fixture.stop()
    }

    /// The mark covers the whole filesystem: changes beside the source must not be queued.
    @Test("changes elsewhere on the filesystem are not sent; changes in the source are")
    func eventsOutsideTheSourceAreIgnored() async throws {
      let fixture = try EngineFixture()
      fixture.config.backend = .fanotify
      let lists = try fixture.tmp.sub("lists")
      fixture.config.rsyncPath = try listKeepingRsync(in: fixture.tmp.path, keepingListsIn: lists)
      let beside = try fixture.tmp.sub("beside")
      try await fixture.start()
      for i in 0..<20 { try FS.write(beside, "outside-\(i).txt", "not ours") }
      try FS.mkdir(beside, "sub")
      try FS.write(beside, "sub/outside.txt", "not ours either")
      // The positive event after them: once it arrived, the events before it were read too.
      try FS.write(fixture.src, "inside.txt", "ours")
      try await fixture.expectConverged()
      let listed = try keptLists(lists).joined().map { String(decoding: $0, as: UTF8.self) }
      #expect(listed.contains("inside.txt"))
      #expect(!listed.contains { $0.contains("outside") }, "sent: \(listed)")
      try await fixture.stop()
    }

    @Test(
      "a fanotify queue overflow: a reconciling full sync, no gap", .changesInotifyLimits)
    func overflow() async throws {
      let fixture = try EngineFixture()
      fixture.config.backend = .fanotify
      try await fixture.overflowAndReconcile(.fanotifyMaxQueuedEvents)
      try await fixture.stop()
    }

    /// overlayfs (the test fleet's /srv) reports no file handles: `auto` falls back to inotify and
    /// replicates; `fanotify` by name refuses to start, saying why and what to set.
    @Test("a source without file handles: auto falls back to inotify, fanotify refuses to start")
    func aFilesystemWithoutHandles() async throws {
      let fixture = try EngineFixture()
      let layers = try fixture.tmp.sub("layers")
      for dir in ["lower", "upper", "work"] {
        try FileManager.default.createDirectory(
          atPath: layers + "/" + dir, withIntermediateDirectories: false)
      }
      let mount = try TestMount.overlay(
        lower: layers + "/lower", upper: layers + "/upper", work: layers + "/work", on: fixture.src)
      defer { try? mount.unmount() }
      fixture.config.backend = .fanotify
      #expect {
        try WatchEngine(config: fixture.config, logger: quietLogger())
      } throws: { error in
        let fleet = error as? FleetError
        return fleet?.code == .watchFanotify
          && fleet?.message.contains("set backend to auto") == true
          && fleet?.message.contains("file handles") == true
      }
      fixture.config.backend = .auto
      try await fixture.start()
      #expect(fixture.engine.status().eventBackend == "inotify")
      try FS.write(fixture.src, "on-overlay.txt", "sent all the same")
      try await fixture.expectConverged()
      try await fixture.stop()
      try mount.unmount()
    }
  }
}
