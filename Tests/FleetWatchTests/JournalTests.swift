import Foundation
import Logging
import Testing

@testable import FleetWatch

#if canImport(Glibc)
  import Glibc
#endif

@Suite("Journal: append, replay, compact", .serialized)
struct JournalTests {
  @Test func appendReplayCompact() throws {
    let dir = try makeTempDir()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let path = dir + "/journal"
    let names: [SyncPath] = [
      entry("a"), entry("dir/with space"), entry("new\nline"), .entry(RelativePath([0xFF, 0x00 + 0x41])!),
      entry("-dash"), tree("t"),
    ]
    do {
      let j = try Journal(path: path)
      try j.append(names)
      try j.append([entry("a"), entry("late")])
      #expect(j.size > 0)
    }
    #expect(try Journal.replay(path: path) == names + [entry("late")])

    // Compaction replaces the file with what is outstanding; the journal stays appendable.
    let j = try Journal(path: path)
    #expect(j.beginCompaction())
    #expect(!j.beginCompaction())  // one at a time
    try j.finishCompaction(keeping: [entry("late")])
    #expect(try Journal.replay(path: path) == [entry("late")])
    try j.append([entry("after")])
    #expect(try Journal.replay(path: path) == [entry("late"), entry("after")])
    #expect(j.beginCompaction())
    try j.finishCompaction(keeping: [])
    #expect(try Journal.replay(path: path).isEmpty)
    #expect(j.size == 0)
    var st = stat()
    #expect(stat(path, &st) == 0 && st.st_size == 0 && st.st_mode & 0o777 == 0o600)
  }

  @Test func tornAndUnsafeRecordsAreSkipped() throws {
    let dir = try makeTempDir()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let path = dir + "/journal"
    var raw: [UInt8] = []
    for r in ["ok", "/abs", "a/../b", "", "x//y", "fine/", ".", "./a", "..", "torn-without-nul"] {
      raw += b(r)
      if r != "torn-without-nul" { raw.append(0) }
    }
    try Data(raw).write(to: URL(fileURLWithPath: path))
    // `.` alone is the source root (its attributes changed); `.` inside a path is not safe.
    #expect(try Journal.replay(path: path) == [entry("ok"), tree("fine"), .root])
    #expect(try Journal.replay(path: dir + "/does-not-exist").isEmpty)
  }

  @Test func theOnDiskFormatIsUnchanged() throws {
    let dir = try makeTempDir()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    // Records as the engine has always written them: each ended by NUL, `.` for the source root,
    // a trailing `/` for a directory sent whole, names in any bytes.
    let raw: [UInt8] = b("a") + [0] + b("dir/") + [0] + b(".") + [0] + [0xFF, 0x41] + [0] + b("x/y") + [0]
    let paths: [SyncPath] = [
      entry("a"), tree("dir"), .root, .entry(RelativePath([0xFF, 0x41])!), entry("x/y"),
    ]
    try Data(raw).write(to: URL(fileURLWithPath: dir + "/old"))
    #expect(try Journal.replay(path: dir + "/old") == paths)
    do {
      let j = try Journal(path: dir + "/new")
      try j.append(paths)
    }
    #expect(try Array(Data(contentsOf: URL(fileURLWithPath: dir + "/new"))) == raw)
  }

  /// A path that arrived is not replayed; one changed again after it arrived is.
  @Test func doneRecordsKeepArrivedPathsOutOfTheReplay() throws {
    let dir = try makeTempDir()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let path = dir + "/journal"
    let j = try Journal(path: path)
    try j.append([entry("a"), entry("b"), tree("t"), .root])
    try j.markDone([entry("a"), tree("t"), .root])
    #expect(try Journal.replay(path: path) == [entry("b")])
    try j.append([entry("a")])
    #expect(try Journal.replay(path: path) == [entry("b"), entry("a")])
    // A done record of a path never accepted, or torn, changes nothing.
    try j.markDone([entry("never")])
    var raw = try Array(Data(contentsOf: URL(fileURLWithPath: path)))
    raw += [Journal.doneMark] + b("b")
    try Data(raw).write(to: URL(fileURLWithPath: path))
    #expect(try Journal.replay(path: path) == [entry("b"), entry("a")])
  }

  /// The engine marks done only what is not outstanding: a path changed again during its transfer
  /// stays in the replay.
  @Test func theEngineMarksDoneOnlyWhatIsNotChangedAgain() throws {
    let dir = try makeTempDir()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let path = dir + "/journal"
    let config = WatchConfig(
      source: dir, target: RsyncTarget(user: nil, host: "h", module: "m"), stateDir: dir)
    let core = EngineCore(
      config: config, logger: Logger(label: "test"), journal: try Journal(path: path), replayed: [])
    core.accept([entry("sent"), entry("again")])
    #expect(core.takeReady(limit: 2, delay: 0, now: .max) == .batch([entry("again"), entry("sent")]))
    core.accept([entry("waiting"), entry("again")])  // `again` changed again while in flight
    core.done([entry("sent"), entry("again")])
    #expect(try Journal.replay(path: path) == [entry("again"), entry("waiting")])
  }

  @Test func appendsDuringACompactionGoToTheNewFile() throws {
    let dir = try makeTempDir()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let path = dir + "/journal"
    let held = Hold()
    let j = try Journal(path: path, compactionHook: held.hook)
    try j.append([entry("old"), entry("kept")])
    #expect(j.beginCompaction())
    let compacted = DispatchSemaphore(value: 0)
    Thread {
      try? j.finishCompaction(keeping: [entry("kept")])
      compacted.signal()
    }.start()
    try held.waitEntered()
    // The new file is written and synced; the compaction waits in the hook. Appends go on.
    let appended = DispatchSemaphore(value: 0)
    Thread {
      try? j.append([entry("during")])
      appended.signal()
    }.start()
    let notBlocked = appended.wait(timeout: .now() + 30) == .success
    #expect(notBlocked, "an append waited for the compaction")
    held.release()
    #expect(compacted.wait(timeout: .now() + 60) == .success)
    if !notBlocked { appended.wait() }
    #expect(try Journal.replay(path: path) == [entry("kept"), entry("during")])
    try j.append([entry("after")])
    #expect(try Journal.replay(path: path) == [entry("kept"), entry("during"), entry("after")])
  }

  @Test func queueOperationsGoOnWhileTheJournalIsCompacted() throws {
    let dir = try makeTempDir()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let path = dir + "/journal"
    let held = Hold()
    let journal = try Journal(path: path, compactionHook: held.hook)
    let config = WatchConfig(
      source: dir, target: RsyncTarget(user: nil, host: "h", module: "m"), stateDir: dir)
    let core = EngineCore(
      config: config, logger: Logger(label: "test"), journal: journal, replayed: [], compactBytes: 1)
    core.accept([entry("a"), entry("b")])
    #expect(core.takeReady(limit: .max, delay: 0, now: .max) == .batch([entry("a"), entry("b")]))
    // a arrived, b is still in flight: the journal, over compactBytes, is compacted down to b.
    let compacted = DispatchSemaphore(value: 0)
    Thread {
      core.done([entry("a")])
      compacted.signal()
    }.start()
    try held.waitEntered()
    // The compaction waits in its hook; changes are accepted, re-queued and taken meanwhile.
    let operated = DispatchSemaphore(value: 0)
    Thread {
      core.accept([entry("c")])
      core.requeue([entry("b")])
      _ = core.takeReady(limit: .max, delay: 0, now: .max)
      operated.signal()
    }.start()
    let notBlocked = operated.wait(timeout: .now() + 30) == .success
    #expect(notBlocked, "queue operations waited for the journal compaction")
    held.release()
    #expect(compacted.wait(timeout: .now() + 60) == .success)
    if !notBlocked { operated.wait() }
    // The compacted journal holds what is outstanding: b, and c accepted during the compaction.
    #expect(Set(try Journal.replay(path: path)) == [entry("b"), entry("c")])
    // Idle: the journal is emptied.
    core.done([entry("b"), entry("c")])
    #expect(try Journal.replay(path: path).isEmpty)
    #expect(journal.size == 0)
  }
}

/// A compaction hook that holds the compaction until the test releases it.
private final class Hold: Sendable {
  private let entered = DispatchSemaphore(value: 0)
  private let released = DispatchSemaphore(value: 0)

  var hook: @Sendable () -> Void {
    { [self] in
      entered.signal()
      released.wait()
    }
  }

  /// Waits until a compaction is in the hook.
  func waitEntered() throws {
    guard entered.wait(timeout: .now() + 60) == .success else {
      throw HoldTimeout()
    }
  }

  func release() { released.signal() }

  struct HoldTimeout: Error {}
}
