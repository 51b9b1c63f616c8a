/// Full syncs beside live transfers, and the rechecks after them (see ``TransferDispatcher``).
extension TransferDispatcher {
  mutating func startFullSync(_ effects: inout [Effect]) {
    if firstFullSync && !degraded && !startFullSyncDeferred { effects.append(.initialSyncStarted) }
    effects.append(.fullSyncStarted)
    needFullSync = false
    startFullSyncDeferred = false
    let id = newID()
    for other in running.keys { running[other]?.overlaps = id }
    // The first full sync settles the deletes pending at start (replayed from the journal): the
    // delete limit judges them with the whole tree, as one, not batch by batch beside it.
    let deletes = firstFullSync ? startDeletes + takeStartDeletes() : []
    startDeletes = []
    running[id] = Running(sends: [], queued: deletes, generation: generation, isFullSync: true)
    sender.start(Transfer(id: id, work: .fullSync))
  }

  /// The pending deletes, taken out of the queue.
  private func takeStartDeletes() -> [SyncPath] {
    source.take { $0.path.map { kind($0) == .missing } ?? false }
  }

  /// Whether the full sync at start is to wait now (see ``startFullSyncNotAfter``): until nothing is
  /// pending, running or to be rechecked and the catch-up scan's first pass is over, or the time is
  /// up. The replayed deletes are set aside for it first, so they count as neither pending nor live;
  /// when it begins to wait, the state becomes `initialSync`.
  mutating func deferStartFullSync(now: UInt64, _ effects: inout [Effect]) -> Bool {
    guard firstFullSync, !degraded, let notAfter = startFullSyncNotAfter, now < notAfter else {
      startFullSyncNotAfter = nil
      return false
    }
    if !startFullSyncDeferred { startDeletes = takeStartDeletes() }
    let busy = catchingUp || liveRunning > 0 || !rechecks.isEmpty || source.pendingPaths(upTo: 0) == nil
    guard busy else {
      startFullSyncNotAfter = nil
      return false
    }
    if !startFullSyncDeferred {
      startFullSyncDeferred = true
      effects += [.initialSyncStarted, .startFullSyncDeferred]
    }
    return true
  }

  /// Rechecks what a live transfer sent beside a full sync, once that full sync has ended; when a
  /// full sync ends, what overlapped it. A transfer that failed (`sentAgain`) has its paths pending
  /// again (or made changes, for a recheck): they go whole, and need no recheck.
  mutating func resendIfOverlapped(_ ended: Running, sentAgain: Bool) {
    if let full = ended.overlaps, !sentAgain {
      let paths = ended.queued + ended.rechecks
      if running[full] != nil {
        resendAfterFullSync.formUnion(paths)
      } else {
        addRechecks(paths.sorted())
      }
    }
    if ended.isFullSync && !resendAfterFullSync.isEmpty {
      addRechecks(resendAfterFullSync.sorted())
      resendAfterFullSync = []
    }
  }

  mutating func addRechecks(_ paths: [SyncPath]) {
    for p in paths where recheckSet.insert(p).inserted { rechecks.append(p) }
  }

  /// Starts rechecks on the free workers, while fewer than `limit` rechecks run, at most
  /// `maxBatchPaths` paths each, beside nothing that holds their paths. One that runs beside a full
  /// sync is rechecked again after it.
  mutating func startRechecks(atMostRunning limit: Int) {
    var rechecksRunning = running.values.count { !$0.rechecks.isEmpty }
    while liveRunning < settings.workers && rechecksRunning < limit && !rechecks.isEmpty {
      rechecksRunning += 1
      let batch = Array(rechecks.prefix(settings.maxBatchPaths))
      let sends = ChangeQueue.collapse(batch, kind: kind)
      let (shards, _) = ChangeQueue.shard(
        Array(sends.keys), workers: 1, cap: settings.maxBatchPaths, busy: claims)
      guard let shard = shards.first else { return }
      let taken = shard.flatMap { sends[$0] ?? [] }
      let takenSet = Set(taken)
      rechecks.removeAll { takenSet.contains($0) }
      recheckSet.subtract(takenSet)
      let id = newID()
      for p in shard { claims.claim(p, by: id) }
      running[id] = Running(
        sends: shard, queued: [], generation: generation, isFullSync: false, overlaps: fullSyncID,
        rechecks: taken)
      sender.start(Transfer(id: id, work: .recheck(shard)))
    }
  }
}
