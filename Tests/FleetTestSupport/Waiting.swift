import Foundation

/// How tests wait for something to happen: poll a condition until it holds, up to a generous deadline.
///
/// A deadline is there to end a hang, not to measure speed: a slow or loaded machine makes a test
/// slower, never red. The condition is evaluated once more after the deadline, so a test that was
/// descheduled past it still sees what happened. A negative check ("X did not happen") needs a
/// positive event to wait for first (a later change that is replicated), never a sleep.
public enum Wait {
  /// The default deadline for an event that normally takes milliseconds to seconds.
  public static let deadline: Duration = .seconds(120)
  /// How often a condition is polled.
  public static let interval: Duration = .milliseconds(100)
}

/// A wait that ran out: names what never happened.
public struct WaitTimeout: Error, CustomStringConvertible {
  /// What the test waited for.
  public let what: String
  /// How long it waited.
  public let deadline: Duration

  /// Makes the error for a wait on `what` that ran out after `deadline`.
  public init(what: String, deadline: Duration = Wait.deadline) {
    self.what = what
    self.deadline = deadline
  }

  /// Describes the timeout, e.g. `timed out after 120 s waiting for the initial full sync`.
  public var description: String { "timed out after \(deadline.components.seconds) s waiting for \(what)" }
}

/// Polls `condition` every `interval` until it returns true or `deadline` passes; returns whether it held.
///
/// A condition that throws counts as "not yet" (a server that is still starting); the last
/// evaluation, after the deadline, rethrows, so a failure shows the error.
public func eventually(
  within deadline: Duration = Wait.deadline, every interval: Duration = Wait.interval,
  _ condition: () async throws -> Bool
) async throws -> Bool {
  let end = ContinuousClock.now + deadline
  while ContinuousClock.now < end {
    if (try? await condition()) == true { return true }
    try await Task.sleep(for: interval)
  }
  return try await condition()
}

/// Like `eventually` but throws ``WaitTimeout`` naming `what` when the
/// condition never held: for waits a test cannot go on without.
public func waitFor(
  _ what: String, within deadline: Duration = Wait.deadline, every interval: Duration = Wait.interval,
  _ condition: () async throws -> Bool
) async throws {
  guard try await eventually(within: deadline, every: interval, condition) else {
    throw WaitTimeout(what: what, deadline: deadline)
  }
}

/// The blocking form of `eventually`, for synchronous code: sleeps the calling thread between polls.
///
/// A name of its own: an overload would be chosen for a synchronous closure in async code too, and
/// block a thread of the cooperative pool.
public func eventuallyBlocking(
  within deadline: Duration = Wait.deadline, every interval: Duration = Wait.interval,
  _ condition: () throws -> Bool
) throws -> Bool {
  let end = ContinuousClock.now + deadline
  while ContinuousClock.now < end {
    if (try? condition()) == true { return true }
    Thread.sleep(forTimeInterval: interval.inSeconds)
  }
  return try condition()
}

/// The blocking form of `waitFor`, for synchronous code.
public func waitForBlocking(
  _ what: String, within deadline: Duration = Wait.deadline, every interval: Duration = Wait.interval,
  _ condition: () throws -> Bool
) throws {
  guard try eventuallyBlocking(within: deadline, every: interval, condition) else {
    throw WaitTimeout(what: what, deadline: deadline)
  }
}

/// Runs blocking work on a thread of its own and returns its result.
///
/// For work that must not wait for a thread of the cooperative pool (other tests may hold them
/// all): a slow bring-up, or watching for a short-lived state and acting on it at once.
public func onOwnThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
  try await withCheckedThrowingContinuation { continuation in
    let thread = Thread { continuation.resume(with: Result { try body() }) }
    thread.name = "test-blocking"
    thread.start()
  }
}

extension Duration {
  /// The duration in seconds, as a `Double`.
  var inSeconds: Double {
    Double(components.seconds) + Double(components.attoseconds) / 1e18
  }
}
