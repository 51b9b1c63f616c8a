import FleetCore
import Foundation
import Testing

/// The machine's inotify limits (`/proc/sys/fs/inotify/*`) as the tests of one process share them.
///
/// The limits are machine-wide. A test that lowers one for a moment (to provoke a queue overflow or
/// run out of watches) breaks every engine, agent or provisioning run that starts meanwhile, and a
/// test that reads them before and after its run sees a value it did not set. So a test that starts
/// an engine or an agent, or reads or raises the limits, carries ``Testing/Trait/dependsOnInotifyLimits``
/// and runs while nobody changes them; a test that lowers one carries
/// ``Testing/Trait/changesInotifyLimits``, runs alone among all of them, and only it may call
/// ``with(_:_:_:)``.
public enum InotifyLimits {
  /// One inotify limit.
  public enum Knob: String, Sendable {
    /// Events queued per inotify instance before `IN_Q_OVERFLOW`; read when an instance is made.
    case maxQueuedEvents = "max_queued_events"
    /// Watches one user may hold over all its instances; checked at every `inotify_add_watch`.
    case maxUserWatches = "max_user_watches"
    /// Instances one user may hold.
    case maxUserInstances = "max_user_instances"

    /// The sysctl file, e.g. `/proc/sys/fs/inotify/max_user_watches`.
    public var path: String { "/proc/sys/fs/inotify/\(rawValue)" }
  }

  /// How a test uses the limits.
  public enum Use: Sendable {
    /// Depends on them staying as they are (shared with other such tests).
    case depends
    /// Changes them for a while (alone).
    case changes
  }

  /// How the current task holds the limits, if it does.
  @TaskLocal static var held: Use?

  /// Orders the tests that use the limits, first come first served.
  static let lock = SharedExclusiveLock()

  /// Sets `knob` to `value` while `body` runs, then writes back the value it had, also when `body`
  /// throws. Only a test carrying ``Testing/Trait/changesInotifyLimits`` may call it.
  public static func with<T>(_ knob: Knob, _ value: Int, _ body: () async throws -> T) async throws -> T {
    guard held == .changes else {
      throw FleetError(
        .invalidInput, "InotifyLimits.with(\(knob.rawValue)) needs a test carrying .changesInotifyLimits")
    }
    let saved = try read(knob)
    try write(knob, value)
    let result: T
    do {
      result = try await body()
    } catch {
      try? write(knob, saved)
      throw error
    }
    try write(knob, saved)
    return result
  }

  /// The current value of `knob`.
  public static func read(_ knob: Knob) throws -> Int {
    let text = try String(contentsOfFile: knob.path, encoding: .utf8)
    guard let value = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)) else {
      throw FleetError(.io, "\(knob.path) holds no number: \(text)")
    }
    return value
  }

  static func write(_ knob: Knob, _ value: Int) throws {
    try "\(value)\n".write(toFile: knob.path, atomically: false, encoding: .utf8)
  }

  /// inotify watches held by all processes of this process's effective user: they share one
  /// ``Knob/maxUserWatches`` (watches of other users do not count against it).
  public static func watchesInUseByThisUser() -> Int {
    let user = geteuid()
    let fm = FileManager.default
    var count = 0
    for pid in (try? fm.contentsOfDirectory(atPath: "/proc")) ?? [] where Int(pid) != nil {
      guard effectiveUID(of: pid) == user else { continue }
      for fd in (try? fm.contentsOfDirectory(atPath: "/proc/\(pid)/fdinfo")) ?? [] {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/fdinfo/\(fd)", encoding: .utf8) else {
          continue
        }
        count += text.split(separator: "\n").filter { $0.hasPrefix("inotify wd:") }.count
      }
    }
    return count
  }

  /// The effective uid of process `pid` (the second field of `Uid:` in its status), if readable.
  static func effectiveUID(of pid: String) -> uid_t? {
    guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
      let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Uid:") })
    else { return nil }
    let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
    return fields.count > 2 ? uid_t(fields[2]) : nil
  }
}

/// Scopes a test (each of its cases) in its use of the inotify limits; see ``InotifyLimits``.
public struct InotifyLimitsTrait: TestTrait, SuiteTrait, TestScoping {
  /// How the test uses the limits.
  public let use: InotifyLimits.Use

  /// On a suite, every test in it (and in its nested suites) is scoped.
  public var isRecursive: Bool { true }

  public func scopeProvider(for test: Test, testCase: Test.Case?) -> Self? {
    // Each test case on its own, so a test that changes the limits can run between two cases.
    guard testCase != nil else { return nil }
    // A test that changes the limits, in a suite that depends on them, takes them alone only.
    if use == .depends && test.traits.contains(where: { ($0 as? Self)?.use == .changes }) { return nil }
    return self
  }

  public func provideScope(
    for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void
  ) async throws {
    if let held = InotifyLimits.held {
      // Already held by an enclosing scope (a suite trait and a nested suite's): hold it once.
      precondition(
        held == .changes || use == .depends, "a test cannot change the inotify limits inside a scope that depends on them")
      try await function()
      return
    }
    let mode: SharedExclusiveLock.Mode = use == .changes ? .exclusive : .shared
    await InotifyLimits.lock.lock(mode)
    do {
      try await InotifyLimits.$held.withValue(use) { try await function() }
    } catch {
      await InotifyLimits.lock.unlock(mode)
      throw error
    }
    await InotifyLimits.lock.unlock(mode)
  }
}

extension Trait where Self == InotifyLimitsTrait {
  /// The test starts an engine or an agent, or reads or raises the inotify limits: it runs while
  /// no test changes them.
  public static var dependsOnInotifyLimits: Self { InotifyLimitsTrait(use: .depends) }

  /// The test lowers an inotify limit for a while (``InotifyLimits/with(_:_:_:)``): it runs while
  /// no other test that uses the limits runs.
  public static var changesInotifyLimits: Self { InotifyLimitsTrait(use: .changes) }
}

/// A readers–writer lock for async code, first come first served: a shared request waits behind an
/// exclusive one that came first, so neither kind starves.
actor SharedExclusiveLock {
  /// How a holder holds the lock.
  enum Mode { case shared, exclusive }

  private var sharedHolders = 0
  private var exclusiveHeld = false
  private var waiting: [(mode: Mode, continuation: CheckedContinuation<Void, Never>)] = []

  /// How many requests wait for the lock.
  var queued: Int { waiting.count }

  /// Waits until the lock can be held in `mode`, then holds it.
  func lock(_ mode: Mode) async {
    if waiting.isEmpty && isFree(for: mode) {
      take(mode)
      return
    }
    await withCheckedContinuation { waiting.append((mode, $0)) }
  }

  /// Releases a hold in `mode` and hands the lock to the waiters it can now go to, in order.
  func unlock(_ mode: Mode) {
    switch mode {
    case .shared: sharedHolders -= 1
    case .exclusive: exclusiveHeld = false
    }
    while let next = waiting.first, isFree(for: next.mode) {
      waiting.removeFirst()
      take(next.mode)
      next.continuation.resume()
    }
  }

  private func isFree(for mode: Mode) -> Bool {
    switch mode {
    case .shared: !exclusiveHeld
    case .exclusive: !exclusiveHeld && sharedHolders == 0
    }
  }

  private func take(_ mode: Mode) {
    switch mode {
    case .shared: sharedHolders += 1
    case .exclusive: exclusiveHeld = true
    }
  }
}
