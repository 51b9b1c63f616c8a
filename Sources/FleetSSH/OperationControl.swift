import CLibSSH2
import FleetCore
import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// Cancellation signal for one blocking operation: an eventfd the waiting thread polls beside the socket.
///
/// `cancel()` may be called from any thread (a task's cancellation handler); the pool thread running the
/// operation wakes from `poll` at once and throws ``FleetError/Code/cancelled``.
final class OperationControl: Sendable {
  /// The eventfd, readable once cancelled; -1 if the kernel refused one (then polls wake every 100 ms).
  let eventFD: Int32
  private let cancelledFlag = Atomic<Bool>(false)

  init() {
    eventFD = fleetsync_cancel_eventfd()
  }

  deinit {
    if eventFD >= 0 { close(eventFD) }
  }

  /// Whether `cancel()` was called.
  var isCancelled: Bool { cancelledFlag.load(ordering: .acquiring) }

  /// Marks the operation cancelled and wakes its thread.
  func cancel() {
    cancelledFlag.store(true, ordering: .releasing)
    if eventFD >= 0 {
      var one: UInt64 = 1
      _ = withUnsafeBytes(of: &one) { write(eventFD, $0.baseAddress, 8) }
    }
  }
}

/// A point in time an operation must finish by, with the text error messages use.
struct Deadline {
  let instant: ContinuousClock.Instant
  let limit: Duration

  init(after limit: Duration) {
    self.limit = limit
    self.instant = ContinuousClock.now.advanced(by: limit)
  }

  /// Milliseconds left, rounded up; 0 when passed.
  var remainingMilliseconds: Int32 {
    let left = ContinuousClock.now.duration(to: instant)
    if left <= .zero { return 0 }
    let (s, atto) = left.components
    let ms = s * 1000 + (atto + 999_999_999_999_999) / 1_000_000_000_000_000
    return Int32(clamping: ms)
  }

  var hasPassed: Bool { ContinuousClock.now >= instant }

  /// The limit in seconds for messages, e.g. `10s` or `2.5s`.
  var limitText: String { formatSeconds(limit) }
}

/// Formats a duration as seconds for people: `10s`, `2.5s`.
func formatSeconds(_ d: Duration) -> String {
  let (s, atto) = d.components
  let tenths = atto / 100_000_000_000_000_000
  return tenths == 0 ? "\(s)s" : "\(s).\(tenths)s"
}
