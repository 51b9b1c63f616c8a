extension TransferDispatcher {
  typealias Entry = PathQuarantine.Entry

  /// Settles the paths of a transfer that ended: done, pending again, or quarantined. Returns the
  /// outcome to record: a full sync that ended with exit 23 without naming every failing path
  /// failed as a whole (it cannot be split).
  mutating func settlePaths(
    _ id: Int, _ ended: Running, _ outcome: TransferOutcome, _ effects: inout [Effect]
  )
    -> TransferOutcome
  {
    let retried = ended.retry == nil ? nil : quarantine.finish(transfer: id)
    switch outcome {
    case .ok:
      source.done(ended.queued)
      if let retried, retried.isFailing {
        for send in retried.sends { effects.append(.released(path: send, failures: retried.failures)) }
      }
      if ended.isFullSync { releaseAll(&effects) }
    case .incomplete(let errors, let message) where ended.isFullSync:
      guard isolateFullSync(ended, errors, &effects) else {
        source.requeue(ended.queued)
        return .failed(
          kind: .partial,
          message: "the full sync could not send some files, and rsync did not say which: \(message)")
      }
    case .incomplete(let errors, let message):
      isolate(ended, errors, message: message, prior: retried, &effects)
    case .partial:
      // Vanished (exit 24): pending again, a quarantined path too; the next look at the source decides.
      source.requeue(ended.queued)
    case .failed:
      // The target failed, not the path: a quarantined path waits for its own next step again.
      if var retried {
        retried.retryAt = later(by: delay(failures: max(1, retried.failures)))
        quarantine.add(retried)
      } else {
        source.requeue(ended.queued)
      }
    }
    return outcome
  }

  /// Starts the retries that are due, while workers are free, unless a running transfer holds one
  /// of their paths.
  mutating func startDueRetries(_ now: UInt64) {
    for index in quarantine.due(at: now) where liveRunning < settings.workers {
      let entry = quarantine.entries[index]
      let sends = entry.sends
      guard sends.allSatisfy({ claims.owners(overlapping: $0).isEmpty }) else { continue }
      let id = newID()
      quarantine.markRunning(index, transfer: id)
      for p in sends { claims.claim(p, by: id) }
      running[id] = Running(
        sends: sends, queued: entry.settles.values.flatMap { $0 }, generation: generation, isFullSync: false,
        overlaps: fullSyncID, settles: entry.settles, retry: entry)
      sender.start(Transfer(id: id, work: .paths(sends)))
    }
  }

  /// Quarantines what a batch (or a retry) could not send; what arrived is done. Suspects (rsync
  /// did not say which failed) are split in two halves, each retried alone at once.
  private mutating func isolate(
    _ ended: Running, _ errors: [RsyncPathError], message: String, prior: Entry?, _ effects: inout [Effect]
  ) {
    let split = PathQuarantine.isolate(sends: ended.sends, errors: errors)
    source.done(split.arrived.flatMap { ended.settles[$0] ?? [] })
    let now = clock.now
    let since = prior?.since ?? now
    for (send, error) in split.failed.sorted(by: { $0.key < $1.key }) {
      let failures = (prior?.settles.keys.elementsEqual([send]) == true ? prior!.failures : 0) + 1
      quarantinePath(
        send, settles: ended.settles[send] ?? [], failures: failures, error: error, since: since, &effects)
    }
    let suspects = split.suspects
    guard !suspects.isEmpty else { return }
    let halves =
      suspects.count == 1
      ? [suspects[...]] : [suspects.prefix(suspects.count / 2), suspects.dropFirst(suspects.count / 2)]
    for half in halves {
      let settles = Dictionary(uniqueKeysWithValues: half.map { ($0, ended.settles[$0] ?? []) })
      quarantine.add(Entry(settles: settles, failures: 0, error: message, since: since, retryAt: now))
    }
  }

  /// Quarantines the paths a full sync named as failing, with the queued paths they cover; the other
  /// queued paths are done. False when some error names no path.
  private mutating func isolateFullSync(
    _ ended: Running, _ errors: [RsyncPathError], _ effects: inout [Effect]
  )
    -> Bool
  {
    guard let failing = PathQuarantine.fullSyncFailures(errors, kind: kind) else { return false }
    let sends = failing.keys.sorted()
    var settles: [SyncPath: [SyncPath]] = [:]
    var arrived: [SyncPath] = []
    for queued in ended.queued {
      if let send = sends.first(where: { PathQuarantine.overlaps($0, queued) }) {
        settles[send, default: []].append(queued)
      } else {
        arrived.append(queued)
      }
    }
    source.done(arrived)
    for send in sends {
      if quarantine.attach(settles[send] ?? [], to: send) { continue }
      quarantinePath(
        send, settles: settles[send] ?? [], failures: 1, error: failing[send] ?? "", since: clock.now,
        &effects)
    }
    return true
  }

  private mutating func quarantinePath(
    _ send: SyncPath, settles: [SyncPath], failures: Int, error: String, since: UInt64,
    _ effects: inout [Effect]
  ) {
    let delay = delay(failures: failures)
    quarantine.add(
      Entry(
        settles: [send: settles], failures: failures, error: error, since: since, retryAt: later(by: delay)))
    effects.append(.quarantined(path: send, failures: failures, retryIn: delay, error: error))
  }

  /// A full sync sent everything: every quarantined path arrived. A retry still running settles its
  /// own entry (and, as it overlapped the full sync, is sent again after it).
  private mutating func releaseAll(_ effects: inout [Effect]) {
    for entry in quarantine.removeAllWaiting() {
      source.done(entry.settles.values.flatMap { $0 })
      if entry.isFailing {
        for send in entry.sends { effects.append(.released(path: send, failures: entry.failures)) }
      }
    }
  }

  /// The retry delay after a path's `failures`-th failure alone.
  private func delay(failures: Int) -> Duration {
    Self.backoff(failures: failures, initial: settings.retryInitial, max: settings.retryMax, jitter: jitter())
  }

  private func later(by delay: Duration) -> UInt64 {
    let (at, overflow) = clock.now.addingReportingOverflow(delay.saturatingNanos)
    return overflow ? .max : at
  }
}

extension TransferDispatcher.Wake {
  /// Whether this wake comes after `time` (waiting for an event comes last).
  func isLater(than time: UInt64) -> Bool {
    if case .at(let at) = self { return at > time }
    return true
  }
}
