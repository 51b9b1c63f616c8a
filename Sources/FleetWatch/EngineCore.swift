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

/// The state the event thread and the transfer loop share; every field is behind a `Mutex`.
final class EngineCore: Sendable {
  struct Queue {
    var changes = ChangeQueue()
    var journal: Journal?
  }

  struct Flags {
    var fullSyncRequested = false
    var setupDone = false
    var watchLimit = false
    var inotifyUnavailable = false
    /// Why the event loop stopped on its own (poll keeps failing); the engine ends with it.
    var failure: FleetError?
  }

  let config: WatchConfig
  let logger: Logger
  let queue: Mutex<Queue>
  let statusBox = Mutex(WatchStatus())
  let flags = Mutex(Flags())
  let wakeStream: AsyncStream<Void>
  let wake: AsyncStream<Void>.Continuation
  /// Journal size above which it is rewritten with only the outstanding paths.
  static let compactBytes = 16 << 20

  /// Opens the journal at `journalPath` (none if nil) and queues `replayed` paths as pending.
  init(config: WatchConfig, logger: Logger, journalPath: String?, replayed: [[UInt8]]) throws {
    self.config = config
    self.logger = logger
    var q = Queue(journal: try journalPath.map { try Journal(path: $0) })
    _ = q.changes.accept(replayed, now: monotonicNanos())
    self.queue = Mutex(q)
    (wakeStream, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
  }

  /// Accepts changed paths: journals the new ones durably, then queues them.
  func accept(_ paths: [[UInt8]]) {
    guard !paths.isEmpty else { return }
    let now = monotonicNanos()
    let failure: String? = queue.withLock { q in
      let fresh = q.changes.accept(paths, now: now)
      do {
        try q.journal?.append(fresh)
        return nil
      } catch {
        return "\(error)"
      }
    }
    if let failure {
      logger.error("journal write failed; changes are kept in memory only", metadata: ["error": "\(failure)"])
      recordError(kind: .io, message: "the journal cannot be written: \(failure)")
    }
    wake.yield()
  }

  /// Marks transferred paths done and compacts the journal when it can.
  func done(_ paths: [[UInt8]]) {
    let failure: String? = queue.withLock { q in
      q.changes.done(paths)
      guard let j = q.journal else { return nil }
      do {
        if q.changes.isIdle {
          if j.size > 0 { try j.rewrite([[UInt8]]()) }
        } else if j.size > Self.compactBytes {
          try j.rewrite(q.changes.outstanding)
        }
        return nil
      } catch {
        return "\(error)"
      }
    }
    if let failure { logger.warning("journal compaction failed", metadata: ["error": "\(failure)"]) }
  }

  func requeue(_ paths: [[UInt8]]) {
    queue.withLock { $0.changes.requeue(paths) }
    wake.yield()
  }

  func take(limit: Int) -> [[UInt8]] {
    queue.withLock { $0.changes.take(limit: limit) }
  }

  /// Takes a batch once the oldest takeable change is `delay` old; see ``ChangeQueue/takeReady(limit:delay:now:)``.
  func takeReady(limit: Int, delay: Duration) -> ChangeQueue.Ready {
    let c = max(delay, .zero).components
    let ns = UInt64(clamping: c.seconds).multipliedReportingOverflow(by: 1_000_000_000)
    let delayNanos = ns.overflow ? UInt64.max : ns.partialValue &+ UInt64(c.attoseconds / 1_000_000_000)
    return queue.withLock { $0.changes.takeReady(limit: limit, delay: delayNanos, now: monotonicNanos()) }
  }

  func beat() {
    statusBox.withLock { $0.heartbeat = Date() }
  }

  func update(_ body: (inout WatchStatus) -> Void) {
    statusBox.withLock { body(&$0) }
  }

  func recordError(kind: WatchStatus.ErrorKind, message: String) {
    statusBox.withLock {
      $0.lastError = message
      $0.lastErrorKind = kind
    }
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

  /// The state to show when nothing is wrong: watching, or degraded when changes can be missed.
  var steadyState: WatchStatus.State {
    flags.withLock { $0.watchLimit || $0.inotifyUnavailable } ? .degraded : .watching
  }

  /// A snapshot with the queue figures filled in.
  func snapshot() -> WatchStatus {
    let (depth, flying, oldest) = queue.withLock { q in
      (q.changes.pendingCount, q.changes.inFlightCount, q.changes.oldest)
    }
    var s = statusBox.withLock { $0 }
    s.queueDepth = depth
    s.inFlight = flying
    if let oldest {
      let now = monotonicNanos()
      s.oldestPendingAgeSeconds = now > oldest ? Double(now - oldest) / 1e9 : 0
    } else {
      s.oldestPendingAgeSeconds = nil
    }
    return s
  }
}
