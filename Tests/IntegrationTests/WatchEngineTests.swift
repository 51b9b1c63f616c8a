import FleetTestSupport
import FleetWatch
import Foundation
import Testing

#if canImport(Glibc)
  import Glibc
#endif

extension WatchIntegration {
  @Suite("Watch engine against a real rsync daemon", .serialized, .enabled(if: hasRsync))
  struct WatchEngineTests {
    @Test("create, modify, append, truncate, chmod, delete files and directories")
    func basicChanges() async throws {
      let fixture = try EngineFixture()
      let src = fixture.src
      try FS.write(src, "existing.txt", "was there before start\n")
      try FS.mkdir(src, "old/dir")
      try FS.write(src, "old/dir/f", "old")
      try await fixture.start()
      try await fixture.expectConverged()

      try FS.write(src, "new.txt", "hello\n")
      try FS.write(src, "existing.txt", "modified\n")
      try FS.write(src, "new.txt", "more\n", append: true)
      try FS.write(src, "trunc.txt", String(repeating: "x", count: 10000))
      truncate(src + "/trunc.txt", 10)
      chmod(src + "/existing.txt", 0o600)
      try FS.mkdir(src, "d1/d2")
      try FS.write(src, "d1/d2/inner", "inner")
      chmod(src + "/d1", 0o750)
      try FileManager.default.removeItem(atPath: src + "/old")
      try await fixture.expectConverged()

      unlink(src + "/new.txt")
      try FileManager.default.removeItem(atPath: src + "/d1")
      symlink("existing.txt", src + "/link")
      try await fixture.expectConverged()
      // truncate(2) on a file nobody has open raises only IN_MODIFY; it must still arrive.
      truncate(src + "/existing.txt", 3)
      try await fixture.expectConverged()
      // Same size, same second: still a change.
      try FS.write(src, "same-size.txt", "aaaa")
      try await fixture.expectConverged()
      try FS.write(src, "same-size.txt", "bbbb")
      try await fixture.expectConverged()
      let s = fixture.engine.status()
      #expect(s.transfers > 0)
      #expect(s.filesSent > 0)
      #expect(s.isHealthy)
      try await fixture.stop()
    }

    /// Adaptive batching: with a batch delay of ten minutes, a change on an idle watcher still arrives
    /// (within the test's deadline, which is far shorter). A change after it would wait the ten minutes:
    /// a batch started within the batch delay makes the watcher busy (`TransferDispatcherTests`).
    @Test("an idle watcher sends a change without waiting for the batch delay")
    func idleChangeGoesAtOnce() async throws {
      let fixture = try EngineFixture()
      fixture.config.batchDelay = .seconds(600)
      try await fixture.start()
      try await fixture.expectConverged()
      // Written beside the source and renamed in: one event, whole, however busy the machine is.
      let outside = try fixture.tmp.sub("outside")
      try FS.write(outside, "first.txt", "sent at once\n")
      try FS.rename(outside + "/first.txt", fixture.src + "/first.txt")
      try await fixture.expectConverged()
      try await fixture.stop()
    }

    @Test("renames of files and directories: inside the tree, into it, out of it")
    func renames() async throws {
      let fixture = try EngineFixture()
      let src = fixture.src
      let outside = try fixture.tmp.sub("outside")
      try FS.mkdir(src, "a/b/c")
      try FS.write(src, "a/b/c/deep.txt", "deep")
      try FS.write(src, "a/file.txt", "file")
      try FS.mkdir(src, "leaving/sub")
      try FS.write(src, "leaving/sub/x", "x")
      try await fixture.start()
      try await fixture.expectConverged()

      // Inside the tree: a file, then a directory with content.
      try FS.rename(src + "/a/file.txt", src + "/a/renamed.txt")
      try FS.rename(src + "/a/b", src + "/moved-b")
      // Into the tree: a directory built elsewhere, with nested content.
      try FS.mkdir(outside, "incoming/x/y")
      try FS.write(outside, "incoming/x/y/z.txt", "came from outside")
      try FS.write(outside, "incoming/top.txt", "top")
      try FS.write(outside, "single.txt", "single")
      try FS.rename(outside + "/incoming", src + "/incoming")
      try FS.rename(outside + "/single.txt", src + "/single.txt")
      // Out of the tree.
      try FS.rename(src + "/leaving", outside + "/left")
      try await fixture.expectConverged()

      // The directory moved out is no longer replicated: written first, so the replicated writes
      // below (events of one inotify descriptor arrive in order) show it had its chance.
      try FS.write(outside, "left/sub/ignored.txt", "ignored")
      // The moved directories are still watched at their new place.
      try FS.write(src, "moved-b/c/after-move.txt", "after")
      try FS.write(src, "incoming/x/y/second.txt", "second")
      try await fixture.expectConverged()
      #expect(!FileManager.default.fileExists(atPath: fixture.daemon.backup + "/left"))
      // Swap two directories back and forth quickly.
      try FS.rename(src + "/moved-b", src + "/tmp-name")
      try FS.rename(src + "/incoming", src + "/moved-b")
      try FS.rename(src + "/tmp-name", src + "/incoming")
      try FS.write(src, "incoming/c/after-swap.txt", "swap")
      try await fixture.expectConverged()
      try await fixture.stop()
    }

    @Test("names with spaces, quotes, newlines, non-UTF-8 bytes and leading dashes")
    func awkwardNames() async throws {
      let fixture = try EngineFixture()
      let src = fixture.src
      try await fixture.start()
      let names: [[UInt8]] = [
        Array("with space.txt".utf8),
        Array("quote's \"double\".txt".utf8),
        Array("new\nline".utf8),
        Array("-leading-dash".utf8),
        Array("--delete".utf8),
        [0x6C, 0x61, 0x74, 0x69, 0x6E, 0xE9, 0xFF, 0x2E, 0x74],  // "latin\xE9\xFF.t": not UTF-8
        Array("$(touch pwned)`id`;|&".utf8),
        Array("*?[glob]".utf8),
      ]
      for n in names {
        try FS.write(FS.path(src, n), Array("content of a file".utf8))
      }
      // The same names as directories with a file inside.
      for n in names {
        let dir = FS.path(src, [UInt8(ascii: "d")] + n)
        guard Glibc.mkdir(FS.cPath(dir), 0o755) == 0 else { throw POSIXErrorBox(errno) }
        try FS.write(dir + Array("/inner".utf8), Array("inner".utf8))
      }
      try await fixture.expectConverged()
      // Delete half of them again.
      for n in names.prefix(4) { unlink(FS.cPath(FS.path(src, n))) }
      try await fixture.expectConverged()
      #expect(!FileManager.default.fileExists(atPath: fixture.tmp.path + "/pwned"))
      #expect(!FileManager.default.fileExists(atPath: "pwned"))
      try await fixture.stop()
    }

    @Test("a deep tree created fast: directories get files before their watch exists")
    func deepTreeCreatedFast() async throws {
      let fixture = try EngineFixture()
      let src = fixture.src
      try await fixture.start()
      for i in 0..<20 {
        let rel = "t\(i)/a/b/c/d/e/f/g"
        try FS.mkdir(src, rel)
        var dir = "t\(i)"
        for part in ["", "/a", "/b", "/c", "/d", "/e", "/f", "/g"] {
          dir += part
          try FS.write(src, dir + "/file\(i).txt", "level \(dir)")
        }
      }
      try await fixture.expectConverged()
      try await fixture.stop()
    }

    @Test("a burst goes out in bounded batches over the workers; rewrites during transfers arrive last")
    func burstInBoundedBatches() async throws {
      let fixture = try EngineFixture()
      fixture.config.workers = 2
      fixture.config.maxBatchPaths = 25
      // Every path list the engine hands rsync is kept, so the cap is checked on what rsync got.
      let lists = try fixture.tmp.sub("lists")
      fixture.config.rsyncPath = try listKeepingRsync(in: fixture.tmp.path, keepingListsIn: lists)
      let src = fixture.src
      try FS.mkdir(src, "burst")
      try await fixture.start()
      let before = fixture.engine.status()
      for i in 0..<400 { try FS.write(src, "burst/f\(i)", "first \(i)") }
      // Rewritten while earlier versions are in flight: the last content must win on the backup.
      for round in 0..<5 {
        for i in stride(from: 0, to: 400, by: 7) {
          try FS.write(src, "burst/f\(i)", "round \(round) of \(i)")
        }
        try await Task.sleep(for: .milliseconds(30))
      }
      try await fixture.expectConverged()
      let after = fixture.engine.status()
      let sent = try keptLists(lists)
      // The cap, on every rsync run, however the batches coalesced.
      for list in sent { #expect(list.count <= 25, "an rsync run got \(list.count) paths; the cap is 25") }
      // 400 paths, at most 25 per rsync run: 16 runs at least (one dispatch of everything would be 2).
      // Unless the inotify queue overflowed: a full sync then sends what was left in one run.
      if after.fullSyncs == before.fullSyncs {
        let listed = Set(sent.joined().filter { $0.starts(with: Array("burst/f".utf8)) })
        #expect(listed.count == 400, "paths listed: \(listed.count)")
        #expect(sent.count >= 16, "rsync runs with a path list: \(sent.count)")
        let runs = after.transfers - before.transfers
        #expect(runs >= 16, "rsync runs: \(runs)")
      }
      try await fixture.stop()
    }

    @Test("drift on the backup is repaired by a requested and by a periodic full sync")
    func driftRepair() async throws {
      let fixture = try EngineFixture()
      let src = fixture.src
      try FS.write(src, "a.txt", "a")
      try await fixture.start()
      try await fixture.expectConverged()
      // Someone edits the backup behind the engine's back.
      try FS.write(fixture.daemon.backup, "a.txt", "tampered")
      try FS.write(fixture.daemon.backup, "extra.txt", "should not be there")
      #expect(try treeDifferences(src, fixture.daemon.backup) != "")
      let before = fixture.engine.status().fullSyncs
      fixture.engine.requestFullSync()
      try await fixture.expectConverged()
      // Counted when rsync has returned, which may be after the backup is repaired.
      #expect(try await eventually { fixture.engine.status().fullSyncs > before })
      try await fixture.stop()

      fixture.config.fullSyncInterval = .seconds(1)
      let periodic = try RunningEngine.start(fixture.config)
      try await periodic.waitWatching()
      try FS.write(fixture.daemon.backup, "a.txt", "tampered again")
      try await expectConverged(periodic.engine, src, fixture.daemon.backup)
      #expect(try await eventually { periodic.engine.status().fullSyncs >= 2 })
      try await periodic.stop()
    }

    @Test("excluded paths are neither watched nor sent")
    func excludes() async throws {
      let fixture = try EngineFixture()
      let src = fixture.src
      try FS.mkdir(src, "cache/deep")
      try FS.write(src, "cache/deep/x", "x")
      fixture.config.excludes = ["*.tmp", "/cache/", "skip-me"]
      try await fixture.start()
      try FS.write(src, "junk.tmp", "junk")
      try FS.mkdir(src, "sub/skip-me")
      try FS.write(src, "sub/skip-me/inner", "inner")
      try FS.write(src, "sub/real.txt", "real")
      try FS.write(src, "cache/deep/y", "y")
      // Written last: once it is replicated and the engine is idle, every excluded change before
      // it has been read, so a missing excluded path on the backup means it was dropped.
      try FS.write(src, "keep.txt", "keep")
      try await fixture.expectConverged(excludes: fixture.config.excludes)
      let fm = FileManager.default
      #expect(fm.fileExists(atPath: fixture.daemon.backup + "/keep.txt"))
      #expect(fm.fileExists(atPath: fixture.daemon.backup + "/sub/real.txt"))
      #expect(!fm.fileExists(atPath: fixture.daemon.backup + "/junk.tmp"))
      #expect(!fm.fileExists(atPath: fixture.daemon.backup + "/sub/skip-me"))
      #expect(!fm.fileExists(atPath: fixture.daemon.backup + "/cache"))
      try await fixture.stop()
    }

    @Test("a chmod of the source root itself reaches the backup, and leaves the files in it alone")
    func rootAttributes() async throws {
      let fixture = try EngineFixture()
      let src = fixture.src
      let backup = fixture.daemon.backup
      try FS.write(src, "top.txt", "top")
      try await fixture.start()
      try await fixture.expectConverged()
      var before = stat()
      #expect(stat(backup + "/top.txt", &before) == 0)
      #expect(chmod(src, 0o711) == 0)
      var mode: mode_t = 0
      let arrived = try await eventually(every: .milliseconds(50)) {
        var st = stat()
        if stat(backup, &st) == 0 { mode = st.st_mode & 0o7777 }
        return mode == 0o711
      }
      #expect(arrived, "backup root mode \(String(mode, radix: 8))")
      // The run that carried the mode has ended (rsync may set a directory's mode before its files).
      try await waitFor("the engine to be idle") {
        let s = fixture.engine.status()
        return s.queueDepth == 0 && s.inFlight == 0
      }
      // Only the root went: the file at the top was not sent again (same inode, not rewritten).
      var after = stat()
      #expect(stat(backup + "/top.txt", &after) == 0)
      #expect(after.st_ino == before.st_ino)
      #expect(fixture.engine.status().fullSyncs == 1)
      try await fixture.stop()
    }

    @Test("type changes: file to directory, directory to file, directory replaced, symlink to file")
    func typeChanges() async throws {
      let fixture = try EngineFixture()
      let src = fixture.src
      try FS.write(src, "was-file", "file")
      try FS.mkdir(src, "was-dir/sub")
      try FS.write(src, "was-dir/sub/f", "f")
      try FS.mkdir(src, "replaced/old-sub")
      try FS.write(src, "replaced/old-sub/old.txt", "old")
      try FS.write(src, "replaced/old.txt", "old")
      symlink("was-file", src + "/was-link")
      try await fixture.start()
      try await fixture.expectConverged()

      unlink(src + "/was-file")
      try FS.mkdir(src, "was-file/now-a-dir")
      try FS.write(src, "was-file/now-a-dir/x", "x")
      try FileManager.default.removeItem(atPath: src + "/was-dir")
      try FS.write(src, "was-dir", "now a file")
      // Deleted and re-created under the same name within one batch: nothing old may survive.
      try FileManager.default.removeItem(atPath: src + "/replaced")
      try FS.mkdir(src, "replaced")
      try FS.write(src, "replaced/new.txt", "new")
      unlink(src + "/was-link")
      try FS.write(src, "was-link", "now a file")
      try await fixture.expectConverged()
      #expect(!FileManager.default.fileExists(atPath: fixture.daemon.backup + "/replaced/old.txt"))
      try await fixture.stop()
    }

    @Test(
      "random live operations (create, write, delete, rename, mkdir, rmdir) converge",
      arguments: [7, 42, 3, 5]
    )
    func randomOperations(seed: Int) async throws {
      let fixture = try EngineFixture()
      let src = fixture.src
      fixture.config.workers = 3
      try await fixture.start()
      var rng = SeededGenerator(seed: UInt64(seed))
      let fm = FileManager.default
      func name() -> String { "n\(Int.random(in: 0..<6, using: &rng))" }
      func dir() -> String {
        let depth = Int.random(in: 0..<3, using: &rng)
        return (0..<depth).map { _ in "d\(Int.random(in: 0..<3, using: &rng))" }.joined(separator: "/")
      }
      func path(_ d: String, _ n: String) -> String { d.isEmpty ? n : d + "/" + n }
      for step in 0..<3000 {
        let d = dir()
        let target = src + "/" + path(d, name())
        try? fm.createDirectory(atPath: src + "/" + d, withIntermediateDirectories: true)
        switch Int.random(in: 0..<10, using: &rng) {
        case 0...3: try? FS.write(src, path(d, name()), "step \(step)\n", append: Bool.random(using: &rng))
        case 4: unlink(target)
        case 5: _ = Glibc.rename(target, src + "/" + path(dir(), name()))
        case 6: try? fm.createDirectory(atPath: target, withIntermediateDirectories: true)
        case 7: try? fm.removeItem(atPath: src + "/" + (d.isEmpty ? name() : d))
        case 8: chmod(target, Bool.random(using: &rng) ? 0o600 : 0o644)
        default: truncate(target, Int.random(in: 0..<4, using: &rng))
        }
        if step % 200 == 0 { try await Task.sleep(for: .milliseconds(Int.random(in: 0..<120, using: &rng))) }
      }
      try await fixture.expectConverged()
      try await fixture.stop()
    }
  }
}
