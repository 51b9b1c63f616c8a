import FleetCore
import Foundation
import Logging
import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// Monotonic nanoseconds, for replication lag.
func monotonicNanos() -> UInt64 {
  var ts = timespec()
  clock_gettime(CLOCK_MONOTONIC, &ts)
  return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

extension Duration {
  /// In nanoseconds, zero if negative, `UInt64.max` if too long.
  var saturatingNanos: UInt64 {
    let c = max(self, .zero).components
    let ns = UInt64(clamping: c.seconds).multipliedReportingOverflow(by: 1_000_000_000)
    let (sum, overflow) = ns.partialValue.addingReportingOverflow(UInt64(c.attoseconds / 1_000_000_000))
    return ns.overflow || overflow ? UInt64.max : sum
  }
}

/// The state the event thread and the transfer loop share; every field is behind a `Mutex`.
final class EngineCore: Sendable, ChangeSource {
  struct Flags {
    var fullSyncRequested = false
    var setupDone = false
    var watchLimit = false
    var inotifyUnavailable = false
    /// Why the event loop stopped on its own (poll keeps failing); the engine ends with it.
    var failure: FleetError?
    /// Set while the event loop does not watch the recorded source (its root was unmounted,
    /// deleted, moved or replaced): why. The source guard holds transfers meanwhile.
    var sourceUnwatched: String?
    /// When a previous run last recorded a change (see ``CatchUpScan``); nil on a first run.
    var catchUpSince: Int?
    /// Set while the catch-up scan's first pass (entries made, renamed, removed) runs.
    var catchingUp = false
  }

  let config: WatchConfig
  let logger: Logger
  let queue: Mutex<ChangeQueue>
  /// The journal, which has its own lock: compacting it never holds up the queue.
  let journal: Journal?
  let statusBox = Mutex(WatchStatus())
  let flags = Mutex(Flags())
  /// The recorded identity of the source (see ``SourceGuard``); `nil` until the first full sync.
  let sourceRecord = Mutex<SourceIdentity?>(nil)
  /// When the oldest quarantined path first failed (monotonic ns), for the replication lag.
  let failingSince = Mutex<UInt64?>(nil)
  let wakeStream: AsyncStream<Void>
  let wake: AsyncStream<Void>.Continuation
  /// Whether a change accepted while others are pending wakes the transfer loop. The loop clears
  /// it while it will look at the pending changes again anyway (at a timer it set, or when a
  /// running transfer ends) before a new change could start; a first pending change always wakes
  /// it. Under a stream of events this spares a loop turn per read.
  let pendingChangesWake = Atomic<Bool>(true)
  /// Journal size above which it is rewritten with only the outstanding paths.
  let compactBytes: Int
  /// The delete limit; nil when it is off.
  let deletes: DeleteGate?
  /// The mass-change alarm (also when `off`: an alarm that stands must still be cleared).
  let massChange: MassChangeGate
  /// What the catch-up scan found, for the transfer loop to recheck (see ``CatchUpScan``).
  let caughtUp = Mutex<[SyncPath]>([])

  /// Queues `replayed` paths as pending; accepted paths go to `journal`.
  init(
    config: WatchConfig, logger: Logger, journal: Journal?, replayed: [SyncPath], compactBytes: Int = 16 << 20
  ) {
    self.config = config
    self.logger = logger
    self.journal = journal
    self.compactBytes = compactBytes
    self.deletes = DeleteGate(config: config, logger: logger)
    self.massChange = MassChangeGate(config: config, logger: logger)
    var q = ChangeQueue()
    _ = q.accept(replayed, now: monotonicNanos())
    self.queue = Mutex(q)
    (wakeStream, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
  }

  /// Accepts changed paths: journals the new ones durably, then queues them.
  func accept(_ paths: [SyncPath]) {
    guard !paths.isEmpty else { return }
    let now = monotonicNanos()
    let (failure, first): (String?, Bool) = queue.withLock { q in
      let first = q.pendingCount == 0
      let fresh = q.accept(paths, now: now)
      do {
        try journal?.append(fresh)
        return (nil, first)
      } catch {
        return ("\(error)", first)
      }
    }
    if let failure {
      logger.error("journal write failed; changes are kept in memory only", metadata: ["error": "\(failure)"])
      recordError(kind: .io, message: "the journal cannot be written: \(failure)")
    }
    if first || pendingChangesWake.load(ordering: .acquiring) { wake.yield() }
  }

  /// Marks transferred paths done (in the journal too, so a restart does not send them again) and
  /// compacts the journal when it can, outside the queue lock.
  func done(_ paths: [SyncPath]) {
    let keep: Set<SyncPath>? = queue.withLock { q in
      q.done(paths)
      guard let journal else { return nil }
      if q.isIdle {
        return journal.size > 0 && journal.beginCompaction() ? [] : nil
      }
      // Under the queue lock: no accept of these paths can come between. A path changed again
      // while in flight is outstanding still, and is not marked.
      try? journal.markDone(paths.filter { !q.isOutstanding($0) })
      return journal.size > compactBytes && journal.beginCompaction() ? q.outstanding : nil
    }
    guard let keep, let journal else { return }
    do {
      try journal.finishCompaction(keeping: keep)
    } catch {
      logger.warning("journal compaction failed", metadata: ["error": "\(error)"])
    }
  }

  /// Whether this start catches up without a full sync first (see
  /// ``TransferDispatcher/startFullSyncNotAfter``): a previous run left a journal, the source passed
  /// a full sync before, and the last one was made with this target and these excludes with every
  /// change since seen as an event (see ``FullSyncRecord``), and this run watches every directory.
  var canCatchUp: Bool {
    let watching = flags.withLock { $0.catchUpSince != nil && !$0.inotifyUnavailable && !$0.watchLimit }
    return watching && sourceRecord.withLock { $0 != nil } && FullSyncRecord.matches(config)
  }

  /// Forgets the last full sync's record (see ``FullSyncRecord``) when a change may have been missed
  /// (an overflow, out of watches) or a full sync left files behind: the next start runs its full
  /// sync at once.
  func forgetFullSyncRecord() {
    FullSyncRecord.forget(config)
  }

  /// Says whether the catch-up scan's first pass runs; the transfer loop looks again when it ends.
  func catchingUp(_ running: Bool) {
    flags.withLock { $0.catchingUp = running }
    if !running { wake.yield() }
  }

  /// Hands paths the catch-up scan found to the transfer loop, to be rechecked.
  func caughtUp(_ paths: [SyncPath]) {
    guard !paths.isEmpty else { return }
    caughtUp.withLock { $0 += paths }
    wake.yield()
  }

  /// Takes what the catch-up scan found since the last call.
  func takeCaughtUp() -> [SyncPath] {
    caughtUp.withLock { found in
      defer { found = [] }
      return found
    }
  }

  /// Puts in-flight paths back to pending.
  func requeue(_ paths: [SyncPath]) {
    queue.withLock { $0.requeue(paths) }
    wake.yield()
  }

  func take(where matches: (SyncPath) -> Bool) -> [SyncPath] {
    queue.withLock { $0.take(where: matches) }
  }

  /// Whether any path is in a running transfer.
  var transfersRunning: Bool {
    queue.withLock { $0.inFlightCount > 0 }
  }

  func pendingPaths(upTo limit: Int) -> [SyncPath]? {
    queue.withLock { $0.pendingPaths(upTo: limit) }
  }

  /// Takes a batch once the oldest takeable change is `delay` old; see ``ChangeQueue/takeReady(limit:delay:now:)``.
  func takeReady(limit: Int, delay: UInt64, now: UInt64) -> ChangeQueue.Ready {
    queue.withLock { $0.takeReady(limit: limit, delay: delay, now: now) }
  }

  func beat() {
    statusBox.withLock { $0.heartbeat = Date() }
  }

  func update(_ body: (inout WatchStatus) -> Void) {
    statusBox.withLock { body(&$0) }
  }

  func recordError(kind: WatchStatus.ErrorKind, message: String) {
    statusBox.withLock { $0.recordError(kind, message) }
  }

  func requestFullSync() {
    flags.withLock { $0.fullSyncRequested = true }
    wake.yield()
  }

  func takeFullSyncRequest() -> Bool {
    flags.withLock { f in
      defer { f.fullSyncRequested = false }
      return f.fullSyncRequested
    }
  }

  /// The state to show when no transfer failed: held while the source guard holds, degraded
  /// when changes can be missed, else watching.
  var steadyState: WatchStatus.State {
    if statusBox.withLock({ $0.sourceHold != nil }) { return .sourceHeld }
    return flags.withLock { $0.watchLimit || $0.inotifyUnavailable } ? .degraded : .watching
  }

  /// A snapshot with the queue figures filled in.
  func snapshot() -> WatchStatus {
    let (depth, flying, oldest) = queue.withLock { q in (q.pendingCount, q.inFlightCount, q.oldest) }
    var s = statusBox.withLock { $0 }
    deletes?.fill(&s)
    massChange.fill(&s)
    s.queueDepth = depth
    s.inFlight = flying
    if let oldest {
      let now = monotonicNanos()
      s.oldestPendingAgeSeconds = now > oldest ? Double(now - oldest) / 1e9 : 0
    } else {
      s.oldestPendingAgeSeconds = nil
    }
    if let since = failingSince.withLock({ $0 }) {
      let now = monotonicNanos()
      s.oldestPendingAgeSeconds = max(
        s.oldestPendingAgeSeconds ?? 0, now > since ? Double(now - since) / 1e9 : 0)
    }
    s.maxLagSeconds = config.maxLag.map { Double($0.saturatingNanos) / 1e9 }
    return s
  }
}
