import FleetTestSupport
import Foundation
import Testing

@testable import FleetWatch

#if canImport(Glibc)
  import Glibc
#endif

/// Waits until the wall clock is 50 ms into a second it was not in before, and returns that second:
/// whatever was changed before has an older `ctime`, whatever is changed after has this one or later
/// (the margin covers the kernel's coarse clock).
private func nextSecond() -> Int {
  var now = timespec()
  clock_gettime(CLOCK_REALTIME, &now)
  let second = Int(now.tv_sec) + 1
  var wait = timespec(tv_sec: 0, tv_nsec: 1_050_000_000 - now.tv_nsec)
  if wait.tv_nsec >= 1_000_000_000 {
    wait.tv_sec = 1
    wait.tv_nsec -= 1_000_000_000
  }
  var left = timespec()
  while nanosleep(&wait, &left) != 0 && errno == EINTR { wait = left }
  return second
}

/// Writes `content` to a new file at `path`.
private func put(_ path: String, _ content: String) throws {
  try Data(content.utf8).write(to: URL(fileURLWithPath: path))
}

@Suite("Catch-up scan")
struct CatchUpScanTests {
  /// A tree made before the watcher stopped, changed in every way while it was stopped: each change
  /// is found once, nothing unchanged is; entries made, renamed or removed come in the first batch,
  /// before the files written in place (which need every file looked at).
  @Test func findsEveryChangeOnceAndNewEntriesFirst() throws {
    let base = try makeTempDir()
    defer { try? FileManager.default.removeItem(atPath: base) }
    let fm = FileManager.default
    for dir in ["old/leaf", "old/other", "old/deep/er", "cache"] {
      try fm.createDirectory(atPath: "\(base)/\(dir)", withIntermediateDirectories: true)
    }
    for file in ["old/leaf/a", "old/leaf/b", "old/other/c", "old/deep/er/d", "old/deep/e", "moved", "gone"] {
      try put(base + "/" + file, "before")
    }
    let since = nextSecond()
    try put(base + "/" + "old/leaf/new", "made while stopped")
    try FileManager.default.createDirectory(
      atPath: base + "/old/deep/er/newdir", withIntermediateDirectories: false)
    try put(base + "/" + "old/deep/er/newdir/inside", "in a new directory")
    #expect(rename(base + "/moved", base + "/old/other/moved") == 0)
    #expect(unlink(base + "/gone") == 0)
    try put(base + "/" + "cache/skipped", "excluded")
    let inPlace = open(base + "/old/deep/e", O_WRONLY | O_APPEND)
    #expect(inPlace >= 0)
    #expect(write(inPlace, "x", 1) == 1)
    close(inPlace)

    let scan = CatchUpScan(root: b(base), excludes: ExcludeMatcher(["cache/"]), since: since)
    var batches: [[SyncPath]] = []
    let outcome = scan.run(accept: { batches.append($0) }, beat: {}, shouldStop: { false })
    let all = batches.flatMap { $0 }
    #expect(all.count == Set(all).count, "a path was found twice: \(all)")
    #expect(
      Set(all) == [
        entry("old/leaf"), entry("old/leaf/new"), entry("old/deep/er"), entry("old/deep/er/newdir"),
        entry("old/deep/er/newdir/inside"), entry("old/other"), entry("old/other/moved"), entry("old/deep/e"),
      ])
    let first = Set(batches.first ?? [])
    #expect(first.contains(entry("old/leaf/new")) && first.contains(entry("old/other/moved")))
    #expect(first.contains(entry("old/deep/er/newdir/inside")))
    #expect(!first.contains(entry("old/deep/e")), "a file written in place came before new entries")
    #expect(outcome.changed == all.count)
    #expect(!outcome.stopped)
  }

  /// Nothing changed since: nothing found.
  @Test func anUnchangedTreeYieldsNothing() throws {
    let base = try makeTempDir()
    defer { try? FileManager.default.removeItem(atPath: base) }
    try FileManager.default.createDirectory(atPath: base + "/a/b", withIntermediateDirectories: true)
    try put(base + "/" + "a/b/f", "x")
    let since = nextSecond()
    var all: [SyncPath] = []
    let outcome = CatchUpScan(root: b(base), excludes: ExcludeMatcher([]), since: since)
      .run(accept: { all += $0 }, beat: {}, shouldStop: { false })
    #expect(all.isEmpty)
    #expect(outcome.changed == 0)
  }
}
