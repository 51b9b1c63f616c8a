import FleetCore
import Foundation
import Logging
import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// Sends batches of changed paths and full syncs, one round at a time, with retry and backoff.
///
/// A round takes up to ``WatchConfig/maxBatchPaths`` pending paths, splits them into shards by
/// path hash, and runs one rsync per shard at once. The next round starts when all shards ended,
/// so a path is never in two transfers at the same time and its changes arrive in order.
struct TransferLoop {
  let core: EngineCore
  var config: WatchConfig { core.config }
  var logger: Logger { core.logger }

  func run() async {
    var wakeups = core.wakeStream.makeAsyncIterator()
    // Wait for the watches: changes during the initial full sync must not be missed.
    while !core.flags.withLock({ $0.setupDone }) {
      guard await wakeups.next() != nil, !Task.isCancelled else { return }
    }
    let command = RsyncCommand(config: config)
    var needFull = true
    var firstFull = true
    var failures = 0
    var partials = 0
    var lastFull = ContinuousClock.now

    while !Task.isCancelled {
      if core.takeFullSyncRequest() { needFull = true }
      let degraded = core.steadyState == .degraded
      if let interval = config.fullSyncInterval ?? (degraded ? .seconds(60) : nil),
        ContinuousClock.now - lastFull >= interval
      {
        needFull = true
      }

      let failed: Bool
      if needFull {
        if firstFull && !degraded { core.update { $0.state = .initialSync } }
        let taken = core.take(limit: Int.max)
        logger.info("full sync started", metadata: ["target": "\(config.target.url)"])
        let outcome = await command.fullSync()
        lastFull = ContinuousClock.now
        if Task.isCancelled {
          core.requeue(taken)
          break
        }
        record(outcome)
        switch outcome {
        case .ok:
          core.done(taken)
        case .partial, .failed:
          core.requeue(taken)
        }
        if case .failed = outcome {
          failed = true
        } else {
          failed = false
          needFull = false
          firstFull = false
          core.update { $0.fullSyncs += 1 }
          logger.info("full sync finished", metadata: ["outcome": "\(outcome)"])
        }
      } else {
        guard let oldest = core.oldestPending() else {
          _ = await wakeups.next()
          continue
        }
        // Coalesce: let the oldest change age batchDelay before sending.
        let age = Duration.nanoseconds(Int64(clamping: monotonicNanos() &- oldest))
        if age < config.batchDelay {
          try? await Task.sleep(for: config.batchDelay - age)
          if Task.isCancelled { break }
        }
        let batch = core.take(limit: config.maxBatchPaths)
        let root = Array(config.source.utf8)
        let sends = ChangeQueue.collapse(batch) { rel in
          var st = stat()
          guard lstat(absoluteCPath(root: root, rel).map { CChar(bitPattern: $0) }, &st) == 0 else {
            return .missing
          }
          return (st.st_mode & S_IFMT) == S_IFDIR ? .directory : .other
        }
        let shards = ChangeQueue.shard(
          sends.keys.sorted { $0.lexicographicallyPrecedes($1) }, workers: config.workers)
        let outcomes = await withTaskGroup(of: ([[UInt8]], TransferOutcome).self) { group in
          for shard in shards {
            let queued = shard.flatMap { sends[$0] ?? [] }
            group.addTask { (queued, await command.send(shard)) }
          }
          var all: [([[UInt8]], TransferOutcome)] = []
          for await r in group { all.append(r) }
          return all
        }
        var anyFailed = false
        for (paths, outcome) in outcomes {
          if case .ok = outcome {
            core.done(paths)
          } else {
            core.requeue(paths)
          }
          if Task.isCancelled { continue }
          record(outcome)
          if case .failed = outcome { anyFailed = true }
        }
        if Task.isCancelled { break }
        let anyPartial = outcomes.contains { if case .partial = $0.1 { true } else { false } }
        partials = anyPartial ? partials + 1 : 0
        // Partial rounds again and again (a file that never reads) back off like failures.
        failed = anyFailed || partials > 3
      }

      if failed {
        failures += 1
        let delay = backoff(failures: failures)
        let retryAt = Date().addingTimeInterval(
          Double(delay.components.seconds) + Double(delay.components.attoseconds) / 1e18)
        core.update {
          $0.state = .retrying
          $0.nextRetryAt = retryAt
          $0.retries += 1
        }
        let kind = core.snapshot().lastErrorKind
        logger.log(
          level: kind == "partial" ? .warning : .error,
          kind == "partial" ? "partial transfers keep repeating; backing off" : "transfer failed; retrying",
          metadata: [
            "in": "\(delay)", "failures": "\(failures)", "error": "\(core.snapshot().lastError ?? "")",
          ])
        try? await Task.sleep(for: delay)
      } else {
        failures = 0
        let steady = core.steadyState
        core.update {
          $0.state = steady
          $0.nextRetryAt = nil
        }
      }
    }
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
