import Foundation
import Synchronization

/// How often `supervise` may start or restart one instance, and when it tries a host again that it
/// could not reach: the restart budget and backoffs, in one place.
///
/// - An instance may be started or restarted at most ``Limits/perHour`` times within any hour.
/// - After each, the next must wait its backoff: ``Limits/firstBackoff`` after the first, doubling up
///   to ``Limits/maxBackoff``. An instance found healthy ``Limits/maxBackoff`` after its last
///   restart starts again from the first backoff: it recovered; one that fails again at once keeps
///   doubling (a crash loop).
/// - A host that could not be reached is tried again after its own backoff: the pass interval,
///   doubling up to ``Limits/maxBackoff``, back to every pass once it answers.
public final class RestartBudget: Sendable {
  /// The budget's numbers.
  public struct Limits: Sendable, Equatable {
    /// Starts or restarts of one instance within any hour.
    public var perHour = 5
    /// Seconds after the first restart before another.
    public var firstBackoff: TimeInterval = 10
    /// The longest backoff, seconds.
    public var maxBackoff: TimeInterval = 600

    /// The defaults: 5 an hour, 10 s doubling to 10 min.
    public init() {}
  }

  private struct Backoff {
    var last: Date
    var delay: TimeInterval
  }

  private struct State {
    var restarts: [String: [Date]] = [:]
    var backoff: [String: Backoff] = [:]
    var hosts: [String: Backoff] = [:]
  }

  /// The limits it applies.
  public let limits: Limits
  private let state = Mutex(State())

  /// A budget with `limits`.
  public init(limits: Limits = Limits()) {
    self.limits = limits
  }

  /// Takes one start or restart of instance `key` at `now`: nil when allowed (and counted), else why not.
  public func take(_ key: String, now: Date = Date()) -> String? {
    state.withLock { s in
      let recent = (s.restarts[key] ?? []).filter { now.timeIntervalSince($0) < 3600 }
      s.restarts[key] = recent
      if recent.count >= limits.perHour, let oldest = recent.min() {
        return "restart budget spent: \(recent.count) starts or restarts within the last hour (at most "
          + "\(limits.perHour)); the next is possible at \(Self.format(oldest.addingTimeInterval(3600)))"
      }
      if let backoff = s.backoff[key], now < backoff.last.addingTimeInterval(backoff.delay) {
        return
          "backing off after the last restart, until \(Self.format(backoff.last.addingTimeInterval(backoff.delay)))"
      }
      let delay = s.backoff[key].map { min(limits.maxBackoff, $0.delay * 2) } ?? limits.firstBackoff
      s.backoff[key] = Backoff(last: now, delay: delay)
      s.restarts[key] = recent + [now]
      return nil
    }
  }

  /// Instance `key` was found healthy at `now`: its backoff starts over once its last restart is
  /// ``Limits/maxBackoff`` old.
  public func healthy(_ key: String, now: Date = Date()) {
    state.withLock { s in
      if let backoff = s.backoff[key], now.timeIntervalSince(backoff.last) >= limits.maxBackoff {
        s.backoff[key] = nil
      }
    }
  }

  /// Whether host `name` is due for a check at `now` (it is, unless it failed and its backoff runs).
  public func hostDue(_ name: String, now: Date = Date()) -> Bool {
    state.withLock { s in
      guard let backoff = s.hosts[name] else { return true }
      return now >= backoff.last.addingTimeInterval(backoff.delay)
    }
  }

  /// Host `name` could not be reached at `now`; returns when it is tried again.
  @discardableResult
  public func hostFailed(_ name: String, interval: TimeInterval, now: Date = Date()) -> Date {
    state.withLock { s in
      let delay = s.hosts[name].map { min(limits.maxBackoff, $0.delay * 2) } ?? max(1, interval)
      s.hosts[name] = Backoff(last: now, delay: delay)
      return now.addingTimeInterval(delay)
    }
  }

  /// Host `name` answered: it is checked at every pass again.
  public func hostAnswered(_ name: String) {
    state.withLock { s in s.hosts[name] = nil }
  }

  static func format(_ date: Date) -> String { date.formatted(.iso8601) }
}
