/// Changed paths waiting for replication, coalesced and de-duplicated.
///
/// A path is either pending (accepted, not yet in a transfer) or in flight. A path changed
/// again while in flight becomes pending as well, so it is sent once more after the transfer.
/// Times are monotonic nanoseconds and keep the first time a change was seen.
struct ChangeQueue {
  private(set) var pending: [SyncPath: UInt64] = [:]
  private(set) var inFlight: [SyncPath: UInt64] = [:]
  private var oldestCache: UInt64?

  var pendingCount: Int { pending.count }

  /// The pending paths when there are at most `limit`; nil when there are more.
  func pendingPaths(upTo limit: Int) -> [SyncPath]? {
    pending.count <= limit ? Array(pending.keys) : nil
  }
  var inFlightCount: Int { inFlight.count }
  var isIdle: Bool { pending.isEmpty && inFlight.isEmpty }

  /// Whether `path` is pending or in flight.
  func isOutstanding(_ path: SyncPath) -> Bool { pending[path] != nil || inFlight[path] != nil }

  /// Every path not yet replicated: what the journal must still hold.
  var outstanding: Set<SyncPath> { Set(pending.keys).union(inFlight.keys) }

  /// Adds changed paths seen at `now`; returns the ones that were not pending already.
  mutating func accept(_ paths: [SyncPath], now: UInt64) -> [SyncPath] {
    var fresh: [SyncPath] = []
    for p in paths where pending[p] == nil {
      pending[p] = now
      fresh.append(p)
    }
    if !fresh.isEmpty, oldestCache == nil || oldestCache! > now { oldestCache = now }
    return fresh
  }

  /// Moves up to `limit` pending paths, oldest first, into flight; returns them sorted.
  ///
  /// A path already in flight (changed again during its transfer) is not taken: it waits for
  /// that transfer to end, so one path is never in two transfers at once.
  mutating func take(limit: Int) -> [SyncPath] {
    var chosen: [SyncPath] = []
    for (p, _) in pending where inFlight[p] == nil { chosen.append(p) }
    if chosen.count > limit {
      chosen.sort { pending[$0]! < pending[$1]! }
      chosen.removeLast(chosen.count - limit)
    }
    for p in chosen {
      let t = pending.removeValue(forKey: p)!
      inFlight[p] = t
    }
    chosen.sort()
    return chosen
  }

  /// Moves every pending path that `matches` (and is not in flight) into flight; returns them sorted.
  mutating func take(where matches: (SyncPath) -> Bool) -> [SyncPath] {
    let chosen = pending.keys.filter { inFlight[$0] == nil && matches($0) }
    for p in chosen { inFlight[p] = pending.removeValue(forKey: p)! }
    return chosen.sorted()
  }

  /// What ``takeReady(limit:delay:now:)`` found.
  enum Ready: Equatable {
    /// Nothing is pending that could be sent now.
    case nothing
    /// The oldest takeable change is younger than the coalescing delay; try again at this time.
    case notBefore(UInt64)
    /// Paths moved into flight, sorted.
    case batch([SyncPath])
  }

  /// Takes a batch once the oldest takeable change has waited `delay` nanoseconds.
  ///
  /// Coalescing: everything pending then goes (up to `limit`, oldest first), so a busy tree
  /// gives few large batches instead of many small ones.
  mutating func takeReady(limit: Int, delay: UInt64, now: UInt64) -> Ready {
    var oldest: UInt64?
    for (p, t) in pending where inFlight[p] == nil && t < (oldest ?? .max) { oldest = t }
    guard let oldest else { return .nothing }
    let (sum, overflow) = oldest.addingReportingOverflow(delay)
    let due = overflow ? UInt64.max : sum
    if now < due { return .notBefore(due) }
    return .batch(take(limit: limit))
  }

  /// Marks in-flight paths as replicated.
  mutating func done(_ paths: [SyncPath]) {
    for p in paths { inFlight[p] = nil }
    recomputeOldest()
  }

  /// Puts in-flight paths back to pending (a failed transfer), keeping their first-seen time.
  mutating func requeue(_ paths: [SyncPath]) {
    for p in paths {
      guard let t = inFlight.removeValue(forKey: p) else { continue }
      pending[p] = min(pending[p] ?? t, t)
    }
    recomputeOldest()
  }

  /// The first-seen time of the oldest change not yet replicated.
  var oldest: UInt64? { oldestCache }

  private mutating func recomputeOldest() {
    let a = pending.values.min()
    let b = inFlight.values.min()
    switch (a, b) {
    case let (x?, y?): oldestCache = min(x, y)
    case let (x?, nil): oldestCache = x
    case let (nil, y?): oldestCache = y
    case (nil, nil): oldestCache = nil
    }
  }
}

extension ChangeQueue {
  /// What a path is on the source right now.
  enum PathKind {
    case missing
    case directory
    case other
  }

  /// Groups queued paths into what to send.
  ///
  /// A path that no longer exists is replaced by its topmost missing ancestor (or by an ancestor
  /// that is now a file): rsync `--files-from` (implied `-R`) reports a missing parent of a
  /// listed path as "vanished" (exit 24) and a parent that became a file as an error (exit 23),
  /// while listing that ancestor deletes or replaces the whole gone subtree on the backup
  /// (`--delete-missing-args --force`); a gone tree is sent as an entry. A path inside a tree
  /// (a directory created or moved in) travels with that tree. Returns the path to send → the
  /// queued paths it settles, so each queued path is settled by exactly one send.
  static func collapse(_ paths: [SyncPath], kind: (RelativePath) -> PathKind) -> [SyncPath: [SyncPath]] {
    var kindCache: [RelativePath: PathKind] = [:]
    func kindOf(_ p: RelativePath) -> PathKind {
      if let k = kindCache[p] { return k }
      let k = kind(p)
      kindCache[p] = k
      return k
    }
    var trees = Set<RelativePath>()
    for case .tree(let t) in paths where kindOf(t) != .missing { trees.insert(t) }
    var out: [SyncPath: [SyncPath]] = [:]
    for p in paths {
      var send = p
      if let b = p.path {
        if kindOf(b) == .missing {
          let gone = b.ancestors.first { kindOf($0) != .directory } ?? b
          send = .entry(gone)
        } else if !trees.isEmpty, let tree = b.ancestors.first(where: { trees.contains($0) }) {
          send = .tree(tree)
        }
      }
      out[send, default: []].append(p)
    }
    return out
  }

  /// Splits send paths into at most `workers` shards of at most `cap` paths that share no
  /// overlapping paths.
  ///
  /// A path goes to the shard of a path it overlaps (see ``PathClaims``), else to the shard its
  /// hash picks, or, when that one is full, to the emptiest shard with room; paths are taken in
  /// order, so the result does not depend on the order given. A path that overlaps paths of two
  /// shards, whose shard is full, or in `busy` (held by a running transfer), is returned in
  /// `deferred` instead.
  static func shard(
    _ paths: [SyncPath], workers: Int, cap: Int = .max, busy: PathClaims = PathClaims()
  ) -> (shards: [[SyncPath]], deferred: [SyncPath]) {
    let n = max(1, workers)
    var shards = [[SyncPath]](repeating: [], count: n)
    var claims = PathClaims()
    var deferred: [SyncPath] = []
    for p in paths.sorted() {
      guard busy.isEmpty || busy.owners(overlapping: p).isEmpty else {
        deferred.append(p)
        continue
      }
      let owners = claims.owners(overlapping: p)
      guard owners.count <= 1 else {
        deferred.append(p)
        continue
      }
      var shard = owners.first ?? Int(shardHash(p) % UInt64(n))
      if owners.isEmpty && shards[shard].count >= cap {
        shard = shards.indices.min { shards[$0].count < shards[$1].count }!
      }
      guard shards[shard].count < cap else {
        deferred.append(p)
        continue
      }
      claims.claim(p, by: shard)
      shards[shard].append(p)
    }
    return (shards.filter { !$0.isEmpty }, deferred)
  }

  /// The hash that picks a path's shard: stable across runs (64-bit FNV-1a, unlike `Hasher`), and
  /// the same for an entry and the tree of the same path.
  static func shardHash(_ p: SyncPath) -> UInt64 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for b in p.path?.bytes ?? [] {
      h ^= UInt64(b)
      h = h &* 0x100_0000_01b3
    }
    return h
  }
}
