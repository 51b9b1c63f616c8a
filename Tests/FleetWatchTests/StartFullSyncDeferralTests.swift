import FleetTestSupport
import Foundation
import Testing

@testable import FleetWatch

/// A rig at a restart that catches up without a full sync first: the full sync at start may wait
/// until `seconds` from now.
private func restartRig(workers: Int = 2, waitAtMost seconds: UInt64 = 600, gone: Set<RelativePath> = [])
  -> Rig
{
  var rig = Rig(workers: workers, gone: gone)
  rig.dispatcher.startFullSyncNotAfter = rig.clock.now + seconds * 1_000 * ms
  return rig
}

/// The works of the transfers started since the last call.
private func works(_ rig: Rig) -> [Transfer.Work] { rig.sender.takeStarted().map(\.work) }

@Suite("The full sync at a restart waits for an idle moment")
struct StartFullSyncDeferralTests {
  /// Replayed changes and what the catch-up scan found go first; the full sync starts once nothing
  /// is pending, running or to be rechecked. The state is `initialSync` all along.
  @Test func itStartsOnceNothingIsPendingRunningOrToBeRechecked() {
    var rig = restartRig()
    rig.accept([entry("replayed")])
    let first = rig.dispatcher.handle(.wake)
    #expect(first.effects == [.initialSyncStarted, .startFullSyncDeferred])
    #expect(rig.dispatcher.initialSyncRunning)
    rig.clock.advance(ms: 2)
    _ = rig.dispatcher.handle(.wake)
    let live = rig.sender.takeStarted()
    #expect(live.map(\.work) == [.paths([entry("replayed")])])
    let found = rig.dispatcher.handle(.recheck([entry("found")]))
    #expect(!found.effects.contains(.fullSyncStarted))
    let recheck = rig.sender.takeStarted()
    #expect(recheck.map(\.work) == [.recheck([entry("found")])])
    _ = rig.dispatcher.handle(.finished(id: live[0].id, outcome: ok))
    #expect(works(rig).isEmpty, "the full sync started while a recheck ran")
    let idle = rig.dispatcher.handle(.finished(id: recheck[0].id, outcome: ok))
    #expect(idle.effects.contains(.fullSyncStarted))
    #expect(!idle.effects.contains(.initialSyncStarted), "the state was set once, when it began to wait")
    let full = rig.sender.takeStarted()
    #expect(full.map(\.work) == [.fullSync])
    let end = rig.dispatcher.handle(.finished(id: full[0].id, outcome: ok))
    #expect(end.effects.contains(.fullSyncFinished(ok)))
    #expect(!rig.dispatcher.initialSyncRunning)
    #expect(works(rig).isEmpty, "nothing ran beside the full sync: nothing to recheck")
  }

  /// While the catch-up scan's first pass runs, what it finds is about to come: the full sync waits
  /// for it even with nothing pending yet.
  @Test func itWaitsForTheCatchUpScansFirstPass() {
    var rig = restartRig()
    rig.dispatcher.catchingUp = true
    #expect(rig.dispatcher.handle(.wake).effects == [.initialSyncStarted, .startFullSyncDeferred])
    rig.dispatcher.catchingUp = false
    #expect(rig.dispatcher.handle(.wake).effects == [.fullSyncStarted])
  }

  /// Under load that never pauses it starts when the wait is over, beside the live transfers; the
  /// dispatcher asks to be called by then.
  @Test func underSustainedLoadItStartsWhenTheWaitIsOver() {
    var rig = restartRig(waitAtMost: 1)
    rig.accept([entry("a")])
    _ = rig.dispatcher.handle(.wake)
    rig.clock.advance(ms: 2)
    let busy = rig.dispatcher.handle(.wake)
    #expect(works(rig) == [.paths([entry("a")])])
    #expect(busy.wake == .at(rig.dispatcher.startFullSyncNotAfter ?? 0))
    for i in 0..<9 {
      rig.accept([entry("b\(i)")])
      rig.clock.advance(ms: 100)
      _ = rig.dispatcher.handle(.wake)
      #expect(!works(rig).contains(.fullSync), "started after \(i + 1) × 100 ms")
    }
    rig.clock.advance(ms: 100)
    _ = rig.dispatcher.handle(.wake)
    #expect(works(rig).contains(.fullSync))
  }

  /// The deletes replayed from the journal wait for the full sync, which settles them, so that the
  /// delete limit judges them with the whole tree; they do not go live while it waits.
  @Test func theReplayedDeletesWaitForTheFullSync() {
    var rig = restartRig(gone: [rel("old")])
    rig.accept([entry("old"), entry("new")])
    _ = rig.dispatcher.handle(.wake)
    #expect(works(rig).isEmpty)
    rig.clock.advance(ms: 200)
    _ = rig.dispatcher.handle(.wake)
    let live = rig.sender.takeStarted()
    #expect(live.map(\.work) == [.paths([entry("new")])])
    _ = rig.dispatcher.handle(.finished(id: live[0].id, outcome: ok))
    let full = rig.sender.takeStarted()
    #expect(full.map(\.work) == [.fullSync])
    #expect(!rig.source.queue.isIdle, "the replayed delete was dropped")
    _ = rig.dispatcher.handle(.finished(id: full[0].id, outcome: ok))
    #expect(rig.source.queue.isIdle, "the full sync did not settle the replayed delete")
  }

  /// A full sync asked for (SIGUSR1, an overflow: events were lost) does not wait; neither does a
  /// degraded watcher's, nor one without the engine's go-ahead.
  @Test func aRequestADegradedWatcherOrAFirstRunDoesNotWait() {
    var asked = restartRig()
    asked.accept([entry("a")])
    _ = asked.dispatcher.handle(.wake)
    let requested = asked.dispatcher.handle(.fullSyncRequested)
    #expect(requested.effects.contains(.fullSyncStarted))

    var degraded = restartRig()
    degraded.dispatcher.degraded = true
    degraded.accept([entry("a")])
    #expect(degraded.dispatcher.handle(.wake).effects.contains(.fullSyncStarted))

    var first = Rig()
    first.accept([entry("a")])
    #expect(first.dispatcher.handle(.wake).effects == [.initialSyncStarted, .fullSyncStarted])
  }

  /// The record of the last full sync matches only the same target and excludes, and is gone once
  /// forgotten.
  @Test func theFullSyncRecordMatchesOnlyTheSameTargetAndExcludes() throws {
    let state = try makeTempDir()
    defer { try? FileManager.default.removeItem(atPath: state) }
    var config = WatchConfig(
      source: "/src", target: RsyncTarget(user: "u", host: "backup", module: "m"), stateDir: state)
    config.excludes = ["*.tmp"]
    #expect(!FullSyncRecord.matches(config))
    try FullSyncRecord.save(config)
    #expect(FullSyncRecord.matches(config))
    var moved = config
    moved.target = RsyncTarget(user: "u", host: "other", module: "m")
    #expect(!FullSyncRecord.matches(moved))
    var included = config
    included.excludes = []
    #expect(!FullSyncRecord.matches(included))
    FullSyncRecord.forget(config)
    #expect(!FullSyncRecord.matches(config))
  }
}

@Suite("Rechecks are not held back by a busy source")
struct RecheckShareTests {
  /// What the catch-up scan found is older than the changes due now: with a backlog that could fill
  /// every worker, a recheck still starts at once; when a worker frees up, a waiting recheck takes it
  /// as long as fewer than half the workers recheck.
  @Test func rechecksTakeUpToHalfTheWorkersFirst() {
    var rig = Rig(workers: 4, maxBatchPaths: 100)
    rig.initialFullSync()
    rig.accept((0..<1_000).map { entry("live-\($0)") })
    rig.clock.advance(ms: 200)
    let first = rig.dispatcher.handle(.recheck((0..<300).map { entry("found-\($0)") }))
    _ = first
    let started = rig.sender.takeStarted()
    #expect(started.count == 4)
    #expect(started.filter { if case .recheck = $0.work { true } else { false } }.count == 2)
    // A live transfer ends: the next recheck does not wait for the backlog (two recheck already).
    let live = started.first { if case .paths = $0.work { true } else { false } }!
    _ = rig.dispatcher.handle(.finished(id: live.id, outcome: ok))
    #expect(rig.sender.takeStarted().map(\.work).allSatisfy { if case .paths = $0 { true } else { false } })
    let recheck = started.first { if case .recheck = $0.work { true } else { false } }!
    _ = rig.dispatcher.handle(.finished(id: recheck.id, outcome: ok))
    let next = rig.sender.takeStarted()
    #expect(next.count == 1 && { if case .recheck = next[0].work { true } else { false } }())
  }
}
