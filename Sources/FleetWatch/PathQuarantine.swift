/// Paths that did not reach the backup (rsync exit 23), each retried on its own with a capped
/// exponential backoff while every other path flows in the normal batches.
///
/// An entry sends one path, or a group of paths being split in two (bisected) because rsync did not
/// say which of them failed. Its queued paths stay in flight in the change queue (and in the
/// journal) until it arrives, so they still count as replication lag and survive a restart. An
/// entry stays listed while its retry runs.
struct PathQuarantine {
  struct Entry: Equatable {
    /// What a retry sends (one path, or a group being split) → the queued paths it settles.
    var settles: [SyncPath: [SyncPath]]
    /// Retries of this path alone that failed; 0 while it is only a suspect (a group being split).
    var failures: Int
    /// What rsync said about it.
    var error: String
    /// When it first failed (monotonic ns).
    var since: UInt64
    /// When it is retried next (monotonic ns).
    var retryAt: UInt64
    /// The transfer retrying it now, if one runs.
    var transfer: Int?

    /// What a retry sends, sorted.
    var sends: [SyncPath] { settles.keys.sorted() }
    /// Whether it is a known failing path (not a suspect being isolated).
    var isFailing: Bool { failures > 0 }
  }

  /// Oldest first.
  private(set) var entries: [Entry] = []

  var isEmpty: Bool { entries.isEmpty }

  /// Known failing paths, oldest first.
  var failing: [Entry] { entries.filter(\.isFailing) }

  /// When the oldest entry first failed.
  var oldestSince: UInt64? { entries.map(\.since).min() }

  /// The earliest retry after `now` of an entry not running (a due entry that could not start waits
  /// for the transfer that holds its paths to end, which wakes the dispatcher anyway).
  func nextRetry(after now: UInt64) -> UInt64? {
    entries.filter { $0.transfer == nil && $0.retryAt > now }.map(\.retryAt).min()
  }

  /// The indices of entries due at `now` and not running, oldest first.
  func due(at now: UInt64) -> [Int] {
    entries.indices.filter { entries[$0].transfer == nil && entries[$0].retryAt <= now }
  }

  mutating func add(_ entry: Entry) {
    let at = entries.firstIndex { $0.since > entry.since } ?? entries.endIndex
    entries.insert(entry, at: at)
  }

  /// Records that `transfer` retries the entry at `index`.
  mutating func markRunning(_ index: Int, transfer: Int) {
    entries[index].transfer = transfer
  }

  /// Removes and returns the entry `transfer` retried.
  mutating func finish(transfer: Int) -> Entry? {
    guard let i = entries.firstIndex(where: { $0.transfer == transfer }) else { return nil }
    var entry = entries.remove(at: i)
    entry.transfer = nil
    return entry
  }

  /// Removes and returns every entry whose retry is not running.
  mutating func removeAllWaiting() -> [Entry] {
    let waiting = entries.filter { $0.transfer == nil }
    entries.removeAll { $0.transfer == nil }
    return waiting
  }

  /// Adds `queued` to the paths the entry sending exactly `send` settles; false when there is none.
  mutating func attach(_ queued: [SyncPath], to send: SyncPath) -> Bool {
    guard let i = entries.firstIndex(where: { $0.settles[send] != nil }) else { return false }
    entries[i].settles[send, default: []] += queued
    return true
  }
}

extension PathQuarantine {
  /// How a transfer that ended with exit 23 splits, by what rsync said.
  struct Isolation: Equatable {
    /// Sends rsync named, with its first error about each.
    var failed: [SyncPath: String] = [:]
    /// Sends that may have failed: some error named no path that was sent.
    var suspects: [SyncPath] = []
    /// Sends that arrived.
    var arrived: [SyncPath] = []
  }

  /// Splits `sends` by `errors`: a send fails when an error names it, a path inside it (a tree), or
  /// an implied parent directory of it. When some error names no path that was sent, every send
  /// not named is a suspect; a lone suspect with nothing else named is the one that failed.
  static func isolate(sends: [SyncPath], errors: [RsyncPathError]) -> Isolation {
    var out = Isolation()
    var unexplained = false
    for error in errors {
      let named = sends.filter { names(error.location, $0) }
      if named.isEmpty { unexplained = true }
      for send in named where out.failed[send] == nil { out.failed[send] = error.line }
    }
    let rest = sends.filter { out.failed[$0] == nil }
    if !unexplained {
      out.arrived = rest
    } else if rest.count == 1 && out.failed.isEmpty {
      out.failed[rest[0]] = errors.first?.line ?? "rsync exit 23"
    } else {
      out.suspects = rest
    }
    return out
  }

  /// Whether an error at `location` is about `send`.
  static func names(_ location: RsyncPathError.Location, _ send: SyncPath) -> Bool {
    switch (location, send.path) {
    case (.root, nil): true
    case (.path(let p, let temp), let s?): overlaps(s, p) || temp.map { overlaps(s, $0) } == true
    default: false
    }
  }

  /// Whether `a` and `b` are the same path or one is an ancestor of the other.
  static func overlaps(_ a: RelativePath, _ b: RelativePath) -> Bool {
    a == b || a.ancestors.contains(b) || b.ancestors.contains(a)
  }

  /// Whether two sends overlap (see ``PathClaims``).
  static func overlaps(_ a: SyncPath, _ b: SyncPath) -> Bool {
    switch (a.path, b.path) {
    case (nil, nil): true
    case (let x?, let y?): overlaps(x, y)
    default: false
    }
  }

  /// What to retry for a full sync that ended with exit 23: each named path (a directory whole), or
  /// nil when some error names no path (the full sync then failed as a whole).
  ///
  /// A receiver's temp name stands for its file when only the file exists on the source.
  static func fullSyncFailures(_ errors: [RsyncPathError], kind: (RelativePath) -> ChangeQueue.PathKind)
    -> [SyncPath: String]?
  {
    var out: [SyncPath: String] = [:]
    for error in errors {
      let send: SyncPath
      switch error.location {
      case .unknown: return nil
      case .root: send = .root
      case .path(let p, let temp):
        let path = kind(p) == .missing ? (temp.flatMap { kind($0) == .missing ? nil : $0 } ?? p) : p
        send = kind(path) == .directory ? .tree(path) : .entry(path)
      }
      if out[send] == nil { out[send] = error.line }
    }
    // A path inside a failing tree travels with it.
    return out.filter { send, _ in
      !(send.path?.ancestors.contains { out[.tree($0)] != nil } ?? false)
    }
  }
}
