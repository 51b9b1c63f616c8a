import FleetCore
import Foundation
import Logging
import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// Sends batches of changed paths and full syncs, with retry and backoff.
///
/// A dispatcher keeps up to ``WatchConfig/workers`` rsync runs going. As soon as one ends, the
/// next batch goes out: everything pending once its oldest change has waited
/// ``WatchConfig/batchDelay``, split over the free workers. A path that overlaps a path of a
/// running transfer (the same path changed again, or a directory being sent whole) waits for that
/// transfer (see ``PathClaims``), so changes to one path arrive in order and two rsync runs never
/// race on it. A full sync waits until no transfer runs, and runs alone.
struct TransferLoop {
  let core: EngineCore
  var config: WatchConfig { core.config }
  var logger: Logger { core.logger }

  /// Fewer paths than this per worker are not worth one more rsync process (about 6 ms of CPU).
  static let minPathsPerWorker = 64

  /// A transfer that ended, handed from its task to the dispatcher.
  struct Completion: Sendable {
    var id: Int
    var queued: [[UInt8]]
    var outcome: TransferOutcome
  }

  /// Where transfer tasks leave their results for the dispatcher.
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

  /// What the dispatcher knows about the transfers it started and the failures it saw.
  struct Dispatch {
    /// Send paths of each running transfer, and the backoff generation it started in.
    var running: [Int: (sends: [[UInt8]], generation: Int)] = [:]
    var claims = PathClaims()
    var nextID = 0
    /// Set when nothing pending could be placed beside the running transfers; cleared when one ends.
    var blocked = false
    var failures = 0
    var partials = 0
    /// Bumped at each backoff: failures of transfers started before it are the same outage.
    var generation = 0
    var retryAt: ContinuousClock.Instant?
  }

  func run() async {
    var wakeups = core.wakeStream.makeAsyncIterator()
    // Wait for the watches: changes during the initial full sync must not be missed.
    while !core.flags.withLock({ $0.setupDone }) {
      guard await wakeups.next() != nil, !Task.isCancelled else { return }
    }
    let command = RsyncCommand(config: config)
    let inbox = Inbox()
    var d = Dispatch()
    var needFull = true
    var firstFull = true
    var lastFull = ContinuousClock.now

    await withDiscardingTaskGroup { group in
      while true {
        for c in inbox.takeAll() { finish(c, &d) }
        if Task.isCancelled { break }
        if core.takeFullSyncRequest() { needFull = true }
        let degraded = core.steadyState == .degraded
        if let interval = config.fullSyncInterval ?? (degraded ? .seconds(60) : nil),
          ContinuousClock.now - lastFull >= interval
        {
          needFull = true
        }

        if let retryAt = d.retryAt, ContinuousClock.now < retryAt {
          // Backing off: let running transfers end, start nothing new.
          if d.running.isEmpty {
            try? await Task.sleep(until: retryAt)
          } else {
            _ = await wakeups.next()
          }
          continue
        }

        if needFull {
          guard d.running.isEmpty else {
            _ = await wakeups.next()
            continue
          }
          if firstFull && !degraded { core.update { $0.state = .initialSync } }
          let taken = core.take(limit: Int.max)
          logger.info("full sync started", metadata: ["target": "\(config.target.url)"])
          let outcome = await command.fullSync()
          lastFull = ContinuousClock.now
          if Task.isCancelled {
            core.requeue(taken)
            break
          }
          if case .ok = outcome { core.done(taken) } else { core.requeue(taken) }
          settle(outcome, generation: d.generation, &d)
          if outcome.errorKind == nil || outcome.errorKind == "partial" {
            needFull = false
            firstFull = false
            core.update { $0.fullSyncs += 1 }
            logger.info("full sync finished", metadata: ["outcome": "\(outcome)"])
          }
          continue
        }

        guard d.running.count < config.workers, !d.blocked else {
          _ = await wakeups.next()
          continue
        }
        // At most maxBatchPaths per free worker, oldest first: under a backlog, workers take turns on
        // bounded batches instead of one taking everything and holding the newest paths until it ends.
        let free = config.workers - d.running.count
        let (limit, overflow) = config.maxBatchPaths.multipliedReportingOverflow(by: free)
        switch core.takeReady(limit: overflow ? Int.max : limit, delay: config.batchDelay) {
        case .nothing:
          _ = await wakeups.next()
        case .notBefore(let due):
          let now = monotonicNanos()
          if due > now { try? await Task.sleep(for: .nanoseconds(Int64(clamping: due - now))) }
        case .batch(let batch):
          for (id, sends, queued) in place(batch, &d) {
            group.addTask {
              let outcome = await command.send(sends)
              inbox.post(Completion(id: id, queued: queued, outcome: outcome))
              core.wake.yield()
            }
          }
        }
      }
    }
    // The group waited for every transfer: settle what the cancelled ones left.
    for c in inbox.takeAll() { finish(c, &d) }
  }

  /// Splits `batch` over the free workers and claims its paths; returns the transfers to start
  /// (id, send paths, queued paths they settle). What cannot go now is put back to pending.
  func place(_ batch: [[UInt8]], _ d: inout Dispatch) -> [(Int, [[UInt8]], [[UInt8]])] {
    let root = Array(config.source.utf8)
    let sends = ChangeQueue.collapse(batch) { rel in
      var st = stat()
      guard lstat(absoluteCPath(root: root, rel).map { CChar(bitPattern: $0) }, &st) == 0 else {
        return .missing
      }
      return (st.st_mode & S_IFMT) == S_IFDIR ? .directory : .other
    }
    let free = config.workers - d.running.count
    // Enough transfers that none carries more than maxBatchPaths, and more (up to the free
    // workers) while each still gets minPathsPerWorker.
    let needed = sends.count / config.maxBatchPaths + (sends.count % config.maxBatchPaths == 0 ? 0 : 1)
    let want = max(1, min(free, max(needed, sends.count / Self.minPathsPerWorker)))
    let (shards, deferred) = ChangeQueue.shard(
      Array(sends.keys), workers: want, cap: config.maxBatchPaths, busy: d.claims)
    if !deferred.isEmpty { core.requeue(deferred.flatMap { sends[$0] ?? [] }) }
    if shards.isEmpty { d.blocked = true }
    return shards.map { shard in
      let id = d.nextID
      d.nextID += 1
      for p in shard { d.claims.claim(ChangeQueue.base(p), by: id) }
      d.running[id] = (shard, d.generation)
      return (id, shard, shard.flatMap { sends[$0] ?? [] })
    }
  }

  /// Takes a finished transfer's result: releases its paths, marks them done or pending again.
  func finish(_ c: Completion, _ d: inout Dispatch) {
    guard let started = d.running.removeValue(forKey: c.id) else { return }
    for p in started.sends { d.claims.release(ChangeQueue.base(p), by: c.id) }
    d.blocked = false
    if case .ok = c.outcome { core.done(c.queued) } else { core.requeue(c.queued) }
    // A cancelled run says nothing about the target.
    if Task.isCancelled { return }
    settle(c.outcome, generation: started.generation, &d)
  }

  /// Records an outcome and starts a backoff after a failure, or repeated partial transfers.
  func settle(_ outcome: TransferOutcome, generation: Int, _ d: inout Dispatch) {
    record(outcome)
    var failed = false
    switch outcome {
    case .ok:
      d.partials = 0
    case .partial:
      // Partial transfers again and again (a file that never reads) back off like failures.
      d.partials += 1
      failed = d.partials > 3
    case .failed:
      failed = true
    }
    guard failed else {
      d.failures = 0
      d.retryAt = nil
      let steady = core.steadyState
      core.update {
        $0.state = steady
        $0.nextRetryAt = nil
      }
      return
    }
    // Transfers started before the current backoff failed in the same outage: no extra step.
    guard generation == d.generation else { return }
    d.generation += 1
    d.failures += 1
    let delay = backoff(failures: d.failures)
    d.retryAt = ContinuousClock.now + delay
    let retryAt = Date().addingTimeInterval(
      Double(delay.components.seconds) + Double(delay.components.attoseconds) / 1e18)
    core.update {
      $0.state = .retrying
      $0.nextRetryAt = retryAt
      $0.retries += 1
    }
    let kind = outcome.errorKind
    logger.log(
      level: kind == "partial" ? .warning : .error,
      kind == "partial" ? "partial transfers keep repeating; backing off" : "transfer failed; retrying",
      metadata: [
        "in": "\(delay)", "failures": "\(d.failures)", "error": "\(outcome.message ?? "")",
      ])
  }

  /// Capped exponential backoff with jitter: half the delay fixed, half random.
  func backoff(failures: Int) -> Duration {
    let initial = max(config.retryInitial, .milliseconds(10))
    var d = initial
    for _ in 1..<min(failures, 30) {
      d = d * 2
      if d >= config.retryMax { break }
    }
    d = min(d, max(config.retryMax, initial))
    let half = d / 2
    return half + half * Double.random(in: 0...1)
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
        s.lastError = message
        s.lastErrorKind = "partial"
      case .failed(let kind, let message):
        s.failedTransfers += 1
        s.consecutiveFailures += 1
        s.lastError = message
        s.lastErrorKind = kind
      }
    }
    if case .partial(let code, let message) = outcome {
      logger.info("partial transfer, re-queued", metadata: ["exit": "\(code)", "detail": "\(message)"])
    }
  }
}
