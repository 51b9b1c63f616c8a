import FleetTestSupport
import FleetWatch
import Foundation
import Testing

#if canImport(Glibc)
  import Glibc
#endif

extension WatchIntegration {
  /// A backup that keeps no sub-second mtimes: full syncs compare at the precision both sides have,
  /// so an unchanged tree sends nothing, and live changes still arrive whatever their times.
  ///
  /// "Sent nothing" is read from the backup's inodes: rsync writes a file it sends to a temporary name
  /// and renames it over the old one, so a file sent again has another inode.
  @Suite("Full syncs against a backup with coarse mtimes", .serialized, .enabled(if: hasRsync))
  struct CoarseTimestampTests {
    @Test(
      "a backup seeded with mtimes truncated to the second is compared to the second, and nothing is sent")
    func seededBackup() async throws {
      let fixture = try EngineFixture()
      try CoarseTimes.fill(fixture.src, files: 40)
      try CoarseTimes.seed(fixture.src, into: fixture.daemon.backup)
      let before = try CoarseTimes.inodes(fixture.daemon.backup)
      #expect(before.count == 40)

      try await fixture.start()
      let status = fixture.engine.status()
      #expect(status.fullSyncTimePrecision == .second, "status: \(status)")
      #expect(status.filesSent == 0 && status.bytesSent == 0, "files sent: \(status.filesSent)")
      #expect(try CoarseTimes.inodes(fixture.daemon.backup) == before, "files were sent again")
      try await fixture.expectConverged()
      try await fixture.stop()
    }

    @Test("a same-size rewrite within the same second, made live, reaches a backup compared to the second")
    func sameSecondRewrite() async throws {
      let fixture = try EngineFixture()
      try CoarseTimes.fill(fixture.src, files: 20)
      try CoarseTimes.seed(fixture.src, into: fixture.daemon.backup)
      try await fixture.start()
      #expect(fixture.engine.status().fullSyncTimePrecision == .second)

      // Same size, same mtime to the nanosecond as before: only the content differs.
      let path = fixture.src + "/d0/f0.txt"
      let old = try CoarseTimes.mtime(path)
      let rewritten = try String(contentsOfFile: path, encoding: .utf8).uppercased()
      try FS.write(fixture.src, "d0/f0.txt", rewritten)
      try CoarseTimes.setMtime(path, old)
      let arrived = try await eventually {
        (try? String(contentsOfFile: fixture.daemon.backup + "/d0/f0.txt", encoding: .utf8)) == rewritten
      }
      #expect(arrived, "the rewrite never reached the backup: \(fixture.engine.status())")
      try await fixture.expectConverged()
      try await fixture.stop()
    }

    @Test(
      "a backup on a filesystem with 1-second mtimes: the second full sync sends nothing",
      .enabled(if: isRoot))
    func oneSecondFilesystem() async throws {
      let fixture = try EngineFixture()
      let mount = try TestMount.ext4Image(fixture.tmp.path + "/backup.img", on: fixture.daemon.backup)
      defer { try? mount.unmount() }
      try CoarseTimes.fill(fixture.src, files: 30)
      try await fixture.start()
      // The backup was empty: nothing to compare, so the first full sync compared to the nanosecond.
      #expect(fixture.engine.status().fullSyncTimePrecision == .nanosecond)
      try await fixture.expectConverged()

      // Live changes: a new file, a rewrite of another size, and a same-size rewrite within its second.
      try FS.write(fixture.src, "d1/new.txt", "made while watching")
      try FS.write(fixture.src, "d2/f2.txt", "longer than it was before")
      let path = fixture.src + "/d0/f5.txt"
      let old = try CoarseTimes.mtime(path)
      let rewritten = try String(contentsOfFile: path, encoding: .utf8).uppercased()
      try FS.write(fixture.src, "d0/f5.txt", rewritten)
      try CoarseTimes.setMtime(path, old)
      try await fixture.expectConverged()
      let before = try CoarseTimes.inodes(fixture.daemon.backup)

      fixture.engine.requestFullSync()
      let done = try await eventually { fixture.engine.status().fullSyncs >= 2 }
      #expect(done, "the requested full sync never finished: \(fixture.engine.status())")
      #expect(fixture.engine.status().fullSyncTimePrecision == .second)
      #expect(
        try CoarseTimes.inodes(fixture.daemon.backup) == before, "the second full sync sent files again")
      try await fixture.expectConverged()
      try await fixture.stop()
      try mount.unmount()
    }
  }
}

/// Trees whose mtimes have a sub-second part, and backups of them that lost it.
enum CoarseTimes {
  /// An hour ago, with a sub-second part: old enough for the probe's sample.
  static func oldTime(_ i: Int) -> timespec {
    timespec(tv_sec: time(nil) - 3600 + i, tv_nsec: 123_456_789 + i)
  }

  /// `files` files in `d0` ... `d4` under `dir`, each with its own mtime an hour ago (sub-second part).
  static func fill(_ dir: String, files: Int) throws {
    for i in 0..<files {
      let rel = "d\(i % 5)/f\(i).txt"
      try FS.mkdir(dir, "d\(i % 5)")
      try FS.write(dir, rel, "content of file \(i)")
      try setMtime(dir + "/" + rel, oldTime(i))
    }
  }

  /// Copies `source`'s files and directories into `backup` as another tool would leave them: same
  /// content and mode, mtimes truncated to the second.
  static func seed(_ source: String, into backup: String) throws {
    let fm = FileManager.default
    for rel in try fm.subpathsOfDirectory(atPath: source).sorted() {
      var isDir: ObjCBool = false
      _ = fm.fileExists(atPath: source + "/" + rel, isDirectory: &isDir)
      if isDir.boolValue {
        try fm.createDirectory(atPath: backup + "/" + rel, withIntermediateDirectories: true)
      } else {
        try fm.copyItem(atPath: source + "/" + rel, toPath: backup + "/" + rel)
      }
    }
    for rel in try fm.subpathsOfDirectory(atPath: source) + ["."] {
      var t = try mtime(source + "/" + rel)
      t.tv_nsec = 0
      try setMtime(backup + "/" + rel, t)
    }
  }

  static func mtime(_ path: String) throws -> timespec {
    var st = stat()
    guard lstat(path, &st) == 0 else { throw POSIXErrorBox(errno, "stat \(path)") }
    return st.st_mtim
  }

  static func setMtime(_ path: String, _ t: timespec) throws {
    guard utimensat(AT_FDCWD, path, [t, t], AT_SYMLINK_NOFOLLOW) == 0 else {
      throw POSIXErrorBox(errno, "utimensat \(path)")
    }
  }

  /// The inode of every regular file under `dir`, by relative path.
  static func inodes(_ dir: String) throws -> [String: UInt64] {
    var out: [String: UInt64] = [:]
    for rel in try FileManager.default.subpathsOfDirectory(atPath: dir) {
      var st = stat()
      if lstat(dir + "/" + rel, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG { out[rel] = UInt64(st.st_ino) }
    }
    return out
  }
}
