import FleetTestSupport
import FleetWatch
import Foundation
import Testing

#if canImport(Glibc)
  import Glibc
#endif

extension WatchIntegration {
  @Suite("A full sync runs beside live changes, in the background", .serialized, .enabled(if: hasRsync))
  struct FullSyncBesideLiveTests {
    /// The initial full sync is held (a wrapper around rsync waits for a file before it runs), so
    /// the change below happens while it runs, however fast the machine. The full sync then hides
    /// `late-*` from its file list, as a full sync does with a file created after rsync listed its
    /// directory: its `--delete` removes the live copy from the backup.
    @Test("a change during a full sync arrives during it, and again after the full sync deleted it")
    func liveChangesFlowDuringAFullSync() async throws {
      let fixture = try EngineFixture()
      let control = try fixture.tmp.sub("control")
      fixture.config.rsyncPath = try fullSyncHoldingRsync(
        in: fixture.tmp.path, control: control, source: fixture.src)
      try FS.write(fixture.src, "base.txt", "there before")
      try fixture.launch()
      let started = try await eventually { access(control + "/full-sync-started", F_OK) == 0 }
      #expect(started, "the full sync never started: \(fixture.engine.status())")

      try FS.write(fixture.src, "late-1.txt", "made while the full sync runs")
      try FS.write(fixture.src, "steady.txt", "made while the full sync runs, and left alone by it")
      let arrived = try await eventually {
        FileManager.default.fileExists(atPath: fixture.daemon.backup + "/late-1.txt")
          && FileManager.default.fileExists(atPath: fixture.daemon.backup + "/steady.txt")
      }
      #expect(arrived, "a change made during the full sync waited for it: \(fixture.engine.status())")
      #expect(fixture.engine.status().state == .initialSync, "the initial sync still runs")
      #expect(fixture.engine.status().fullSyncs == 0)
      let steadyInode = try inode(fixture.daemon.backup + "/steady.txt")

      // The full sync runs, deletes late-1.txt (hidden from its list), and ends; the live change that
      // ran beside it is sent again, so the backup ends up equal to the source.
      _ = FileManager.default.createFile(atPath: control + "/release", contents: nil)
      try await fixture.waitWatching()
      try await fixture.expectConverged()
      #expect(FileManager.default.fileExists(atPath: fixture.daemon.backup + "/late-1.txt"))
      // What the full sync left as the live transfer wrote it is rechecked, not sent again (a re-sent
      // file gets a new inode on the backup, and would count as an overwrite).
      #expect(try inode(fixture.daemon.backup + "/steady.txt") == steadyInode)

      // It ran at background priority: nice 10, best-effort I/O at level 7.
      let nice = try String(contentsOfFile: control + "/full-sync-nice", encoding: .utf8)
      #expect(nice.trimmingCharacters(in: .whitespacesAndNewlines) == "10")
      let io = try String(contentsOfFile: control + "/full-sync-ionice", encoding: .utf8)
      #expect(io.contains("best-effort: prio 7"), "ionice says: \(io)")
      try await fixture.stop()
    }

    /// A change made while no watcher ran has no event; the catch-up scan finds it by its ctime (after
    /// the journal's last write) and sends it while the full sync at start is still held.
    @Test("a change made while no watcher ran arrives before the full sync at start ends")
    func changesWhileStoppedAreCaughtUpAtOnce() async throws {
      let fixture = try EngineFixture()
      try FS.write(fixture.src, "base.txt", "there before")
      try await fixture.start()
      try await fixture.expectConverged()
      try await fixture.stop()

      try FS.mkdir(fixture.src, "made")
      try FS.write(fixture.src, "made/while-down.txt", "made while no watcher ran")
      // As a restore leaves a file: a new status (ctime), the backup's content and mtime. It is
      // rechecked, not sent again.
      let baseInode = try inode(fixture.daemon.backup + "/base.txt")
      var st = stat()
      #expect(lstat(fixture.src + "/base.txt", &st) == 0)
      var times = [st.st_atim, st.st_mtim]
      #expect(utimensat(AT_FDCWD, fixture.src + "/base.txt", &times, AT_SYMLINK_NOFOLLOW) == 0)
      let control = try fixture.tmp.sub("control")
      fixture.config.rsyncPath = try fullSyncHoldingRsync(
        in: fixture.tmp.path, control: control, source: fixture.src)
      try fixture.launch()
      let started = try await eventually { access(control + "/full-sync-started", F_OK) == 0 }
      #expect(started, "the full sync never started: \(fixture.engine.status())")
      let arrived = try await eventually {
        FileManager.default.fileExists(atPath: fixture.daemon.backup + "/made/while-down.txt")
      }
      #expect(arrived, "a change made while stopped waited for the full sync: \(fixture.engine.status())")
      #expect(fixture.engine.status().fullSyncs == 0)
      _ = FileManager.default.createFile(atPath: control + "/release", contents: nil)
      try await fixture.waitWatching()
      try await fixture.expectConverged()
      #expect(try inode(fixture.daemon.backup + "/base.txt") == baseInode, "an unchanged file was sent again")
      try await fixture.stop()
    }
  }
}

/// The inode number of `path`.
private func inode(_ path: String) throws -> UInt64 {
  var st = stat()
  guard lstat(path, &st) == 0 else { throw POSIXErrorBox(errno, "stat \(path)") }
  return UInt64(st.st_ino)
}

/// An rsync wrapper that holds every full sync (a run of the whole `source` with `--delete` and no
/// path list; not, say, the removal of a mass-change marker) until
/// `control/release` exists, records the priority it runs at, and hides `late-*` from its list;
/// other runs go to rsync unchanged.
private func fullSyncHoldingRsync(in dir: String, control: String, source: String) throws -> String {
  let path = dir + "/rsync-holding-full-syncs"
  let script = """
    #!/bin/sh
    full=no
    del=no
    for arg in "$@"; do
      case "$arg" in
        --delete) del=yes ;;
        '\(source)/') full=yes ;;
      esac
    done
    [ "$del" = yes ] || full=no
    for arg in "$@"; do
      case "$arg" in
        --files-from=*|--list-only) full=no ;;
      esac
    done
    if [ "$full" = yes ]; then
      : > '\(control)/full-sync-started'
      while [ ! -e '\(control)/release' ]; do sleep 0.05; done
      cut -d' ' -f19 /proc/$$/stat > '\(control)/full-sync-nice'
      ionice -p $$ > '\(control)/full-sync-ionice' 2>&1
      exec /usr/bin/rsync --filter='H late-*' "$@"
    fi
    exec /usr/bin/rsync "$@"

    """
  try script.write(toFile: path, atomically: true, encoding: .utf8)
  guard chmod(path, 0o755) == 0 else { throw POSIXErrorBox(errno) }
  return path
}
