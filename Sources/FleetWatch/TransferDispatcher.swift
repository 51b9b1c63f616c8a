/// Monotonic nanoseconds, as the dispatcher reads them: the engine's clock, or a test's.
protocol DispatchClock {
  var now: UInt64 { get }
}

/// Starts the transfers the dispatcher decides on. Each one's end must come back to the
/// dispatcher as ``TransferDispatcher/Event/finished(id:outcome:)``.
protocol TransferSender {
  func start(_ transfer: Transfer)
}

/// The change queue as the dispatcher uses it; the engine's sits behind a lock, with the journal.
protocol ChangeSource {
  /// See ``ChangeQueue/takeReady(limit:delay:now:)``.
  func takeReady(limit: Int, delay: UInt64, now: UInt64) -> ChangeQueue.Ready
  /// Adds paths as changed now (journaled), to be sent again.
  func accept(_ paths: [SyncPath])
  /// See ``ChangeQueue/take(where:)``.
  func take(where matches: (SyncPath) -> Bool) -> [SyncPath]
  /// See ``ChangeQueue/pendingPaths(upTo:)``.
  func pendingPaths(upTo limit: Int) -> [SyncPath]?
  /// Marks in-flight paths replicated.
  func done(_ paths: [SyncPath])
  /// Puts in-flight paths back to pending.
  func requeue(_ paths: [SyncPath])
}

/// One transfer the dispatcher started.
struct Transfer: Equatable, Sendable {
  enum Work: Equatable, Sendable {
    /// Send these paths (sorted, at most ``WatchConfig/maxBatchPaths``).
    case paths([SyncPath])
    /// A reconciling full sync of the whole tree.
    case fullSync
    /// Send these paths only where the backup's copy differs in size or mtime (no
    /// `--ignore-times`): what a full sync may have undone of the live transfers beside it.
    case recheck([SyncPath])
  }

  var id: Int
  var work: Work
}

/// Decides which transfers run when: a state machine with no I/O, threads or sleeping of its own.
///
/// Events go in through ``handle(_:)``; transfers go out through the ``TransferSender``; the
/// result says what to record and when to call again if no event comes first. The policy:
/// - once the oldest pending change has waited `batchDelay`, everything pending goes, oldest
///   first: at most `maxBatchPaths` per transfer, over the free workers, at least
///   ``minPathsPerWorker`` each; a worker that frees up gets the next batch at once;
/// - on an idle watcher (nothing runs, and no batch started within `batchDelay`) a change waits only
///   ``idleSettle``, so that the events of one write (create, write, close) go in one transfer: an
///   idle change arrives in milliseconds, and under load changes coalesce over `batchDelay` as before.
///   A delete always waits `batchDelay`: a delete that waits loses nothing, and the source guard
///   and the delete limit judge a whole `rm -rf` better in one batch than in a first small one;
/// - a path that overlaps a path of a running transfer waits for it (see ``PathClaims``), so
///   changes to one path arrive in order and two rsync runs never race on it;
/// - a full sync (at start, on request, periodically) runs beside the live transfers, not in one
///   of their workers, one at a time: changes made meanwhile flow as usual. What a live transfer
///   sends while a full sync runs may be undone by it (its `--delete` removes a file created after
///   rsync listed its directory; it may write a copy read before a change), so the paths of every
///   live transfer that overlapped a full sync are rechecked once it ends: sent again where the
///   backup's copy differs in size or mtime (a re-send of every one, with `--ignore-times`, would
///   count as that many overwrites and make as many versions). It does not settle the pending
///   changes: they go live, beside it. Rechecks (these, and what the catch-up scan found at start),
///   older than the changes due, go first on up to half the workers, and on any worker left free,
///   beside a full sync too (then they are rechecked after it); a recheck that fails makes its paths
///   changes;
/// - a failed transfer's paths go back to pending; a failure, or a fourth partial transfer in a
///   row, starts a capped exponential backoff with jitter, during which nothing new starts;
///   transfers started before that backoff failed in the same outage and do not count again;
/// - paths a transfer could not send (exit 23) are retried each on its own, with a backoff of their
///   own, while the others flow (see ``PathQuarantine``).
struct TransferDispatcher {
  /// The tuning the dispatcher follows, from ``WatchConfig``.
  struct Settings {
    var workers: Int
    var maxBatchPaths: Int
    var batchDelay: UInt64
    var retryInitial: Duration
    var retryMax: Duration
    var fullSyncInterval: UInt64?

    init(_ config: WatchConfig) {
      workers = max(1, config.workers)
      maxBatchPaths = max(1, config.maxBatchPaths)
      batchDelay = config.batchDelay.saturatingNanos
      retryInitial = config.retryInitial
      retryMax = config.retryMax
      fullSyncInterval = config.fullSyncInterval?.saturatingNanos
    }
  }

  /// When to call ``handle(_:)`` again if no event comes first.
  enum Wake: Equatable {
    case onEvent
    /// With ``Event/wake`` at this monotonic time.
    case at(UInt64)
  }

  struct Step: Equatable {
    var effects: [Effect] = []
    var wake = Wake.onEvent
  }

  /// Fewer paths than this per worker are not worth one more rsync process (about 6 ms of CPU).
  static let minPathsPerWorker = 64
  /// How long a change on an idle watcher waits for the rest of its write's events (the events of
  /// one small write come within microseconds; a long write is sent again at its close anyway).
  static let idleSettle = Duration.milliseconds(2).saturatingNanos
  /// Full syncs run this often while degraded (changes may be missed), unless configured otherwise.
  static let degradedFullSyncInterval = Duration.seconds(60).saturatingNanos
  /// How long the full sync at a restart may wait for an idle moment (see ``startFullSyncNotAfter``).
  static let startFullSyncDeferral = Duration.seconds(600)

  struct Running {
    /// What the transfer sends (claimed), and the queued paths it settles.
    var sends: [SyncPath]
    var queued: [SyncPath]
    /// The backoff generation it started in.
    var generation: Int
    var isFullSync: Bool
    /// The full sync this live transfer ran beside, if any: its paths are rechecked after it.
    var overlaps: Int? = nil
    /// For a recheck: the queued paths it looks at again (they are not in the change queue).
    var rechecks: [SyncPath] = []
    /// Each send → the queued paths it settles (empty for a full sync).
    var settles: [SyncPath: [SyncPath]] = [:]
    /// The quarantined entry it retries.
    var retry: PathQuarantine.Entry? = nil
  }

  let settings: Settings
  let clock: any DispatchClock
  let sender: any TransferSender
  let source: any ChangeSource
  let kind: (RelativePath) -> ChangeQueue.PathKind
  let jitter: () -> Double

  /// Set by the engine while inotify cannot see every change.
  var degraded = false
  /// Set by the engine while the source guard holds: nothing new starts (see ``SourceGate``).
  var held = false
  /// Set by the engine at a restart that catches up without a full sync (the journal holds what was
  /// not sent, the catch-up scan finds what changed while stopped, and the source passed a full
  /// sync before): the full sync at start then waits until nothing is pending or running, and at
  /// most until this monotonic time, so that it does not compete with the changes of a busy
  /// source. The deletes replayed from the journal wait for it (see ``startFullSync(_:)``). A full
  /// sync asked for (SIGUSR1, an overflow) or a degraded watcher ends the wait.
  var startFullSyncNotAfter: UInt64?
  /// Set by the engine while the catch-up scan's first pass runs: what it finds is about to come, so
  /// the full sync at start counts it as busy (see ``startFullSyncNotAfter``).
  var catchingUp = false
  /// Whether the full sync at start waits (see ``startFullSyncNotAfter``).
  var startFullSyncDeferred = false
  /// The deletes replayed at start, held for the first full sync while it waits.
  var startDeletes: [SyncPath] = []
  var running: [Int: Running] = [:]
  var claims = PathClaims()
  /// Paths that did not arrive, retried one by one.
  var quarantine = PathQuarantine()
  private var nextID = 0
  /// Set when nothing pending could be placed beside the running transfers; cleared when one ends.
  private var blocked = false
  /// A full sync is wanted and has not started yet. Cleared when one starts, so that a request
  /// made while it runs (a second inotify overflow: changes it may have listed too early) gets a
  /// full sync of its own after it.
  var needFullSync = true
  var firstFullSync = true
  private var lastFullSync: UInt64
  private var stopping = false
  private var failures = 0
  private var partials = 0
  /// Bumped at each backoff: failures of transfers started before it are the same outage.
  var generation = 0
  private var retryAt: UInt64?
  /// When the last batch of changes started (nil: none yet).
  private var lastBatchStart: UInt64?
  /// The queued paths of live transfers that overlapped the running full sync.
  var resendAfterFullSync = Set<SyncPath>()
  /// Paths to recheck (see ``Transfer/Work/recheck(_:)``), in order, without repeats.
  var rechecks: [SyncPath] = []
  var recheckSet = Set<SyncPath>()

  /// The full sync that runs, if one does.
  var fullSyncID: Int? { running.first { $0.value.isFullSync }?.key }
  /// Whether a full sync runs.
  var fullSyncRunning: Bool { fullSyncID != nil }
  /// Whether this instance's first full sync runs or waits (the engine shows `initialSync` meanwhile).
  var initialSyncRunning: Bool { firstFullSync && (fullSyncRunning || startFullSyncDeferred) }
  /// Live transfers running (a full sync takes no worker).
  var liveRunning: Int { running.values.count { !$0.isFullSync } }
  /// Whether the end of a running transfer is what pending changes wait for: every worker is
  /// busy, or what is pending overlaps a running transfer.
  var waitsForATransfer: Bool { liveRunning >= settings.workers || blocked }

  /// A dispatcher that starts with a full sync.
  ///
  /// `kind` tells what a path is on the source now; `jitter` returns a number in 0...1.
  init(
    settings: Settings, clock: any DispatchClock, sender: any TransferSender, source: any ChangeSource,
    kind: @escaping (RelativePath) -> ChangeQueue.PathKind,
    jitter: @escaping () -> Double = { Double.random(in: 0...1) }
  ) {
    self.settings = settings
    self.clock = clock
    self.sender = sender
    self.source = source
    self.kind = kind
    self.jitter = jitter
    lastFullSync = clock.now
  }

  /// Takes `events` in order, then starts what can start.
  mutating func handle(_ events: Event...) -> Step {
    handle(events)
  }

  /// Takes `events` in order, then starts what can start.
  mutating func handle(_ events: [Event]) -> Step {
    var step = Step()
    for event in events {
      switch event {
      case .wake: break
      case .fullSyncRequested:
        needFullSync = true
        startFullSyncNotAfter = nil
      case .recheck(let paths): addRechecks(paths)
      case .finished(let id, let outcome): finish(id, outcome, &step.effects)
      case .stop: stopping = true
      }
    }
    if !stopping && !held {
      step.wake = dispatch(&step.effects)
      if let at = quarantine.nextRetry(after: clock.now), step.wake.isLater(than: at) {
        step.wake = .at(at)
      }
    }
    return step
  }

  /// Starts whatever can start now; returns when to look again.
  private mutating func dispatch(_ effects: inout [Effect]) -> Wake {
    let now = clock.now
    let interval = settings.fullSyncInterval ?? (degraded ? Self.degradedFullSyncInterval : nil)
    let fullSyncDue = interval.map { lastFullSync.addingReportingOverflow($0) }.map {
      $0.overflow ? UInt64.max : $0.partialValue
    }
    if let fullSyncDue, now >= fullSyncDue, !fullSyncRunning { needFullSync = true }
    if let retryAt, now < retryAt { return .at(retryAt) }
    // One full sync at a time; live transfers run beside it.
    if needFullSync && !fullSyncRunning && !deferStartFullSync(now: now, &effects) { startFullSync(&effects) }
    var later = fullSyncRunning ? Wake.onEvent : fullSyncDue.map { Wake.at($0) } ?? .onEvent
    if startFullSyncDeferred, let notAfter = startFullSyncNotAfter, later.isLater(than: notAfter) {
      later = .at(notAfter)
    }
    let delay = batchDelay(now: now)
    startDueRetries(now)
    // Rechecks are older than the changes due now (what the catch-up scan found, what a full sync may
    // have undone): half the workers take them first, so a busy source does not hold them back.
    startRechecks(atMostRunning: max(1, settings.workers / 2))
    var wake = later
    placing: while liveRunning < settings.workers && !blocked {
      // At most maxBatchPaths per free worker, oldest first: under a backlog, workers take turns on
      // bounded batches instead of one taking everything and holding the newest paths until it ends.
      let free = settings.workers - liveRunning
      let (limit, overflow) = settings.maxBatchPaths.multipliedReportingOverflow(by: free)
      switch source.takeReady(limit: overflow ? .max : limit, delay: delay, now: now) {
      case .nothing: break placing
      case .notBefore(let due):
        wake = .at(fullSyncRunning ? due : min(due, fullSyncDue ?? .max))
        break placing
      case .batch(let batch): place(batch)
      }
    }
    startRechecks(atMostRunning: settings.workers)
    return wake
  }

  /// The wait for the pending changes: ``idleSettle`` on an idle watcher (no live transfer runs, no
  /// batch started within `batchDelay`, a few changes pending and none of them a delete),
  /// `batchDelay` otherwise.
  func batchDelay(now: UInt64) -> UInt64 {
    guard settings.batchDelay > Self.idleSettle, liveRunning == 0,
      lastBatchStart.map({ now >= $0 && now - $0 >= settings.batchDelay }) ?? true,
      let pending = source.pendingPaths(upTo: Self.minPathsPerWorker),
      pending.allSatisfy({ $0.path.map { kind($0) != .missing } ?? true })
    else { return settings.batchDelay }
    return Self.idleSettle
  }

  /// Splits `batch` over the free workers, at most `maxBatchPaths` sends each, and starts them.
  /// What cannot go now (it overlaps a running transfer, or does not fit) goes back to pending.
  private mutating func place(_ batch: [SyncPath]) {
    let sends = ChangeQueue.collapse(batch, kind: kind)
    let free = settings.workers - liveRunning
    let cap = settings.maxBatchPaths
    let needed = sends.count / cap + (sends.count % cap == 0 ? 0 : 1)
    let want = min(free, max(1, needed, sends.count / Self.minPathsPerWorker))
    let (shards, deferred) = ChangeQueue.shard(Array(sends.keys), workers: want, cap: cap, busy: claims)
    if !deferred.isEmpty { source.requeue(deferred.flatMap { sends[$0] ?? [] }) }
    if shards.isEmpty { blocked = true } else { lastBatchStart = clock.now }
    for shard in shards {
      let id = newID()
      for p in shard { claims.claim(p, by: id) }
      running[id] = Running(
        sends: shard, queued: shard.flatMap { sends[$0] ?? [] }, generation: generation, isFullSync: false,
        overlaps: fullSyncID,
        settles: Dictionary(uniqueKeysWithValues: shard.map { ($0, sends[$0] ?? []) }))
      sender.start(Transfer(id: id, work: .paths(shard)))
    }
  }

  mutating func newID() -> Int {
    defer { nextID += 1 }
    return nextID
  }

  /// A transfer ended: releases its paths, marks them done or pending again, settles the outcome.
  private mutating func finish(_ id: Int, _ outcome: TransferOutcome, _ effects: inout [Effect]) {
    guard let ended = running.removeValue(forKey: id) else { return }
    for p in ended.sends { claims.release(p, by: id) }
    blocked = false
    if ended.isFullSync { lastFullSync = clock.now }
    // A recheck that did not go well makes its paths changes: they are sent whole, in the queue.
    if !ended.rechecks.isEmpty, !outcome.isOK { source.accept(ended.rechecks) }
    let outcome = ended.rechecks.isEmpty ? settlePaths(id, ended, outcome, &effects) : outcome
    resendIfOverlapped(ended, sentAgain: outcome.isFailure)
    // A failed full sync is retried (after the backoff).
    if ended.isFullSync && outcome.isFailure { needFullSync = true }
    if stopping { return }
    settle(outcome, generation: ended.generation, &effects)
    if ended.isFullSync, !outcome.isFailure {
      firstFullSync = false
      effects.append(.fullSyncFinished(outcome))
    }
  }

  /// Records an outcome; starts a backoff after a failure, or after repeated partial transfers.
  private mutating func settle(_ outcome: TransferOutcome, generation started: Int, _ effects: inout [Effect])
  {
    effects.append(.finished(outcome))
    var failed = false
    switch outcome {
    case .ok: partials = 0
    case .incomplete: break  // its failing paths are retried alone
    case .partial:
      // Partial transfers again and again (a file that never reads) back off like failures.
      partials += 1
      failed = partials > 3
    case .failed: failed = true
    }
    guard failed else {
      failures = 0
      retryAt = nil
      effects.append(.steady)
      return
    }
    guard started == generation else { return }
    generation += 1
    failures += 1
    let delay = Self.backoff(
      failures: failures, initial: settings.retryInitial, max: settings.retryMax, jitter: jitter())
    let (at, overflow) = clock.now.addingReportingOverflow(delay.saturatingNanos)
    retryAt = overflow ? .max : at
    effects.append(.backingOff(delay: delay, failures: failures, outcome: outcome))
  }

  /// Capped exponential backoff: the delay doubles per failure up to `max`; half of it is fixed,
  /// the other half scaled by `jitter` (0...1).
  static func backoff(failures: Int, initial: Duration, max maxDelay: Duration, jitter: Double) -> Duration {
    let first = Swift.max(initial, .milliseconds(10))
    var d = first
    for _ in 1..<Swift.min(Swift.max(failures, 1), 30) {
      d = d * 2
      if d >= maxDelay { break }
    }
    d = Swift.min(d, Swift.max(maxDelay, first))
    let half = d / 2
    return half + half * Swift.min(Swift.max(jitter, 0), 1)
  }
}

extension TransferOutcome {
  /// Whether everything listed arrived.
  var isOK: Bool {
    if case .ok = self { return true }
    return false
  }

  /// Whether the transfer failed (a partial transfer did not).
  var isFailure: Bool {
    if case .failed = self { return true }
    return false
  }
}
