import FleetCore
import Foundation
import Logging
import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// Runs the ``TransferDispatcher`` against the real world: rsync processes in a task group, the
/// engine's queue and clock, timers, and the status and logs its effects call for.
struct TransferLoop {
  let core: EngineCore
  var config: WatchConfig { core.config }
  var logger: Logger { core.logger }

  /// A transfer that ended, handed from its task to the loop.
  struct Completion: Sendable {
    var id: Int
    var outcome: TransferOutcome
  }

  /// Where transfer tasks leave their results for the loop.
  final class Inbox: Sendable {
    private let box = Mutex<[Completion]>([])
    func post(_ c: Completion) { box.withLock { $0.append(c) } }
    func takeAll() -> [Completion] {
      box.withLock { b in
        defer { b = [] }
        return b
      }
    }
  }

  /// The dispatcher's sender: transfers it starts wait here until the loop runs them in its task group.
  final class Launches: TransferSender {
    private(set) var pending: [Transfer] = []
    func start(_ transfer: Transfer) { pending.append(transfer) }
    func takeAll() -> [Transfer] {
      defer { pending = [] }
      return pending
    }
  }

  /// Whether a full sync starting now makes the baseline: no source identity is recorded yet, so it
  /// is this instance's first. What it overwrites or deletes on the backup (a backup seeded by another
  /// tool, or from an archive) is not a change of the source, and does not count toward the
  /// mass-change alarm; every later run counts.
  func baselineRun() -> Bool {
    guard core.sourceRecord.withLock({ $0 == nil }) else { return false }
    logger.notice(
      "the first full sync makes the baseline: what it overwrites or deletes on the backup does not count toward the mass-change alarm"
    )
    return true
  }

  struct MonotonicClock: DispatchClock {
    var now: UInt64 { monotonicNanos() }
  }

  func run() async {
    var wakeups = core.wakeStream.makeAsyncIterator()
    let command = RsyncCommand(
      config: config, sandbox: SenderSandbox.start(for: core), logger: logger, deletes: core.deletes,
      changes: core.massChange)
    let baseline = {
      var uncounted = command
      uncounted.changes = nil
      return uncounted
    }()
    // Wait for the watches: changes during the initial full sync must not be missed.
    while !core.flags.withLock({ $0.setupDone }) {
      guard await wakeups.next() != nil, !Task.isCancelled else { return }
    }
    let inbox = Inbox()
    let launches = Launches()
    let root = Array(config.source.utf8)
    var dispatcher = TransferDispatcher(
      settings: .init(config), clock: MonotonicClock(), sender: launches, source: core,
      kind: { Self.kind(of: $0, root: root) })
    if core.canCatchUp {
      dispatcher.startFullSyncNotAfter =
        monotonicNanos() + TransferDispatcher.startFullSyncDeferral.saturatingNanos
    }
    // Deadlines a timer task will wake the loop at.
    var timers = Set<UInt64>()
    var sourceGate = SourceGate(core: core, command: command)
    // Whether the status shows quarantined paths; true at first, so that it shows 0 from the start.
    var published = true

    await withDiscardingTaskGroup { group in
      while !Task.isCancelled {
        var events = inbox.takeAll().map { TransferDispatcher.Event.finished(id: $0.id, outcome: $0.outcome) }
        if core.takeFullSyncRequest() || core.deletes?.countDue(now: monotonicNanos()) == true {
          events.append(.fullSyncRequested)
        }
        // Whether the scan's first pass runs, read before taking what it found: a pass that ends in
        // between has handed its findings over before it said so.
        let catchingUp = core.flags.withLock { $0.catchingUp }
        let caughtUp = core.takeCaughtUp()
        if !caughtUp.isEmpty { events.append(.recheck(caughtUp)) }
        // The source guard looks right before anything can start: the source must be the source.
        let gate = await sourceGate.check()
        if let marker = core.massChange.tick(command) {
          group.addTask {
            await marker()
            core.wake.yield()
          }
        }
        if gate == .resumed { events.append(.fullSyncRequested) }
        dispatcher.held = gate == .held
        dispatcher.degraded = core.steadyState == .degraded
        dispatcher.catchingUp = catchingUp
        let step = dispatcher.handle(events.isEmpty ? [.wake] : events)
        // A look within one batch delay is the one the pending changes wait for.
        let soon = !step.wake.isLater(than: monotonicNanos() &+ config.batchDelay.saturatingNanos)
        core.pendingChangesWake.store(!(soon || dispatcher.waitsForATransfer), ordering: .releasing)
        // Before the effects: a state that turns `watching` must not show a quarantine not yet published.
        if !dispatcher.quarantine.isEmpty || published { published = publish(dispatcher.quarantine) }
        apply(step.effects, initialSync: dispatcher.initialSyncRunning)
        if step.effects.contains(where: { if case .fullSyncFinished = $0 { true } else { false } }) {
          sourceGate.fullSyncFinished()
        }
        for transfer in launches.takeAll() {
          let runner = transfer.work == .fullSync && baselineRun() ? baseline : command
          group.addTask {
            let outcome: TransferOutcome =
              switch transfer.work {
              case .paths(let paths): await runner.send(paths)
              case .recheck(let paths): await runner.recheck(paths)
              case .fullSync: await Self.fullSync(runner, core: core)
              }
            inbox.post(Completion(id: transfer.id, outcome: outcome))
            core.wake.yield()
          }
        }
        if case .at(let deadline) = step.wake, deadline < timers.min() ?? .max {
          timers.insert(deadline)
          group.addTask {
            let now = monotonicNanos()
            if deadline > now { try? await Task.sleep(for: .nanoseconds(Int64(clamping: deadline - now))) }
            core.wake.yield()
          }
        }
        _ = await wakeups.next()
        let now = monotonicNanos()
        timers = timers.filter { $0 > now }
      }
      _ = dispatcher.handle(.stop)
    }
    // The group waited for every transfer: settle what the cancelled ones left.
    _ = dispatcher.handle(inbox.takeAll().map { .finished(id: $0.id, outcome: $0.outcome) })
  }

  /// What `path` is on the source now.
  static func kind(of path: RelativePath, root: [UInt8]) -> ChangeQueue.PathKind {
    var st = stat()
    guard lstat(absoluteCPath(root: root, path.bytes).map { CChar(bitPattern: $0) }, &st) == 0 else {
      return .missing
    }
    return (st.st_mode & S_IFMT) == S_IFDIR ? .directory : .other
  }

  /// Records what the dispatcher decided in the status and the log; while the first full sync runs
  /// (`initialSync`), a live transfer that went well leaves the state at `initialSync`.
  func apply(_ effects: [TransferDispatcher.Effect], initialSync: Bool) {
    for effect in effects {
      switch effect {
      case .initialSyncStarted:
        core.update { $0.state = .initialSync }
      case .startFullSyncDeferred:
        let wait = TransferDispatcher.startFullSyncDeferral
        core.update { $0.fullSyncWaitsUntil = Date().addingTimeInterval(Double(wait.components.seconds)) }
        let message =
          "the full sync at start waits until nothing is pending (at most \(wait)): the journal and the "
          + "catch-up scan cover what changed while no watcher ran; deletions made meanwhile wait for it"
        logger.notice("\(message)")
      case .fullSyncStarted:
        core.update { $0.fullSyncWaitsUntil = nil }
        logger.info("full sync started", metadata: ["target": "\(config.target.url)"])
      case .fullSyncFinished(let outcome):
        core.update { $0.fullSyncs += 1 }
        recordFullSync(outcome)
        logger.info("full sync finished", metadata: ["outcome": "\(outcome)"])
      case .finished(let outcome):
        record(outcome)
      case .steady:
        let steady = initialSync && core.steadyState == .watching ? .initialSync : core.steadyState
        core.update {
          $0.state = steady
          $0.nextRetryAt = nil
        }
      case .backingOff(let delay, let failures, let outcome):
        backingOff(delay: delay, failures: failures, outcome: outcome)
      case .quarantined(let path, let failures, let retryIn, let error):
        quarantined(path, failures: failures, retryIn: retryIn, error: error)
      case .released(let path, let failures):
        logger.notice(
          "a failing path reached the backup", metadata: ["path": "\(path)", "failures": "\(failures)"])
      }
    }
  }

  /// Records that the backup was made equal to the source with this target and these excludes
  /// (see ``FullSyncRecord``), unless a change may have been missed meanwhile; a partial full sync
  /// (some files did not arrive) removes the record.
  func recordFullSync(_ outcome: TransferOutcome) {
    let missing = core.flags.withLock { $0.watchLimit || $0.inotifyUnavailable }
    guard outcome.isOK, !missing, core.steadyState != .degraded else {
      core.forgetFullSyncRecord()
      return
    }
    do {
      try FullSyncRecord.save(config)
    } catch {
      logger.warning(
        "cannot record the full sync in the state directory; the next start runs its full sync at once",
        metadata: ["error": "\(error)"])
    }
  }

  func backingOff(delay: Duration, failures: Int, outcome: TransferOutcome) {
    let retryAt = Date().addingTimeInterval(
      Double(delay.components.seconds) + Double(delay.components.attoseconds) / 1e18)
    core.update {
      $0.state = .retrying
      $0.nextRetryAt = retryAt
      $0.retries += 1
    }
    let partial = !outcome.isFailure
    logger.log(
      level: partial ? .warning : .error,
      partial ? "partial transfers keep repeating; backing off" : "transfer failed; retrying",
      metadata: [
        "in": "\(delay)", "failures": "\(failures)", "error": "\(outcome.message ?? "")",
      ])
  }

  func record(_ outcome: TransferOutcome) {
    core.update { s in
      s.transfers += 1
      switch outcome {
      case .ok(let files, let bytes):
        s.filesSent += files
        s.bytesSent += bytes
        s.lastSuccess = Date()
        s.consecutiveFailures = 0
      case .partial(_, let message):
        s.lastSuccess = Date()
        s.recordError(.partial, message)
      case .incomplete(_, let message):
        s.recordError(.partial, message)
      case .failed(let kind, let message):
        s.failedTransfers += 1
        s.consecutiveFailures += 1
        s.recordError(kind, message)
      }
    }
    if case .partial(let code, let message) = outcome {
      logger.info("partial transfer, re-queued", metadata: ["exit": "\(code)", "detail": "\(message)"])
    }
  }
}
