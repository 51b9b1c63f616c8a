import FleetCore
import Foundation

/// The delete limit's bookkeeping: which counted deletes may be applied now, and which are held.
///
/// Pure and synchronous (times come in as arguments). Every transfer that can delete on the
/// backup first runs with rsync's `--max-delete=0`, which applies creates and changes and only
/// counts the deletes; the count comes here. Deletes applied within ``window`` add up, so a mass
/// delete that reaches the engine in several batches is still one mass delete. When the deletes
/// counted would take the window's total past the limit they are held: nothing of them is applied
/// until an operator releases them (``releaseRequested``) or a later count fits (the files came
/// back, or fewer deletes are left).
struct DeleteBudget {
  /// Deletes held, waiting for an operator or for the count to fit the limit.
  struct Held: Equatable {
    /// Files the held deletes would remove on the backup (the latest count).
    var count: Int
    /// When deletes were first held.
    var since: Date
    /// A few of the held paths, for people: from the batches held, or from a dry run after a
    /// whole-tree count.
    var paths: [String]
  }

  /// What to do with counted deletes.
  enum Decision: Equatable {
    /// Apply them, with rsync's `--max-delete` at `cap` as the last line of defence.
    case apply(cap: Int)
    /// Hold them.
    case hold
  }

  /// How long applied deletes count against the limit.
  static let defaultWindow = Duration.seconds(600)
  /// The window as people read it.
  static let windowText = "10 minutes"
  /// How many held paths are kept for the status.
  static let samplePaths = 5

  var limit: DeleteLimit
  var window: UInt64
  /// The module's files at the last full sync, for a percentage limit.
  private(set) var moduleFiles = 0
  private(set) var held: Held?
  /// An operator asked to apply what is held; the next whole-tree count acts on it.
  var releaseRequested = false
  private var applied: [(at: UInt64, count: Int)] = []
  /// When the whole tree's deletes were last counted.
  private var lastWholeTreeCount: UInt64 = 0

  init(limit: DeleteLimit, window: UInt64 = defaultWindow.saturatingNanos) {
    self.limit = limit
    self.window = window
  }

  /// The deletes the limit allows now; nil when unlimited.
  var allowed: Int? { limit.allowed(moduleFiles: moduleFiles) }

  /// Deletes applied within the window before `now`.
  func used(now: UInt64) -> Int {
    applied.filter { now < $0.at.addingReportingOverflow(window).partialValue }.reduce(0) { $0 + $1.count }
  }

  /// A full sync listed `listed` files on the source, created `created` of them on the backup, and
  /// counted `deletes`: what the module held before it is the base of a percentage limit.
  mutating func fullSyncCounted(listed: Int, created: Int, deletes: Int) {
    moduleFiles = max(0, listed - created + deletes)
  }

  /// Decides on `count` deletes (of `paths`, or of the whole tree when `paths` is nil) at `now`.
  mutating func decide(deletes count: Int, paths: [String]?, now: UInt64, date: Date) -> Decision {
    applied.removeAll { now >= $0.at.addingReportingOverflow(window).partialValue }
    let wholeTree = paths == nil
    if wholeTree { lastWholeTreeCount = now }
    if wholeTree, releaseRequested {
      releaseRequested = false
      let released = held?.count ?? 0
      if count <= released + max(0, (allowed ?? .max) - used(now: now)) {
        held = nil
        return grant(count, now: now)
      }
    }
    if count == 0 {
      if wholeTree { held = nil }
      return .apply(cap: 0)
    }
    guard let allowed, used(now: now) + count > allowed else {
      if wholeTree { held = nil }
      return grant(count, now: now)
    }
    var next = held ?? Held(count: 0, since: date, paths: [])
    if let paths {
      next.count += count
      next.paths = Array((next.paths + paths).prefix(Self.samplePaths))
    } else {
      next.count = count
    }
    held = next
    return .hold
  }

  /// Shows `paths` as examples of the held deletes (a whole-tree count names none).
  mutating func show(examples paths: [String]) {
    held?.paths = Array(paths.prefix(Self.samplePaths))
  }

  /// Whether deletes are held and were last counted `interval` or longer before `now`.
  func recountDue(now: UInt64, interval: UInt64) -> Bool {
    held != nil && now >= lastWholeTreeCount.addingReportingOverflow(interval).partialValue
  }

  private mutating func grant(_ count: Int, now: UInt64) -> Decision {
    if count > 0 { applied.append((now, count)) }
    return .apply(cap: count)
  }
}
