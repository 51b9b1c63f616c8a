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
/// back, or fewer deletes are left). What must outlive a restart is its ``Tally``, saved in the state
/// directory (see `DeleteBudget+File.swift`).
struct DeleteBudget {
  /// Deletes held, waiting for an operator or for the count to fit the limit.
  struct Held: Equatable, Codable {
    /// Files the held deletes would remove on the backup (the latest count).
    var count: Int
    /// When deletes were first held.
    var since: Date
    /// A few of the held paths, for people: from the batches held, or from a dry run after a
    /// whole-tree count.
    var paths: [String]
  }

  /// A point in time by both clocks: monotonic nanoseconds (exact within one boot, immune to the
  /// wall clock being set) and the wall clock (what survives a reboot).
  struct Moment: Equatable, Codable {
    var monotonic: UInt64
    var date: Date
  }

  /// Deletes applied at one moment.
  struct Applied: Equatable, Codable {
    var at: Moment
    var count: Int
  }

  /// What the limit remembers across a restart; the limit itself comes from the config.
  struct Tally: Equatable, Codable {
    /// Deletes applied within the window.
    var applied: [Applied] = []
    /// Set when the saved tally could not be read: deletes of unknown number may have been applied
    /// just before, so the window counts as full from this moment until it passes or an operator
    /// releases held deletes.
    var fullSince: Moment?
    /// The module's files at the last full sync, for a percentage limit.
    var moduleFiles = 0
    var held: Held?
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
  private(set) var tally: Tally
  /// An operator asked to apply what is held; the next whole-tree count acts on it. Not saved: the
  /// request file itself outlives a restart and is seen again.
  var releaseRequested = false
  /// When the whole tree's deletes were last counted.
  private var lastWholeTreeCount: UInt64 = 0

  init(limit: DeleteLimit, window: UInt64 = defaultWindow.saturatingNanos, tally: Tally = Tally()) {
    self.limit = limit
    self.window = window
    self.tally = tally
  }

  /// The module's files at the last full sync, for a percentage limit.
  var moduleFiles: Int { tally.moduleFiles }
  var held: Held? { tally.held }

  /// The deletes the limit allows now; nil when unlimited.
  var allowed: Int? { limit.allowed(moduleFiles: moduleFiles) }

  /// Deletes applied within the window before `now` (those the tally knows of).
  func used(now: UInt64) -> Int {
    tally.applied.filter { inWindow($0.at, now: now) }.reduce(0) { Self.sum($0, $1.count) }
  }

  /// Whether the window counts as full at `now` because the saved tally could not be read.
  func windowFull(now: UInt64) -> Bool {
    tally.fullSince.map { inWindow($0, now: now) } ?? false
  }

  /// The deletes that may still be applied at `now`; nil when unlimited.
  func remaining(now: UInt64) -> Int? {
    guard let allowed else { return nil }
    return windowFull(now: now) ? 0 : max(0, allowed - used(now: now))
  }

  /// `a + b`, `Int.max` when that overflows.
  private static func sum(_ a: Int, _ b: Int) -> Int {
    let (s, overflow) = a.addingReportingOverflow(b)
    return overflow ? .max : s
  }

  private func inWindow(_ moment: Moment, now: UInt64) -> Bool {
    now < moment.monotonic.addingReportingOverflow(window).partialValue
  }

  /// A full sync listed `listed` files on the source, created `created` of them on the backup, and
  /// counted `deletes`: what the module held before it is the base of a percentage limit.
  mutating func fullSyncCounted(listed: Int, created: Int, deletes: Int) {
    tally.moduleFiles = max(0, listed - created + deletes)
  }

  /// Decides on `count` deletes (of `paths`, or of the whole tree when `paths` is nil) at `now`.
  mutating func decide(deletes count: Int, paths: [String]?, now: UInt64, date: Date) -> Decision {
    let moment = Moment(monotonic: now, date: date)
    let live = tally.applied.filter { inWindow($0.at, now: now) }
    tally.applied = live
    if !windowFull(now: now) { tally.fullSince = nil }
    let wholeTree = paths == nil
    if wholeTree { lastWholeTreeCount = now }
    if wholeTree, releaseRequested {
      releaseRequested = false
      // An operator looked: deletes of unknown number before a lost tally hold nothing more.
      tally.fullSince = nil
      let released = held?.count ?? 0
      if count <= Self.sum(released, remaining(now: now) ?? .max) {
        tally.held = nil
        return grant(count, at: moment)
      }
    }
    if count == 0 {
      if wholeTree { tally.held = nil }
      return .apply(cap: 0)
    }
    guard let remaining = remaining(now: now), count > remaining else {
      if wholeTree { tally.held = nil }
      return grant(count, at: moment)
    }
    var next = held ?? Held(count: 0, since: date, paths: [])
    if let paths {
      next.count += count
      next.paths = Array((next.paths + paths).prefix(Self.samplePaths))
    } else {
      next.count = count
    }
    tally.held = next
    return .hold
  }

  /// Shows `paths` as examples of the held deletes (a whole-tree count names none).
  mutating func show(examples paths: [String]) {
    tally.held?.paths = Array(paths.prefix(Self.samplePaths))
  }

  /// Whether deletes are held and were last counted `interval` or longer before `now`.
  func recountDue(now: UInt64, interval: UInt64) -> Bool {
    held != nil && now >= lastWholeTreeCount.addingReportingOverflow(interval).partialValue
  }

  private mutating func grant(_ count: Int, at moment: Moment) -> Decision {
    if count > 0 { tally.applied.append(Applied(at: moment, count: count)) }
    return .apply(cap: count)
  }
}
