import FleetCore
import Foundation
import Logging
import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// What the event loop does when `poll(2)` fails, so that a failing poll never turns it into a
/// busy loop that logs on every pass.
///
/// Each failure waits before the next try: ``firstDelay``, doubling up to ``maxDelay``. The first
/// failure of a streak is logged and shown in the status, then at most one line per
/// ``logInterval``. `ENOMEM` and `EAGAIN` can pass; when they last ``giveUpAfter``, or at once for
/// any other errno (`EBADF`, `EFAULT`, `EINVAL`: every retry fails the same way), the loop stops
/// and the engine ends with an error, so the agent exits and its supervisor starts it afresh (the
/// full sync at start covers what was missed). `EINTR` is not a failure and never gets here.
struct PollFailures {
  /// What to do after one failure.
  enum Action: Equatable {
    /// Wait `delay`, then poll again; `log`, when set, goes to the log and the status.
    case retry(delay: Duration, log: String?)
    /// Stop the event loop and the engine with this message.
    case stop(String)
  }

  /// The wait after the first failure of a streak.
  var firstDelay: Duration = .milliseconds(10)
  /// The longest wait between two tries.
  var maxDelay: Duration = .seconds(1)
  /// The shortest time between two log lines about the same streak.
  var logInterval: Duration = .seconds(15)
  /// How long a transient failure may last before the loop stops.
  var giveUpAfter: Duration = .seconds(60)

  /// Failures since poll last worked.
  private(set) var streak = 0
  private var firstAt: UInt64 = 0
  private var loggedAt: UInt64 = 0
  private var delay: Duration = .zero

  /// Takes one failure with `errno` `code` at monotonic time `now` (nanoseconds).
  mutating func failed(errno code: Int32, now: UInt64) -> Action {
    let reason = "\(String(cString: strerror(code))) (errno \(code))"
    guard code == ENOMEM || code == EAGAIN else {
      return .stop(
        "the inotify event loop cannot wait for events: poll failed: \(reason), and retrying cannot "
          + "help; the watcher stops so that its supervisor restarts it")
    }
    if streak == 0 {
      firstAt = now
      loggedAt = now
      delay = firstDelay
    } else {
      delay = min(delay * 2, maxDelay)
    }
    streak += 1
    let failingFor = Self.elapsed(from: firstAt, to: now)
    if failingFor >= giveUpAfter {
      return .stop(
        "the inotify event loop cannot wait for events: poll failed \(streak) times in \(Self.text(failingFor)): "
          + "\(reason); the watcher stops so that its supervisor restarts it (the full sync at start "
          + "covers what was missed)")
    }
    if streak == 1 {
      return .retry(
        delay: delay,
        log: "the inotify event loop cannot wait for events: poll failed: \(reason); retrying with backoff")
    }
    guard Self.elapsed(from: loggedAt, to: now) >= logInterval else { return .retry(delay: delay, log: nil) }
    loggedAt = now
    return .retry(
      delay: delay,
      log:
        "poll keeps failing (\(streak) times in \(Self.text(failingFor))): \(reason); retrying with backoff")
  }

  /// Ends a failure streak: poll worked. Returns a line to log when there was a streak.
  mutating func succeeded() -> String? {
    guard streak > 0 else { return nil }
    defer { streak = 0 }
    return "poll works again after \(streak) failure(s); the event loop goes on"
  }

  static func elapsed(from start: UInt64, to now: UInt64) -> Duration {
    .nanoseconds(Int64(clamping: now > start ? now - start : 0))
  }

  static func text(_ d: Duration) -> String {
    String(format: "%.1f s", Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18)
  }
}

/// The system calls the event loop waits with.
struct PollSystem {
  /// `poll(2)`: sets `errno` when it returns -1.
  var pollEvents: (UnsafeMutablePointer<pollfd>, nfds_t, Int32) -> Int32 = { poll($0, $1, $2) }
  /// Blocks the calling thread for a backoff delay.
  var pause: (Duration) -> Void = { delay in
    let (seconds, attoseconds) = delay.components
    Thread.sleep(forTimeInterval: Double(seconds) + Double(attoseconds) / 1e18)
  }
}

extension EventLoop {
  /// Polls `fds` (revents cleared first) for up to 500 ms. Returns poll's result, 0 after `EINTR`
  /// or a failure waited out, or `nil` when the loop must end: the stop pipe became readable
  /// during a wait, or poll keeps failing (then the engine ends with ``EngineCore/Flags/failure``).
  func pollOnce(_ fds: inout [pollfd]) -> Int32? {
    for i in fds.indices { fds[i].revents = 0 }
    let rc = pollSystem.pollEvents(&fds, nfds_t(fds.count), 500)
    if rc >= 0 {
      if let message = pollFailures.succeeded() { logger.notice("\(message)") }
      return rc
    }
    let code = errno
    if code == EINTR { return 0 }
    switch pollFailures.failed(errno: code, now: monotonicNanos()) {
    case .retry(let delay, let message):
      if let message {
        logger.error("\(message)")
        core.recordError(kind: .io, message: message)
      }
      pollSystem.pause(delay)
      return isStopRequested ? nil : 0
    case .stop(let message):
      logger.critical("\(message)")
      core.recordError(kind: .io, message: message)
      core.flags.withLock { $0.failure = FleetError(.watchInotify, message) }
      return nil
    }
  }

  /// Whether the stop pipe holds a byte, asked without `poll`.
  var isStopRequested: Bool {
    var pending: Int32 = 0
    return withUnsafeMutablePointer(to: &pending) { ioctl(stopFD, UInt(FIONREAD), $0) } == 0 && pending > 0
  }
}
