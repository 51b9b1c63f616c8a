import FleetCore
import FleetInventory

/// `fleetsync rotate-secrets`: a new secret for each selected module, at both of its ends.
///
/// rsync checks one line per user in a daemon's secrets file (``SecretFiles``), so a daemon cannot
/// accept the old and the new secret at once. Each module is therefore switched on its own, its two
/// ends one right after the other: the daemon's line, then its watchers' password files. A transfer
/// a watcher starts in between is refused ("auth failed"), stays in the watcher's journal and is
/// retried (after 1 s, then backing off); nothing is lost. Neither end needs a restart: the daemon
/// reads its secrets file and rsync its `--password-file` at every connection.
extension Provisioner {
  /// Gives every module the `--limit` selects (``RotationScope``) a new secret at both ends.
  ///
  /// The new secrets are saved in the controller's store as pending before any host sees them; a
  /// module's pending secret becomes its secret only once every end holds it, so a rotation cut off
  /// is finished, with the same secrets, by running it again. A module whose secret comes from a
  /// `secret_file` is skipped and reported. Hosts are written to atomically (temp file and rename,
  /// 0600) over SFTP, under this run's node lease; one host failing does not stop the others.
  /// Holds the controller's lock on the inventory throughout.
  ///
  /// - Throws: ``FleetError/Code/controllerLocked`` when another run holds the lock;
  ///   ``FleetError/Code/localState`` when the store cannot be read or written;
  ///   ``FleetError/Code/sameMachine`` when two names reach one machine.
  public func rotateSecrets() async throws -> RotationReport {
    let lock = try await ControllerLock.acquire(path: lockFile, command: commandLine, wait: options.lockWait)
    defer { lock.release() }
    var store = try SecretStore(path: inventory.secretsFile)
    let scope = RotationScope.modules(of: inventory, selected: selected)
    var ledger = RotationLedger()
    var candidates: [RotationModule] = []
    for module in scope {
      if let file = module.secretFile {
        ledger.finish(
          module, .skipped,
          "its secret comes from secret_file \(file): put a new secret in that file, then run `fleetsync up`")
      } else if store.current(module.key) == nil {
        ledger.finish(module, .skipped, "has no secret yet: `fleetsync up` gives it one")
      } else {
        candidates.append(module)
      }
    }
    let names = Set(candidates.flatMap(\.hosts))
    let hosts = inventory.hosts.filter { names.contains($0.name) }
    let sessions = await openAll(hosts, leasing: names)
    let opened = usable(sessions, hosts)
    do {
      try checkDistinctMachines(sessions.compactMapValues { try? $0.get().facts })
      try checkLeases(sessions)
      try await rotate(candidates, opened, store: &store, ledger: &ledger)
    } catch {
      await closeAll(sessions)
      throw error
    }
    await closeAll(sessions)
    let unreached = opened.compactMapValues { if case .failure(let error) = $0 { error } else { nil } }
    return ledger.report(scope: scope, hosts: hosts.map(\.name), unreached: unreached)
  }

  /// The sessions a rotation may write through: a host whose record names another host of the
  /// inventory (one machine, two names) is not one of them.
  func usable(_ sessions: [String: Result<Session, FleetError>], _ hosts: [HostRef])
    -> [String: Result<Session, FleetError>]
  {
    var out = sessions
    for ref in hosts {
      guard case .success(let session) = sessions[ref.name] else { continue }
      do {
        try checkRecordedName(ref, facts: session.facts)
      } catch {
        out[ref.name] = .failure(FleetError.wrap(error, code: .remoteStep, ref.name))
      }
    }
    return out
  }

  /// The steps of a rotation once the hosts are open: read, save the pending secrets, switch each
  /// module's ends, update the nodes' records, then keep only the new secrets of what finished.
  func rotate(
    _ candidates: [RotationModule], _ opened: [String: Result<Session, FleetError>],
    store: inout SecretStore, ledger: inout RotationLedger
  ) async throws {
    let daemons = await readDaemonFiles(candidates, opened, ledger: &ledger)
    let ready = admit(candidates, opened, daemons: daemons, ledger: &ledger)
    guard !ready.isEmpty else { return }
    for module in ready { _ = store.beginRotation(module.key) }
    try store.save()
    let inputs = SwitchInputs(
      opened: opened, daemons: daemons, passwords: await readPasswords(ready, opened), store: store)
    let backups = Set(ready.map(\.backup))
    let switched = await forEachHost(inventory.hosts.filter { backups.contains($0.name) }) { ref in
      await self.switchModules(ready.filter { $0.backup == ref.name }, inputs)
    }
    for part in switched { ledger.merge(part.ledger) }
    let recorded = await recordRotation(switched, opened, store)
    ledger.merge(recorded)
    for module in ready where ledger.results[module.key]?.outcome == .rotated {
      store.finishRotation(module.key)
    }
    do {
      try store.save()
    } catch {
      throw FleetError(
        .localState,
        "the modules rotated hold their new secrets on every end, but \(store.path) could not be "
          + "written; run `fleetsync rotate-secrets` again to record them (until then it keeps them as "
          + "pending, and `up` gives both ends what the daemons hold)",
        cause: FleetError.wrap(error, code: .io, "saving the secrets file"))
    }
  }

  /// The secrets files of the daemons serving `modules`, by `BACKUP/DAEMON` (absent: no such file);
  /// a read that fails is recorded on its host.
  func readDaemonFiles(
    _ modules: [RotationModule], _ opened: [String: Result<Session, FleetError>],
    ledger: inout RotationLedger
  ) async -> [String: [UInt8]] {
    let wanted = Set(modules.map { "\($0.backup)/\($0.daemon)" })
    let backups = inventory.hosts.filter { ref in modules.contains { $0.backup == ref.name } }
    let reads = await forEachHost(backups) { ref -> [(String, Result<[UInt8]?, FleetError>)] in
      guard case .success(let session) = opened[ref.name] else { return [] }
      var out: [(String, Result<[UInt8]?, FleetError>)] = []
      for key in wanted.sorted() where key.hasPrefix(ref.name + "/") {
        let daemon = String(key.dropFirst(ref.name.count + 1))
        do {
          out.append((key, .success(try await session.host.read(Layout.rsyncdSecrets(daemon)))))
        } catch {
          out.append((key, .failure(FleetError.wrap(error, code: .remoteStep, "reading"))))
        }
      }
      return out
    }
    var files: [String: [UInt8]] = [:]
    for (key, result) in reads.joined() {
      switch result {
      case .success(let bytes): files[key] = bytes
      case .failure(let error):
        let host = String(key.prefix { $0 != "/" })
        ledger.failed(
          host,
          "reading \(Layout.rsyncdSecrets(String(key.dropFirst(host.count + 1)))): \(RotationLedger.describe(error))"
        )
      }
    }
    return files
  }

  /// The password files of the watchers of `modules`, by instance, read before any switch so that
  /// switching a watcher is one write (a file that cannot be read is left out, and written anyway).
  func readPasswords(_ modules: [RotationModule], _ opened: [String: Result<Session, FleetError>]) async
    -> [String: [UInt8]]
  {
    let watchers = modules.flatMap(\.watchers)
    let hosts = inventory.hosts.filter { ref in watchers.contains { $0.host == ref.name } }
    let reads = await forEachHost(hosts) { ref -> [(String, [UInt8])] in
      guard case .success(let session) = opened[ref.name] else { return [] }
      var out: [(String, [UInt8])] = []
      for watcher in watchers where watcher.host == ref.name {
        let held = try? await session.host.read(Layout.watchPassword(watcher.instance))
        if let held { out.append((watcher.instance, held)) }
      }
      return out
    }
    return Dictionary(reads.joined(), uniquingKeysWith: { first, _ in first })
  }

  /// The modules whose every end can be worked on and is set up; the others are recorded as failed
  /// (an end unreachable, or unreadable) or skipped (not set up yet: `up` gives them their secret).
  func admit(
    _ candidates: [RotationModule], _ opened: [String: Result<Session, FleetError>],
    daemons: [String: [UInt8]], ledger: inout RotationLedger
  ) -> [RotationModule] {
    var ready: [RotationModule] = []
    for module in candidates {
      if let host = module.hosts.first(where: { ledger.errors[$0] != nil || !Self.isOpen(opened[$0]) }) {
        let why = ledger.errors[host]?.joined(separator: "; ") ?? Self.reason(opened[host])
        ledger.finish(module, .failed, "not rotated: \(host): \(why)")
        continue
      }
      guard let file = daemons["\(module.backup)/\(module.daemon)"],
        SecretFiles.daemonSecret(module: module.module, in: file) != nil
      else {
        ledger.finish(
          module, .skipped,
          "not set up on \(module.backup) (\(Layout.rsyncdSecrets(module.daemon)) has no line for it): "
            + "run `fleetsync up` first")
        continue
      }
      let missing = module.watchers.first { watcher in
        guard case .success(let session) = opened[watcher.host] else { return true }
        return session.facts.hashes[Layout.watchPassword(watcher.instance)] == nil
      }
      if let missing {
        ledger.finish(
          module, .skipped, "\(missing.service) is not set up on \(missing.host): run `fleetsync up` first")
        continue
      }
      ready.append(module)
    }
    return ready
  }

  static func isOpen(_ session: Result<Session, FleetError>?) -> Bool {
    if case .success = session { true } else { false }
  }

  static func reason(_ session: Result<Session, FleetError>?) -> String {
    guard case .failure(let error) = session else { return "not connected" }
    let outcome = HostOutcome(error)
    return "\(outcome.word): \(outcome.detail)"
  }
}
