import FleetCore
import Foundation

/// The machine's inotify limits (`/proc/sys/fs/inotify/*`) and fanotify's queue limit, which tests
/// share.
///
/// The limits are machine-wide. A test that lowers one for a moment (to provoke a queue overflow or
/// run out of watches) breaks every engine, agent or provisioning run that starts meanwhile, and a
/// test that reads them before and after its run sees a value it did not set. So a test that starts
/// an engine or an agent, or reads or raises the limits, carries ``Testing/Trait/dependsOnInotifyLimits``
/// and runs while nobody changes them; a test that lowers one carries
/// ``Testing/Trait/changesInotifyLimits``, runs alone among all of them, and only it may call
/// ``with(_:_:_:)`` (see ``SharedResourceTrait``).
public enum InotifyLimits {
  /// One inotify limit.
  public enum Knob: String, Sendable {
    /// Events queued per inotify instance before `IN_Q_OVERFLOW`; read when an instance is made.
    case maxQueuedEvents = "max_queued_events"
    /// Watches one user may hold over all its instances; checked at every `inotify_add_watch`.
    case maxUserWatches = "max_user_watches"
    /// Events queued per fanotify group before `FAN_Q_OVERFLOW`; read when a group is made.
    case fanotifyMaxQueuedEvents = "fanotify/max_queued_events"

    /// The sysctl file, e.g. `/proc/sys/fs/inotify/max_user_watches`.
    public var path: String {
      self == .fanotifyMaxQueuedEvents ? "/proc/sys/fs/\(rawValue)" : "/proc/sys/fs/inotify/\(rawValue)"
    }
  }

  /// Sets `knob` to `value` while `body` runs, then writes back the value it had, also when `body`
  /// throws. Only a test carrying ``Testing/Trait/changesInotifyLimits`` may call it.
  public static func with<T>(_ knob: Knob, _ value: Int, _ body: () async throws -> T) async throws -> T {
    guard SharedResourceTrait.holdsExclusively(.inotifyLimits) else {
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
  static func read(_ knob: Knob) throws -> Int {
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
