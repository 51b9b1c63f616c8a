import Testing

@testable import FleetWatch

/// A clock the test moves by hand.
final class FakeClock: DispatchClock {
  var now: UInt64 = 1_000_000_000
  func advance(ms: UInt64) { now += ms * 1_000_000 }
}

/// A sender that only remembers what it was asked to start.
final class FakeSender: TransferSender {
  private(set) var started: [Transfer] = []
  func start(_ transfer: Transfer) { started.append(transfer) }

  /// What was started since the last call.
  func takeStarted() -> [Transfer] {
    defer { started = [] }
    return started
  }
}

/// The change queue without a lock or a journal.
final class FakeQueue: ChangeSource {
  var queue = ChangeQueue()
  func takeReady(limit: Int, delay: UInt64, now: UInt64) -> ChangeQueue.Ready {
    queue.takeReady(limit: limit, delay: delay, now: now)
  }
  /// What was accepted through the dispatcher (sent again after a full sync), in order.
  private(set) var accepted: [[SyncPath]] = []
  let clock: FakeClock
  init(clock: FakeClock) { self.clock = clock }
  func accept(_ paths: [SyncPath]) {
    accepted.append(paths)
    _ = queue.accept(paths, now: clock.now)
  }
  func pendingPaths(upTo limit: Int) -> [SyncPath]? { queue.pendingPaths(upTo: limit) }
  func take(where matches: (SyncPath) -> Bool) -> [SyncPath] { queue.take(where: matches) }
  func done(_ paths: [SyncPath]) { queue.done(paths) }
  func requeue(_ paths: [SyncPath]) { queue.requeue(paths) }
}

let ok = TransferOutcome.ok(files: 1, bytes: 1)
private let down = TransferOutcome.failed(kind: .unreachable, message: "cannot reach the daemon")
let ms: UInt64 = 1_000_000

/// A dispatcher with a fake clock, sender and queue; every path is a file unless `directories` says otherwise.
struct Rig {
  let clock = FakeClock()
  let sender = FakeSender()
  let source: FakeQueue
  var dispatcher: TransferDispatcher

  init(
    workers: Int = 2, maxBatchPaths: Int = 1_000, fullSyncInterval: Duration? = nil,
    directories: Set<RelativePath> = [], gone: Set<RelativePath> = []
  ) {
    source = FakeQueue(clock: clock)
    var config = WatchConfig(
      source: "/src", target: RsyncTarget(user: nil, host: "h", module: "m"), stateDir: "/state")
    config.workers = workers
    config.maxBatchPaths = maxBatchPaths
    config.batchDelay = .milliseconds(100)
    config.retryInitial = .seconds(1)
    config.retryMax = .seconds(8)
    config.fullSyncInterval = fullSyncInterval
    dispatcher = TransferDispatcher(
      settings: .init(config), clock: clock, sender: sender, source: source,
      kind: { directories.contains($0) ? .directory : gone.contains($0) ? .missing : .other }, jitter: { 1 })
  }

  /// Changes seen now.
  func accept(_ paths: [SyncPath]) { _ = source.queue.accept(paths, now: clock.now) }

  /// Runs the initial full sync to a good end.
  mutating func initialFullSync() {
    _ = dispatcher.handle(.wake)
    let full = sender.takeStarted()
    precondition(full.map(\.work) == [.fullSync])
    _ = dispatcher.handle(.finished(id: full[0].id, outcome: ok))
  }

  /// The paths of transfers started since the last call.
  func startedPaths() -> [[SyncPath]] {
    sender.takeStarted().map { t in
      if case .paths(let p) = t.work { return p }
      return []
    }
  }
}

@Suite("Transfer dispatcher: a state machine with a fake clock and a fake sender")
struct TransferDispatcherTests {
  /// Live changes flow beside a full sync; what they sent meanwhile is rechecked after it (the full
  /// sync may have deleted a file created after it listed the directory, or written an older copy).
  @Test func theFirstFullSyncRunsBesideLiveChangesWhichAreRecheckedAfterIt() {
    var rig = Rig()
    rig.accept([entry("replayed")])
    let first = rig.dispatcher.handle(.wake)
    #expect(first.effects == [.initialSyncStarted, .fullSyncStarted])
    #expect(rig.sender.takeStarted() == [Transfer(id: 0, work: .fullSync)])
    #expect(rig.dispatcher.initialSyncRunning)
    // The replayed change goes live beside it, as an idle watcher's change does.
    rig.clock.advance(ms: 2)
    _ = rig.dispatcher.handle(.wake)
    let replayed = rig.sender.takeStarted()
    #expect(replayed.map(\.work) == [.paths([entry("replayed")])])
    // A change during the full sync too, on the other worker (the full sync takes none).
    rig.accept([entry("during")])
    rig.clock.advance(ms: 100)
    _ = rig.dispatcher.handle(.wake)
    let during = rig.sender.takeStarted()
    #expect(during.map(\.work) == [.paths([entry("during")])])
    // A live transfer that ends while the full sync runs is done, and kept to be rechecked.
    _ = rig.dispatcher.handle(.finished(id: replayed[0].id, outcome: ok))
    #expect(rig.sender.started.isEmpty && rig.source.queue.pendingCount == 0)
    let end = rig.dispatcher.handle(.finished(id: 0, outcome: ok))
    #expect(end.effects == [.finished(ok), .steady, .fullSyncFinished(ok)])
    #expect(!rig.dispatcher.initialSyncRunning)
    // Rechecked at once on the free worker: sent where the backup differs, not as a change.
    #expect(rig.sender.takeStarted().map(\.work) == [.recheck([entry("replayed")])])
    // One that ends after the full sync is rechecked at once too.
    _ = rig.dispatcher.handle(.finished(id: during[0].id, outcome: ok))
    #expect(rig.sender.takeStarted().map(\.work) == [.recheck([entry("during")])])
    // Rechecked, they are done: nothing went back to the queue.
    _ = rig.dispatcher.handle(rig.dispatcher.running.keys.map { .finished(id: $0, outcome: ok) })
    #expect(rig.source.accepted.isEmpty && rig.source.queue.isIdle && rig.dispatcher.rechecks.isEmpty)
  }

  /// A recheck that fails makes its paths changes, sent whole; one beside a full sync is rechecked
  /// after it; what the catch-up scan found is rechecked at once, beside the full sync at start.
  @Test func aFailedRecheckBecomesChangesAndOneBesideAFullSyncIsRecheckedAfter() {
    var rig = Rig(workers: 1)
    _ = rig.dispatcher.handle(.wake)
    let full = rig.sender.takeStarted()
    #expect(full.map(\.work) == [.fullSync])
    _ = rig.dispatcher.handle(.recheck([entry("found")]))
    let first = rig.sender.takeStarted()
    #expect(first.map(\.work) == [.recheck([entry("found")])])
    _ = rig.dispatcher.handle(.finished(id: first[0].id, outcome: ok))
    #expect(rig.dispatcher.rechecks.isEmpty && rig.sender.started.isEmpty)
    _ = rig.dispatcher.handle(.finished(id: full[0].id, outcome: ok))
    let again = rig.sender.takeStarted()
    #expect(again.map(\.work) == [.recheck([entry("found")])])
    let vanished = TransferOutcome.partial(code: 24, message: "vanished")
    _ = rig.dispatcher.handle(.finished(id: again[0].id, outcome: vanished))
    #expect(rig.source.accepted == [[entry("found")]])
    #expect(rig.source.queue.pendingCount == 1)
  }

  @Test func anIdleWatchersChangeGoesAtOnceAndABusyOnesCoalesce() {
    var rig = Rig()
    rig.initialFullSync()
    let ms2 = TransferDispatcher.idleSettle
    // Idle: a change waits only for the rest of its write's events.
    let t0 = rig.clock.now
    rig.accept([entry("a")])
    #expect(rig.dispatcher.handle(.wake).wake == .at(t0 + ms2))
    rig.clock.advance(ms: 1)
    rig.accept([entry("a")])
    rig.clock.advance(ms: 1)
    _ = rig.dispatcher.handle(.wake)
    let first = rig.sender.takeStarted()
    #expect(first.map(\.work) == [.paths([entry("a")])])
    // Busy: while it runs, and for a batch delay after it started, changes coalesce as before.
    rig.clock.advance(ms: 10)
    _ = rig.dispatcher.handle(.finished(id: first[0].id, outcome: ok))
    let t1 = rig.clock.now
    rig.accept([entry("b")])
    #expect(rig.dispatcher.handle(.wake).wake == .at(t1 + 100 * ms))
    rig.clock.advance(ms: 100)
    _ = rig.dispatcher.handle(.wake)
    let second = rig.sender.takeStarted()
    #expect(second.map(\.work) == [.paths([entry("b")])])
    // Quiet for a batch delay after the last start, and nothing runs: idle again.
    _ = rig.dispatcher.handle(.finished(id: second[0].id, outcome: ok))
    rig.clock.advance(ms: 100)
    let t2 = rig.clock.now
    rig.accept([entry("c")])
    #expect(rig.dispatcher.handle(.wake).wake == .at(t2 + ms2))
  }

  /// A delete waits the batch delay even on an idle watcher: the source guard and the delete limit see
  /// a whole `rm -rf` in one batch.
  @Test func aDeleteWaitsTheBatchDelayEvenWhenIdle() {
    var rig = Rig(gone: [rel("gone")])
    rig.initialFullSync()
    let t0 = rig.clock.now
    rig.accept([entry("gone")])
    #expect(rig.dispatcher.handle(.wake).wake == .at(t0 + 100 * ms))
    rig.accept([entry("new")])
    #expect(rig.dispatcher.handle(.wake).wake == .at(t0 + 100 * ms), "a write beside a delete waits with it")
    rig.clock.advance(ms: 100)
    _ = rig.dispatcher.handle(.wake)
    #expect(rig.startedPaths() == [[entry("gone"), entry("new")]])
  }

  @Test func changesWaitForTheBatchingDelayThenAllGo() {
    var rig = Rig()
    rig.initialFullSync()
    // A transfer runs: the watcher is busy, and changes coalesce over the batch delay.
    rig.accept([entry("busy")])
    rig.clock.advance(ms: 2)
    _ = rig.dispatcher.handle(.wake)
    #expect(rig.startedPaths() == [[entry("busy")]])
    rig.accept([entry("a")])
    let t0 = rig.clock.now
    rig.clock.advance(ms: 60)
    rig.accept([entry("b")])
    #expect(rig.dispatcher.handle(.wake).wake == .at(t0 + 100 * ms))
    #expect(rig.sender.started.isEmpty)
    rig.clock.advance(ms: 40)
    _ = rig.dispatcher.handle(.wake)
    // Everything pending goes once the oldest is due, the younger change too, in one transfer.
    #expect(rig.startedPaths() == [[entry("a"), entry("b")]])
  }

  @Test func noTransferCarriesMoreThanMaxBatchPaths() {
    // Two free workers, 50 due paths, a cap of 25: two transfers of 25, not one of 50.
    var rig = Rig(workers: 2, maxBatchPaths: 25)
    rig.initialFullSync()
    rig.accept((0..<400).map { entry("burst/f\($0)") })
    rig.clock.advance(ms: 100)
    var sent: [[SyncPath]] = []
    var step = rig.dispatcher.handle(.wake)
    while true {
      let started = rig.sender.takeStarted()
      if started.isEmpty { break }
      for t in started {
        guard case .paths(let p) = t.work else { continue }
        sent.append(p)
        #expect(p.count <= 25, "a transfer of \(p.count) paths")
      }
      step = rig.dispatcher.handle(started.map { .finished(id: $0.id, outcome: ok) })
    }
    #expect(step.wake == .onEvent)
    #expect(sent.count == 16)
    #expect(Set(sent.joined()).count == 400)
    #expect(rig.source.queue.isIdle)
  }

  @Test func theOldestGoFirstAndFewPathsTakeOneWorker() {
    var rig = Rig(workers: 2, maxBatchPaths: 5)
    rig.initialFullSync()
    for i in 0..<20 {
      rig.accept([entry("p\(i)")])
      rig.clock.advance(ms: 1)
    }
    rig.clock.advance(ms: 100)
    _ = rig.dispatcher.handle(.wake)
    let first = rig.startedPaths()
    #expect(first.count == 2)
    #expect(Set(first.joined()) == Set((0..<10).map { entry("p\($0)") }))
    // Below minPathsPerWorker per worker, a batch is one transfer even with workers free.
    var few = Rig(workers: 4)
    few.initialFullSync()
    few.accept((0..<100).map { entry("f\($0)") })
    few.clock.advance(ms: 100)
    _ = few.dispatcher.handle(.wake)
    #expect(few.startedPaths().map(\.count) == [100])
  }

  @Test func overlappingPathsWaitForTheTransferThatHoldsThem() {
    var rig = Rig(workers: 2, directories: [rel("d")])
    rig.initialFullSync()
    rig.accept([entry("d/f")])
    rig.clock.advance(ms: 100)
    _ = rig.dispatcher.handle(.wake)
    let holder = rig.sender.takeStarted()
    #expect(holder.map(\.work) == [.paths([entry("d/f")])])
    // The directory is sent whole now, and d/f changes again: both wait, though a worker is free.
    rig.accept([tree("d"), entry("d/f")])
    rig.clock.advance(ms: 100)
    #expect(rig.dispatcher.handle(.wake).wake == .onEvent)
    #expect(rig.sender.started.isEmpty)
    #expect(rig.source.queue.pendingCount == 2)
    // Once the holder ends, they go: d/f with its tree.
    _ = rig.dispatcher.handle(.finished(id: holder[0].id, outcome: ok))
    #expect(rig.startedPaths() == [[tree("d")]])  // d/f travels with its tree
    #expect(rig.source.queue.pendingCount == 0 && rig.source.queue.inFlightCount == 2)
  }

  @Test func aRequestedFullSyncStartsBesideRunningTransfersAndTakesNoWorker() throws {
    var rig = Rig(workers: 2)
    rig.initialFullSync()
    rig.accept((0..<200).map { entry("x\($0)") })
    rig.clock.advance(ms: 100)
    _ = rig.dispatcher.handle(.wake)
    let running = rig.sender.takeStarted()
    #expect(running.count == 2)
    let request = rig.dispatcher.handle(.fullSyncRequested)
    #expect(request.effects == [.fullSyncStarted])
    let full = rig.sender.takeStarted()
    #expect(full.map(\.work) == [.fullSync])
    // One at a time: another request waits for it.
    _ = rig.dispatcher.handle(.fullSyncRequested)
    #expect(rig.sender.started.isEmpty)
    // A worker that frees up takes the next change while the full sync runs.
    _ = rig.dispatcher.handle(.finished(id: running[0].id, outcome: ok))
    rig.accept([entry("new")])
    rig.clock.advance(ms: 100)
    _ = rig.dispatcher.handle(.wake)
    let live = rig.sender.takeStarted()
    #expect(live.map(\.work) == [.paths([entry("new")])])
    _ = rig.dispatcher.handle(.finished(id: live[0].id, outcome: ok))
    // The full sync ends: what ran beside it and ended, started before it or after, is rechecked,
    // beside the second request's full sync. All of it ran beside that second full sync, so all of it
    // is rechecked again after it.
    let end = rig.dispatcher.handle(.finished(id: full[0].id, outcome: ok))
    #expect(end.effects.contains(.fullSyncFinished(ok)) && end.effects.contains(.fullSyncStarted))
    func rechecked(_ transfers: [Transfer]) -> [SyncPath] {
      transfers.flatMap { t -> [SyncPath] in
        if case .recheck(let p) = t.work { return p }
        return []
      }
    }
    let next = rig.sender.takeStarted()
    let nextFull = try #require(next.first { $0.work == .fullSync })
    guard case .paths(let first) = running[0].work, case .paths(let second) = running[1].work else {
      Issue.record("not path transfers: \(running)")
      return
    }
    #expect(Set(rechecked(next)) == Set(first + [entry("new")]))
    // The one still running ran beside the second full sync too: it waits for that one to end.
    _ = rig.dispatcher.handle(.finished(id: running[1].id, outcome: ok))
    #expect(rig.sender.started.isEmpty)
    _ = rig.dispatcher.handle(next.filter { $0.work != .fullSync }.map { .finished(id: $0.id, outcome: ok) })
    #expect(rig.sender.started.isEmpty)
    _ = rig.dispatcher.handle(.finished(id: nextFull.id, outcome: ok))
    #expect(Set(rechecked(rig.sender.takeStarted())) == Set(first + second + [entry("new")]))
    #expect(rig.source.accepted.isEmpty)
  }

  @Test func periodicFullSyncs() {
    var rig = Rig(fullSyncInterval: .seconds(10))
    let start = rig.clock.now
    rig.initialFullSync()
    #expect(rig.dispatcher.handle(.wake).wake == .at(start + 10_000 * ms))
    rig.clock.advance(ms: 10_000)
    _ = rig.dispatcher.handle(.wake)
    #expect(rig.sender.takeStarted().map(\.work) == [.fullSync])
    // While degraded (changes may be missed), every minute unless configured.
    var degraded = Rig()
    degraded.dispatcher.degraded = true
    #expect(degraded.dispatcher.handle(.wake).effects == [.fullSyncStarted])
    let full = degraded.sender.takeStarted()
    degraded.clock.advance(ms: 1_000)
    let end = degraded.clock.now
    #expect(degraded.dispatcher.handle(.finished(id: full[0].id, outcome: ok)).wake == .at(end + 60_000 * ms))
  }

  /// A second inotify overflow while a full sync runs: that sync may have listed a directory before
  /// the lost changes were made, so another full sync follows it; a periodic one does not repeat.
  @Test func aFullSyncRequestedWhileOneRunsGetsOneOfItsOwn() {
    var rig = Rig(fullSyncInterval: .seconds(10))
    rig.initialFullSync()
    _ = rig.dispatcher.handle(.fullSyncRequested)
    let first = rig.sender.takeStarted()
    #expect(first.map(\.work) == [.fullSync])
    _ = rig.dispatcher.handle(.fullSyncRequested)
    #expect(rig.sender.started.isEmpty)
    _ = rig.dispatcher.handle(.finished(id: first[0].id, outcome: ok))
    let second = rig.sender.takeStarted()
    #expect(second.map(\.work) == [.fullSync])
    // Due while it runs, the periodic full sync is the running one: none follows it.
    rig.clock.advance(ms: 20_000)
    _ = rig.dispatcher.handle(.wake)
    #expect(rig.sender.started.isEmpty)
    let end = rig.clock.now
    #expect(rig.dispatcher.handle(.finished(id: second[0].id, outcome: ok)).wake == .at(end + 10_000 * ms))
    #expect(rig.sender.started.isEmpty)
  }

  @Test func aFailureBacksOffOncePerOutageAndRequeues() throws {
    var rig = Rig(workers: 2)
    rig.initialFullSync()
    let seen = rig.clock.now
    rig.accept((0..<200).map { entry("x\($0)") })
    rig.clock.advance(ms: 100)
    _ = rig.dispatcher.handle(.wake)
    let both = rig.sender.takeStarted()
    #expect(both.count == 2)
    // Both transfers fail in the same outage: one backoff step, not two.
    let first = rig.dispatcher.handle(.finished(id: both[0].id, outcome: down))
    let second = rig.dispatcher.handle(.finished(id: both[1].id, outcome: down))
    let oneSecond = Duration.seconds(1)
    #expect(first.effects == [.finished(down), .backingOff(delay: oneSecond, failures: 1, outcome: down)])
    #expect(second.effects == [.finished(down)])
    let retryAt = rig.clock.now + 1_000 * ms
    #expect(second.wake == .at(retryAt))
    // Re-queued with their first-seen time.
    #expect(rig.source.queue.pendingCount == 200 && rig.source.queue.oldest == seen)
    // Nothing starts before the retry is due, whatever happens.
    rig.clock.advance(ms: 999)
    #expect(rig.dispatcher.handle(.wake, .fullSyncRequested).wake == .at(retryAt))
    #expect(rig.sender.started.isEmpty)
    // The retry timer fires: the requested full sync and the paths start.
    rig.clock.advance(ms: 1)
    _ = rig.dispatcher.handle(.wake)
    let again = rig.sender.takeStarted()
    #expect(again.map(\.work).first == .fullSync && again.count == 3)
    // They fail too: the next step doubles, once.
    let failed = rig.dispatcher.handle(again.map { .finished(id: $0.id, outcome: down) })
    #expect(
      failed.effects == [
        .finished(down), .backingOff(delay: .seconds(2), failures: 2, outcome: down), .finished(down),
        .finished(down),
      ])
    rig.clock.advance(ms: 2_000)
    _ = rig.dispatcher.handle(.wake)
    let retry = rig.sender.takeStarted()
    #expect(retry.map(\.work).first == .fullSync && retry.count == 3)
    // Success ends the backoff.
    let good = rig.dispatcher.handle(.finished(id: retry[0].id, outcome: ok))
    #expect(good.effects == [.finished(ok), .steady, .fullSyncFinished(ok)])
    _ = rig.dispatcher.handle(retry.dropFirst().map { .finished(id: $0.id, outcome: ok) })
    // The paths that ran beside it are sent once more, then all is done.
    rig.clock.advance(ms: 100)
    _ = rig.dispatcher.handle(.wake)
    _ = rig.dispatcher.handle(rig.sender.takeStarted().map { .finished(id: $0.id, outcome: ok) })
    #expect(rig.source.queue.isIdle)
  }

  @Test func partialTransfersBackOffFromTheFourthInARow() {
    var rig = Rig(workers: 1)
    rig.initialFullSync()
    let partial = TransferOutcome.partial(code: 24, message: "a file that keeps vanishing")
    rig.accept([entry("never-reads")])
    rig.clock.advance(ms: 100)
    _ = rig.dispatcher.handle(.wake)
    var effects: [[TransferDispatcher.Effect]] = []
    var last = TransferDispatcher.Step()
    for _ in 0..<4 {
      // Re-queued after each partial transfer, and due: sent again at once, until the backoff.
      let t = rig.sender.takeStarted()
      #expect(t.map(\.work) == [.paths([entry("never-reads")])])
      last = rig.dispatcher.handle(.finished(id: t[0].id, outcome: partial))
      effects.append(last.effects)
    }
    #expect(effects[0] == [.finished(partial), .steady])
    #expect(effects[2] == [.finished(partial), .steady])
    #expect(
      effects[3] == [.finished(partial), .backingOff(delay: .seconds(1), failures: 1, outcome: partial)])
    #expect(last.wake == .at(rig.clock.now + 1_000 * ms))
    #expect(rig.sender.started.isEmpty)
  }

  @Test func afterStopNothingStartsAndOutcomesAreNotSettled() {
    var rig = Rig(workers: 2)
    rig.initialFullSync()
    rig.accept([entry("a")])
    rig.clock.advance(ms: 100)
    _ = rig.dispatcher.handle(.wake)
    let t = rig.sender.takeStarted()
    #expect(rig.dispatcher.handle(.stop).wake == .onEvent)
    let cancelled = TransferOutcome.failed(kind: .rsync, message: "the transfer was cancelled")
    rig.accept([entry("b")])
    rig.clock.advance(ms: 100)
    #expect(rig.dispatcher.handle(.finished(id: t[0].id, outcome: cancelled)).effects.isEmpty)
    #expect(rig.sender.started.isEmpty)
    #expect(rig.source.queue.pendingCount == 2)  // a is pending again, for the journal
  }

  @Test func backoffDoublesUpToTheMaximumWithJitterOnHalf() {
    func delay(_ failures: Int, _ jitter: Double) -> Duration {
      TransferDispatcher.backoff(failures: failures, initial: .seconds(1), max: .seconds(8), jitter: jitter)
    }
    #expect(delay(1, 1) == .seconds(1) && delay(1, 0) == .milliseconds(500))
    #expect(delay(2, 1) == .seconds(2))
    #expect(delay(3, 1) == .seconds(4))
    #expect(delay(4, 1) == .seconds(8) && delay(40, 1) == .seconds(8) && delay(40, 0) == .seconds(4))
  }
}

extension TransferDispatcherTests {
  @Test func nothingStartsWhileTheSourceGuardHoldsAndAFullSyncComesFirstAfter() {
    var rig = Rig()
    rig.initialFullSync()
    rig.dispatcher.held = true
    rig.accept([entry("a")])
    rig.clock.advance(ms: 5_000)
    #expect(rig.dispatcher.handle(.wake).wake == .onEvent)
    #expect(rig.dispatcher.handle(.fullSyncRequested).effects.isEmpty)
    #expect(rig.sender.started.isEmpty)
    rig.dispatcher.held = false
    _ = rig.dispatcher.handle(.fullSyncRequested)
    #expect(rig.sender.takeStarted().map(\.work) == [.fullSync, .paths([entry("a")])])
  }
}
