import FleetCore
import Foundation
import Logging
import Testing

@testable import FleetWatch

#if canImport(Glibc)
  import Glibc
#endif

/// The delete limit's tally across restarts: saved in the state directory, read back, its times
/// converted between boots, and an unreadable file read as a full window.
@Suite struct DeleteTallyTests {
  private let second: UInt64 = 1_000_000_000
  private let window: UInt64 = 600 * 1_000_000_000
  private let limit = DeleteLimit(count: 1_000, percent: nil)
  private let t0 = Date(timeIntervalSince1970: 1_800_000_000)

  /// A gate of `limit` on `stateDir`.
  private func gate(_ stateDir: String, limit: String = "1000") throws -> DeleteGate {
    var config = WatchConfig(
      source: "/nonexistent", target: RsyncTarget(user: "u", host: "b", module: "m"), stateDir: stateDir)
    config.maxDelete = try DeleteLimit.parse(limit)
    return try #require(DeleteGate(config: config, logger: Logger(label: "test")))
  }

  private func held(_ gate: DeleteGate) -> WatchStatus {
    var status = WatchStatus()
    gate.fill(&status)
    return status
  }

  @Test func theTallyRoundTripsThroughItsFile() throws {
    let dir = try makeTempDir()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    var budget = DeleteBudget(limit: limit, window: window)
    budget.fullSyncCounted(listed: 5_000, created: 0, deletes: 0)
    #expect(budget.decide(deletes: 600, paths: ["a"], now: 10 * second, date: t0) == .apply(cap: 600))
    #expect(budget.decide(deletes: 2_000, paths: nil, now: 20 * second, date: t0) == .hold)
    budget.show(examples: ["bulk/f1", "bulk/f2"])
    let path = dir + "/" + DeleteBudget.File.name
    try DeleteBudget.save(budget.tally, path: path, boot: "boot-a")

    var st = stat()
    #expect(stat(path, &st) == 0 && st.st_mode & 0o777 == 0o600)
    let now = DeleteBudget.Moment(monotonic: 30 * second, date: t0.addingTimeInterval(20))
    let loaded = try #require(
      try DeleteBudget.loadTally(path: path, boot: "boot-a", now: now, window: window))
    #expect(loaded == budget.tally)
    #expect(
      try DeleteBudget.loadTally(path: dir + "/none.json", boot: "boot-a", now: now, window: window) == nil)
  }

  @Test func withinOneBootTheMonotonicClockCountsWhateverTheWallClockDid() {
    var tally = DeleteBudget.Tally()
    tally.applied = [.init(at: .init(monotonic: 100 * second, date: t0), count: 600)]
    // The wall clock jumped an hour ahead; 300 s of monotonic time passed: still in the window.
    let later = DeleteBudget.Moment(monotonic: 400 * second, date: t0.addingTimeInterval(3_600))
    let restored = tally.restored(sameBoot: true, now: later, window: window)
    #expect(restored.applied.map(\.at.monotonic) == [100 * second])
    let expired = DeleteBudget.Moment(monotonic: 700 * second, date: t0)
    #expect(tally.restored(sameBoot: true, now: expired, window: window).applied.isEmpty)
  }

  @Test func afterARebootTheWallClockTellsTheAgeClampedToTheWindow() {
    var tally = DeleteBudget.Tally()
    let fiveMinutesAgo = DeleteBudget.Moment(monotonic: 9_999 * second, date: t0.addingTimeInterval(-300))
    let elevenMinutesAgo = DeleteBudget.Moment(monotonic: 9_000 * second, date: t0.addingTimeInterval(-660))
    let inTheFuture = DeleteBudget.Moment(monotonic: 1 * second, date: t0.addingTimeInterval(3_600))
    tally.applied = [
      .init(at: fiveMinutesAgo, count: 1), .init(at: elevenMinutesAgo, count: 2),
      .init(at: inTheFuture, count: 4),
    ]
    tally.fullSince = elevenMinutesAgo
    let now = DeleteBudget.Moment(monotonic: 1_000 * second, date: t0)
    let restored = tally.restored(sameBoot: false, now: now, window: window)
    // Five minutes old: five minutes left. Eleven: gone. A clock set back: counted as applied
    // now, so it counts for one whole window, not the hour to its date.
    #expect(restored.applied.map(\.count) == [1, 4])
    #expect(restored.applied.map(\.at.monotonic) == [700 * second, 1_000 * second])
    #expect(restored.applied.map(\.at.date) == [fiveMinutesAgo.date, inTheFuture.date])
    #expect(restored.fullSince == nil)
    var budget = DeleteBudget(limit: limit, window: window, tally: restored)
    #expect(budget.used(now: 1_000 * second) == 5)
    #expect(budget.used(now: 1_300 * second) == 4)
    #expect(budget.used(now: 1_600 * second) == 0)
    // Soon after boot (the monotonic clock younger than the age): never counted for less.
    let early = DeleteBudget.Moment(monotonic: 10 * second, date: t0)
    #expect(tally.restored(sameBoot: false, now: early, window: window).applied.first?.at.monotonic == 0)
    budget = DeleteBudget(
      limit: limit, window: window, tally: tally.restored(sameBoot: false, now: early, window: window))
    #expect(budget.used(now: 10 * second) == 5)
  }

  @Test func aChangedLimitAppliesToTheSavedTally() throws {
    let dir = try makeTempDir()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    #expect(try gate(dir).decide(deletes: 600, paths: ["a"]) == .apply(cap: 600))
    // Restarted with a smaller limit: the 600 applied already exceed it.
    #expect(try gate(dir, limit: "500").decide(deletes: 1, paths: ["b"]) == .hold)
    try FileManager.default.removeItem(atPath: dir + "/" + DeleteBudget.File.name)
    #expect(try gate(dir).decide(deletes: 600, paths: ["a"]) == .apply(cap: 600))
    // Restarted with a larger one: 4,400 are left of 5,000.
    let larger = try gate(dir, limit: "5000")
    #expect(larger.decide(deletes: 4_401, paths: ["c"]) == .hold)
    #expect(larger.decide(deletes: 4_400, paths: ["d"]) == .apply(cap: 4_400))
  }

  @Test func aRestartedGateShowsTheHoldAndCountsTheWindow() throws {
    let dir = try makeTempDir()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let first = try gate(dir)
    #expect(first.decide(deletes: 600, paths: ["a"]) == .apply(cap: 600))
    #expect(first.decide(deletes: 2_000, paths: nil) == .hold)
    first.held(examples: ["bulk/f1"])
    let before = held(first)

    let second = try gate(dir)
    let after = held(second)
    #expect(after.deletesHeld == 2_000)
    // Saved to the millisecond.
    let since = try #require(after.deletesHeldSince)
    #expect(abs(since.timeIntervalSince(try #require(before.deletesHeldSince))) < 0.001)
    #expect(after.deletesHeldPaths == ["bulk/f1"])
    // 500 would fit a fresh limit, not the 400 the window has left.
    #expect(second.decide(deletes: 500, paths: ["b"]) == .hold)
    #expect(second.decide(deletes: 400, paths: ["c"]) == .apply(cap: 400))
  }

  @Test func statusReadsDoNotWriteTheFile() throws {
    let dir = try makeTempDir()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let gate = try gate(dir)
    #expect(gate.decide(deletes: 2_000, paths: nil) == .hold)
    let path = dir + "/" + DeleteBudget.File.name
    #expect(FileManager.default.fileExists(atPath: path))
    try FileManager.default.removeItem(atPath: path)
    _ = held(gate)
    _ = gate.countDue(now: monotonicNanos())
    #expect(!FileManager.default.fileExists(atPath: path))
  }

  @Test func anUnreadableTallyCountsTheWindowAsFullUntilReleased() throws {
    let dir = try makeTempDir()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let path = dir + "/" + DeleteBudget.File.name
    for garbage in [
      "{\"version\": 1, \"boot\": \"x\"", "[]", "{\"version\": 2, \"boot\": \"x\", \"tally\": {}}",
    ] {
      try garbage.write(toFile: path, atomically: false, encoding: .utf8)
      let corrupt = try gate(dir)
      #expect(corrupt.decide(deletes: 1, paths: ["a"]) == .hold, "\(garbage)")
      #expect(held(corrupt).deletesHeld == 1)
    }
    // Saved as full: a restart with the file now readable still holds.
    let restarted = try gate(dir)
    #expect(restarted.decide(deletes: 1, paths: ["b"]) == .hold)
    // The operator releases: what is held is applied, and the window is known again.
    try "".write(toFile: restarted.requestPath, atomically: false, encoding: .utf8)
    #expect(restarted.countDue(now: monotonicNanos()))
    #expect(restarted.decide(deletes: 2, paths: nil) == .apply(cap: 2))
    #expect(restarted.decide(deletes: 10, paths: ["c"]) == .apply(cap: 10))
    #expect(!FileManager.default.fileExists(atPath: restarted.requestPath))
  }

  @Test func aMissingTallyIsAFreshStart() throws {
    let dir = try makeTempDir()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    #expect(try gate(dir).decide(deletes: 1_000, paths: ["a"]) == .apply(cap: 1_000))
  }

  @Test func theWindowFullMomentPassesLikeAnyOther() {
    let start = DeleteBudget.Moment(monotonic: 100 * second, date: t0)
    var budget = DeleteBudget(limit: limit, window: window, tally: .init(fullSince: start))
    #expect(budget.remaining(now: 100 * second) == 0)
    #expect(budget.decide(deletes: 1, paths: ["a"], now: 200 * second, date: t0) == .hold)
    #expect(budget.decide(deletes: 1, paths: nil, now: 700 * second, date: t0) == .apply(cap: 1))
    #expect(budget.tally.fullSince == nil)
  }
}
