import FleetCore

/// Tells a mass change from a directory's normal rate of deletes and overwrites on the backup.
///
/// Pure: the caller gives the (monotonic) time. Changes are counted in slots of a fifth of the
/// window. The current count is the sum over the last window (the slot now running and the four
/// before it). The normal count is the median of the sums of the ``historyWindows`` windows
/// before it (an hour, with the 5-minute default); slots without changes count as 0, so a quiet
/// directory's normal is 0. A median, not an average: one earlier burst does not raise the bar
/// for the next. The alarm's threshold is `max(minFiles, factor × normal)`.
struct MassChangeDetector: Sendable {
  /// How many earlier windows make the normal count.
  static let historyWindows = 12
  /// Slots per window.
  static let slotsPerWindow = 5

  let limit: MassChangeLimit
  /// The length of a slot in nanoseconds.
  let slotNanos: UInt64
  /// Changes per slot index (`now / slotNanos`); slots older than the history are dropped.
  private(set) var slots: [UInt64: Int] = [:]

  /// What the window holds when it reaches the threshold.
  struct Trigger: Equatable, Sendable {
    /// Files deleted or overwritten within the window.
    var count: Int
    /// The count that raises the alarm now.
    var threshold: Int
    /// The normal count per window.
    var normal: Int
  }

  init(limit: MassChangeLimit) {
    self.limit = limit
    let window = UInt64(max(1, limit.windowSeconds)) * 1_000_000_000
    slotNanos = max(1, window / UInt64(Self.slotsPerWindow))
  }

  /// Counts `files` deleted or overwritten at `now`.
  mutating func record(_ files: Int, now: UInt64) {
    guard files > 0 else { return }
    let index = now / slotNanos
    slots[index, default: 0] += files
    let keep = UInt64(Self.slotsPerWindow * (Self.historyWindows + 1))
    if index >= keep { slots = slots.filter { $0.key > index - keep } }
  }

  /// The files deleted or overwritten within the window ending at `now`.
  func windowCount(now: UInt64) -> Int {
    sum(window: 0, now: now)
  }

  /// The normal count per window: the median over the windows before the current one.
  func normal(now: UInt64) -> Int {
    let sums = (1...Self.historyWindows).map { sum(window: $0, now: now) }.sorted()
    return sums[sums.count / 2]
  }

  /// The count that raises the alarm at `now`.
  func threshold(now: UInt64) -> Int {
    let normal = normal(now: now)
    let (scaled, overflow) = normal.multipliedReportingOverflow(by: limit.factor)
    return max(limit.minFiles, overflow ? .max : scaled)
  }

  /// The trigger when the window ending at `now` reaches the threshold; nil otherwise.
  func check(now: UInt64) -> Trigger? {
    guard !limit.isOff else { return nil }
    let count = windowCount(now: now)
    let threshold = threshold(now: now)
    return count >= threshold ? Trigger(count: count, threshold: threshold, normal: normal(now: now)) : nil
  }

  /// Forgets the current window's changes: an operator cleared the alarm they raised, so they do
  /// not raise it again (they stay out of the normal count too).
  mutating func absorb(now: UInt64) {
    let index = now / slotNanos
    let first = index >= UInt64(Self.slotsPerWindow - 1) ? index - UInt64(Self.slotsPerWindow - 1) : 0
    slots = slots.filter { $0.key < first || $0.key > index }
  }

  /// The sum of window `back` windows before the current one (0: the current one).
  private func sum(window back: Int, now: UInt64) -> Int {
    let index = Int64(clamping: now / slotNanos)
    let last = index - Int64(back * Self.slotsPerWindow)
    let first = last - Int64(Self.slotsPerWindow - 1)
    guard last >= 0 else { return 0 }
    return (max(0, first)...last).reduce(0) { total, i in
      let (s, o) = total.addingReportingOverflow(slots[UInt64(i)] ?? 0)
      return o ? .max : s
    }
  }
}
