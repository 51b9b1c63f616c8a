import Testing

@testable import FleetWatch

/// An rsync error line naming `path` on the receiver (relative to the module, as rsync prints it).
private func named(_ path: String) -> RsyncPathError {
  RsyncPathError(
    location: .path(rel(path), orTempFor: nil),
    line: "rsync: [receiver] mkstemp \"\(path)\" failed: Permission denied (13)")
}

/// Exit 23 where rsync names `paths`.
private func incomplete(_ paths: String...) -> TransferOutcome {
  .incomplete(errors: paths.map(named), message: "some files were not transferred (rsync exit 23)")
}

/// Exit 23 where rsync names no path that can be told.
private let unexplained = TransferOutcome.incomplete(
  errors: [RsyncPathError(location: .unknown, line: "rsync: connection reset")], message: "exit 23")

extension Rig {
  /// The transfers started since the last call, with their paths.
  func startedTransfers() -> [(id: Int, paths: [SyncPath])] {
    sender.takeStarted().map { t in
      if case .paths(let p) = t.work { return (t.id, p) }
      return (t.id, [])
    }
  }

  /// Sends `paths` as one due batch and returns its transfer.
  mutating func sendBatch(_ paths: [SyncPath]) -> (id: Int, paths: [SyncPath]) {
    accept(paths)
    clock.advance(ms: 100)
    _ = dispatcher.handle(.wake)
    let started = startedTransfers()
    precondition(started.count == 1, "expected one transfer, got \(started)")
    return started[0]
  }

  /// The retry delays of the quarantine effects in `step`.
  static func quarantined(_ step: TransferDispatcher.Step) -> [(SyncPath, Int, Duration)] {
    step.effects.compactMap {
      if case .quarantined(let path, let failures, let retryIn, _) = $0 { return (path, failures, retryIn) }
      return nil
    }
  }
}

@Suite("Exit 23: a failing path is retried on its own while the others flow")
struct PathQuarantineTests {
  @Test func theFailingPathIsQuarantinedAndTheOthersAreDone() {
    var rig = Rig(workers: 1)
    rig.initialFullSync()
    let batch = rig.sendBatch([entry("a"), entry("b/f"), entry("c")])
    let step = rig.dispatcher.handle(.finished(id: batch.id, outcome: incomplete("b/f")))
    let q = Rig.quarantined(step)
    #expect(q.count == 1 && q[0].0 == entry("b/f") && q[0].1 == 1 && q[0].2 == .seconds(1))
    // Not a failure of the target: no backoff of everything.
    #expect(!step.effects.contains { if case .backingOff = $0 { true } else { false } })
    // a and c arrived; b/f is still outstanding (in the journal, counted as lag).
    #expect(rig.source.queue.outstanding == [entry("b/f")])
    #expect(rig.dispatcher.quarantine.failing.map(\.sends) == [[entry("b/f")]])

    // New changes flow at once, without the failing path, though it is the oldest change.
    let next = rig.sendBatch([entry("d")])
    #expect(next.paths == [entry("d")])
    _ = rig.dispatcher.handle(.finished(id: next.id, outcome: ok))
    #expect(rig.source.queue.outstanding == [entry("b/f")])
  }

  @Test func aPathChangedAgainWhileQuarantinedDoesNotJoinTheBatches() {
    var rig = Rig(workers: 1)
    rig.initialFullSync()
    let batch = rig.sendBatch([entry("a"), entry("b")])
    _ = rig.dispatcher.handle(.finished(id: batch.id, outcome: incomplete("b")))
    rig.accept([entry("b"), entry("c")])
    rig.clock.advance(ms: 100)
    _ = rig.dispatcher.handle(.wake)
    #expect(rig.startedTransfers().map(\.paths) == [[entry("c")]])
  }

  @Test func retriesGoAloneAndBackOffUpToTheMaximum() {
    var rig = Rig(workers: 2)
    rig.initialFullSync()
    let batch = rig.sendBatch([entry("a"), entry("bad")])
    var step = rig.dispatcher.handle(.finished(id: batch.id, outcome: incomplete("bad")))
    var delays = Rig.quarantined(step).map(\.2)
    for failures in 2...6 {
      // Not before its time.
      let due = rig.dispatcher.quarantine.entries[0].retryAt
      #expect(step.wake == .at(due))
      rig.clock.now = due - 1
      _ = rig.dispatcher.handle(.wake)
      #expect(rig.startedTransfers().isEmpty)
      rig.clock.now = due
      _ = rig.dispatcher.handle(.wake)
      let retry = rig.startedTransfers()
      #expect(retry.map(\.paths) == [[entry("bad")]])
      // Listed while its retry runs.
      #expect(rig.dispatcher.quarantine.failing.count == 1)
      step = rig.dispatcher.handle(.finished(id: retry[0].id, outcome: incomplete("bad")))
      let q = Rig.quarantined(step)
      #expect(q.map(\.1) == [failures])
      delays += q.map(\.2)
    }
    // Rig: retryInitial 1 s, retryMax 8 s, jitter 1.
    #expect(delays == [.seconds(1), .seconds(2), .seconds(4), .seconds(8), .seconds(8), .seconds(8)])
  }

  @Test func aRetryThatArrivesReleasesThePath() {
    var rig = Rig(workers: 1)
    rig.initialFullSync()
    let batch = rig.sendBatch([entry("a"), entry("bad")])
    _ = rig.dispatcher.handle(.finished(id: batch.id, outcome: incomplete("bad")))
    rig.clock.now = rig.dispatcher.quarantine.entries[0].retryAt
    _ = rig.dispatcher.handle(.wake)
    let retry = rig.startedTransfers()
    let step = rig.dispatcher.handle(.finished(id: retry[0].id, outcome: ok))
    #expect(step.effects.contains(.released(path: entry("bad"), failures: 1)))
    #expect(rig.dispatcher.quarantine.isEmpty)
    #expect(rig.source.queue.isIdle)
  }

  @Test func whenRsyncDoesNotSayWhichFailedTheBatchIsSplitUntilItIsFound() {
    var rig = Rig(workers: 2)
    rig.initialFullSync()
    let paths = [entry("a"), entry("b"), entry("c"), entry("d")]
    let batch = rig.sendBatch(paths)
    var step = rig.dispatcher.handle(.finished(id: batch.id, outcome: unexplained))
    #expect(Rig.quarantined(step).isEmpty)
    // Each half alone, at once.
    var halves = rig.startedTransfers()
    #expect(halves.map(\.paths) == [[entry("a"), entry("b")], [entry("c"), entry("d")]])
    step = rig.dispatcher.handle(
      .finished(id: halves[0].id, outcome: ok), .finished(id: halves[1].id, outcome: unexplained))
    halves = rig.startedTransfers()
    #expect(halves.map(\.paths) == [[entry("c")], [entry("d")]])
    step = rig.dispatcher.handle(
      .finished(id: halves[0].id, outcome: ok), .finished(id: halves[1].id, outcome: unexplained))
    #expect(Rig.quarantined(step).map(\.0) == [entry("d")])
    #expect(rig.source.queue.outstanding == [entry("d")])
    #expect(rig.dispatcher.quarantine.failing.count == 1)
  }

  @Test func aTreeFailsWithAPathInsideItAndAnEntryWithItsImpliedParent() {
    let errors = [named("t/x/y"), named("p")]
    let split = PathQuarantine.isolate(sends: [entry("a"), entry("p/f"), tree("t")], errors: errors)
    #expect(Set(split.failed.keys) == [entry("p/f"), tree("t")])
    #expect(split.arrived == [entry("a")] && split.suspects.isEmpty)
    // A receiver's temp name stands for its file.
    let temp = RsyncPathError(location: .path(rel("d/.f.Ab12Cd"), orTempFor: rel("d/f")), line: "mkstemp")
    #expect(
      PathQuarantine.isolate(sends: [entry("d/f"), entry("d/g")], errors: [temp]).failed.keys.first
        == entry("d/f"))
  }

  @Test func vanishedFilesAreStillRequeuedAsBefore() {
    var rig = Rig(workers: 1)
    rig.initialFullSync()
    let batch = rig.sendBatch([entry("a"), entry("gone")])
    let step = rig.dispatcher.handle(
      .finished(id: batch.id, outcome: .partial(code: 24, message: "vanished")))
    #expect(Rig.quarantined(step).isEmpty && rig.dispatcher.quarantine.isEmpty)
    // Back to pending, and due: sent again, together, at once.
    #expect(rig.startedTransfers().map(\.paths) == [[entry("a"), entry("gone")]])
  }

  @Test func aFullSyncThatNamesItsFailingPathsCountsAsDoneAndQuarantinesThem() {
    var rig = Rig(workers: 1)
    _ = rig.dispatcher.handle(.wake)
    let full = rig.sender.takeStarted()
    let step = rig.dispatcher.handle(.finished(id: full[0].id, outcome: incomplete("blocked/f")))
    #expect(step.effects.contains(.fullSyncFinished(incomplete("blocked/f"))))
    #expect(Rig.quarantined(step).map(\.0) == [entry("blocked/f")])
    #expect(rig.dispatcher.quarantine.failing.map(\.sends) == [[entry("blocked/f")]])
    // A later full sync that sends everything releases it.
    _ = rig.dispatcher.handle(.fullSyncRequested)
    let again = rig.sender.takeStarted()
    #expect(again.map(\.work) == [.fullSync])
    let end = rig.dispatcher.handle(.finished(id: again[0].id, outcome: ok))
    #expect(end.effects.contains(.released(path: entry("blocked/f"), failures: 1)))
    #expect(rig.source.queue.isIdle && rig.dispatcher.quarantine.isEmpty)
  }

  @Test func aFullSyncThatFailsWithoutNamingThePathsFailsAndIsRetried() {
    var rig = Rig(workers: 1)
    _ = rig.dispatcher.handle(.wake)
    let full = rig.sender.takeStarted()
    let step = rig.dispatcher.handle(.finished(id: full[0].id, outcome: unexplained))
    #expect(!step.effects.contains { if case .fullSyncFinished = $0 { true } else { false } })
    #expect(step.effects.contains { if case .backingOff = $0 { true } else { false } })
    rig.clock.advance(ms: 1_000)
    _ = rig.dispatcher.handle(.wake)
    #expect(rig.sender.takeStarted().map(\.work) == [.fullSync])
  }
}
