import FleetCore
import FleetInventory

/// The writes of `fleetsync rotate-secrets`: each module's daemon line, then its watchers' password
/// files at once; then each node's record (manifest) of what it holds.
extension Provisioner {
  /// What switching one backup host's modules did.
  struct BackupSwitch: Sendable {
    /// The backup host.
    var backup: String
    /// Module results, files written, steps failed.
    var ledger = RotationLedger()
    /// Its daemons' secrets files as they are now, by daemon instance (a file whose write failed is
    /// not here: what it holds is not known).
    var daemonFiles: [String: [UInt8]] = [:]
    /// The watchers that hold their module's new secret now.
    var watchers: [WatcherSwitch] = []
  }

  /// What the switch works from: the open hosts, the secret files as read before it, and the store
  /// with the pending secrets.
  struct SwitchInputs: Sendable {
    var opened: [String: Result<Session, FleetError>]
    /// The daemons' secrets files, by `BACKUP/DAEMON`.
    var daemons: [String: [UInt8]]
    /// The watchers' password files, by instance (absent: could not be read).
    var passwords: [String: [UInt8]]
    var store: SecretStore
  }

  /// A watcher that holds its module's new secret now, and what its password file held before.
  struct WatcherSwitch: Sendable {
    var watcher: RotationModule.Watcher
    /// Its module's `BACKUP/MODULE`.
    var key: String
    var previous: [UInt8]?
  }

  /// Switches `modules` (all on one backup host) one by one: the daemon's line first, then at once
  /// every watcher of the module, so the time a watcher is refused is one write long.
  func switchModules(_ modules: [RotationModule], _ inputs: SwitchInputs) async -> BackupSwitch {
    guard let backup = modules.first?.backup else { return BackupSwitch(backup: "") }
    var out = BackupSwitch(backup: backup)
    guard case .success(let session) = inputs.opened[backup] else { return out }
    for module in modules {
      let path = Layout.rsyncdSecrets(module.daemon)
      guard let fresh = inputs.store.pending(module.key),
        let current = out.daemonFiles[module.daemon] ?? inputs.daemons["\(backup)/\(module.daemon)"],
        let updated = SecretFiles.replacingDaemonSecret(module: module.module, with: fresh, in: current)
      else {
        out.ledger.finish(module, .failed, "internal: \(path) or the new secret went missing")
        continue
      }
      if updated != current {
        do {
          try await session.host.write(updated, to: path, mode: 0o600)
          out.ledger.changed(backup, "\(module.daemonService): \(module.module)")
        } catch {
          out.ledger.failed(
            backup, "\(module.daemonService): writing \(path): \(RotationLedger.describe(error))")
          out.ledger.finish(
            module, .failed,
            "writing \(path) on \(backup) failed (\(RotationLedger.describe(error))); run `fleetsync rotate-secrets` again (its "
              + "watchers may be refused until then, and keep their changes in their journals)")
          continue
        }
      }
      out.daemonFiles[module.daemon] = updated
      await switchWatchers(module, fresh, inputs, into: &out)
    }
    return out
  }

  /// Gives every watcher of `module` the new secret at once, and records how the module ended.
  func switchWatchers(
    _ module: RotationModule, _ fresh: Secret, _ inputs: SwitchInputs, into out: inout BackupSwitch
  ) async {
    typealias Switched = (previous: [UInt8]?, wrote: Bool)
    let results = await withTaskGroup(of: (Int, Result<Switched, FleetError>).self) { group in
      for (index, watcher) in module.watchers.enumerated() {
        group.addTask { (index, await self.switchWatcher(watcher, fresh, inputs)) }
      }
      var all: [(Int, Result<Switched, FleetError>)] = []
      for await result in group { all.append(result) }
      return all.sorted { $0.0 < $1.0 }
    }
    var failures: [String] = []
    for (index, result) in results {
      let watcher = module.watchers[index]
      switch result {
      case .success(let switched):
        out.watchers.append(WatcherSwitch(watcher: watcher, key: module.key, previous: switched.previous))
        if switched.wrote { out.ledger.changed(watcher.host, watcher.service) }
      case .failure(let error):
        out.ledger.failed(watcher.host, "\(watcher.service): \(RotationLedger.describe(error))")
        failures.append(
          "\(watcher.service) on \(watcher.host) could not be given it (\(RotationLedger.describe(error)))")
      }
    }
    guard failures.isEmpty else {
      out.ledger.finish(
        module, .failed,
        "\(module.daemonService) on \(module.backup) has the new secret, but "
          + failures.joined(separator: "; ") + ": its transfers are refused, and kept in its journal, "
          + "until `fleetsync rotate-secrets` (or `fleetsync up`) runs again")
      return
    }
    let ends =
      ["\(module.daemonService) on \(module.backup)"] + module.watchers.map { "\($0.service) on \($0.host)" }
    out.ledger.finish(module, .rotated, ends.joined(separator: ", "))
  }

  /// Writes `fresh` to `watcher`'s password file unless it held it already (as read before the
  /// switch); returns what it held.
  func switchWatcher(_ watcher: RotationModule.Watcher, _ fresh: Secret, _ inputs: SwitchInputs) async
    -> Result<(previous: [UInt8]?, wrote: Bool), FleetError>
  {
    guard case .success(let session) = inputs.opened[watcher.host] else {
      return .failure(FleetError(.internal, "\(watcher.host) is not connected"))
    }
    let path = Layout.watchPassword(watcher.instance)
    let wanted = SecretFiles.password(fresh)
    let previous = inputs.passwords[watcher.instance]
    if previous == wanted { return .success((previous, false)) }
    do {
      try await session.host.write(wanted, to: path, mode: 0o600)
      return .success((previous, true))
    } catch {
      return .failure(FleetError.wrap(error, code: .remoteStep, "writing \(path)"))
    }
  }

  /// Brings each node's record (manifest) up to the secrets it holds now; a failure there is the
  /// host's, not the modules' (the secrets are in place), and only makes the next `up` restart the
  /// watchers it concerns once.
  func recordRotation(
    _ switched: [BackupSwitch], _ opened: [String: Result<Session, FleetError>], _ store: SecretStore
  ) async -> RotationLedger {
    var daemonFiles: [String: [String: [UInt8]]] = [:]
    var watchers: [String: [WatcherSwitch]] = [:]
    for part in switched {
      daemonFiles[part.backup, default: [:]].merge(part.daemonFiles) { _, new in new }
      for watcher in part.watchers { watchers[watcher.watcher.host, default: []].append(watcher) }
    }
    let hosts = inventory.hosts.filter { daemonFiles[$0.name] != nil || watchers[$0.name] != nil }
    let (files, switchedWatchers) = (daemonFiles, watchers)
    let failures = await forEachHost(hosts) { ref -> String? in
      guard case .success(let session) = opened[ref.name] else { return nil }
      do {
        try await self.record(files[ref.name] ?? [:], switchedWatchers[ref.name] ?? [], on: session, store)
        return nil
      } catch {
        return
          "the new secrets are in place, but \(Layout.manifest) could not be updated (\(RotationLedger.describe(error))); "
          + "the next `fleetsync up` restarts this host's watchers once"
      }
    }
    var ledger = RotationLedger()
    for (ref, failure) in zip(hosts, failures) {
      if let failure { ledger.failed(ref.name, failure) }
    }
    return ledger
  }

  /// Records on one node the sha256 of the secret files as they are now and, for each watcher, the
  /// configuration hash `up` would compute with the new password. A running watcher needs no
  /// restart for it (rsync reads the password file at every run), so its recorded hash moves along
  /// with the file, but only from the hash of the password it had: a hash that differs for other
  /// reasons is kept, and `up` still restarts that watcher.
  func record(
    _ daemonFiles: [String: [UInt8]], _ watchers: [WatcherSwitch], on session: Session, _ store: SecretStore
  ) async throws {
    guard var manifest = session.facts.manifest else { return }
    let recordedBefore = manifest
    for (daemon, bytes) in daemonFiles where manifest.files[Layout.rsyncdSecrets(daemon)] != nil {
      manifest.files[Layout.rsyncdSecrets(daemon)]?.sha256 = Digest.sha256Hex(bytes)
    }
    for switched in watchers {
      guard let fresh = store.pending(switched.key).map(SecretFiles.password) else { continue }
      let path = Layout.watchPassword(switched.watcher.instance)
      if manifest.files[path] != nil { manifest.files[path]?.sha256 = Digest.sha256Hex(fresh) }
      let service = switched.watcher.service
      guard let recorded = manifest.services[service]?.configHash,
        let binary = manifest.files[Layout.watchBinary]?.sha256,
        let config = try await session.host.read(Layout.watchConf(switched.watcher.instance))
      else { continue }
      let systemd = manifest.supervisor == "systemd"
      func hash(_ password: [UInt8]) -> String {
        Renderer.watcherHash(config: config, password: password, binarySHA256: binary, systemd: systemd)
      }
      let earlier = [switched.previous, store.current(switched.key).map(SecretFiles.password)].compactMap {
        $0
      }
      if earlier.contains(where: { hash($0) == recorded }) {
        manifest.services[service]?.configHash = hash(fresh)
      }
    }
    if manifest != recordedBefore { try await Applier(host: session.host).writeManifest(manifest) }
  }
}
