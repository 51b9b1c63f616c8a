import FleetCore
import FleetInventory

/// `plan` and `up` while a secret rotation has not finished (the store keeps a pending secret,
/// ``SecretStore/pending(_:)``): they never hand out a secret the other end refuses.
///
/// A module's daemon is switched before its watchers (``Provisioner/rotateSecrets()``), so what
/// the daemon holds, old or new, is the secret that works: `up` gives it to both ends, which also
/// finishes the watchers of a rotation cut off between the two. When the daemon cannot be read in
/// this run (its host unreachable), each watcher keeps the secret its password file holds. The
/// store keeps the module pending until `rotate-secrets` finishes it.
extension Provisioner {
  /// The modules whose rotation has not finished, and what `up` gives their ends.
  struct PendingRotations: Sendable {
    /// Modules whose daemon holds the new secret: both ends are given it.
    var resolved: [String: Secret] = [:]
    /// Modules whose daemon could not be read: each watcher keeps the new secret if it has it.
    var unresolved: [String: Secret] = [:]
    /// Every module with a rotation not finished, `BACKUP/MODULE`.
    var keys: [String] = []
  }

  /// Reads, from the sessions of this run, which secret the daemon of each pending module holds.
  func pendingRotations(_ store: SecretStore, sessions: [String: Result<Session, FleetError>]) async
    -> PendingRotations
  {
    var out = PendingRotations()
    for backup in inventory.backups {
      for daemon in backup.daemons {
        for module in daemon.modules where module.secretFile == nil {
          let key = "\(backup.name)/\(module.name)"
          guard let next = store.pending(key) else { continue }
          out.keys.append(key)
          guard case .success(let session) = sessions[backup.name] else {
            out.unresolved[key] = next
            continue
          }
          do {
            let file = try await session.host.read(Layout.rsyncdSecrets(daemon.name))
            if let file, SecretFiles.daemonSecret(module: module.name, in: file) == next {
              out.resolved[key] = next
            }
          } catch {
            out.unresolved[key] = next
          }
        }
      }
    }
    return out
  }

  /// The render context of one host: the run's, with the new secret of each unresolved module whose
  /// watcher on this host holds it already.
  func renderContext(_ ref: HostRef, session: Session, _ run: RunDecisions) async -> RenderContext {
    var context = run.context
    guard !run.rotations.unresolved.isEmpty, let source = inventory.source(named: ref.name) else {
      return context
    }
    for directory in source.directories {
      for destination in directory.destinations {
        let key = "\(destination.backup)/\(destination.module)"
        guard let next = run.rotations.unresolved[key] else { continue }
        let instance = Layout.watchInstance(directory: directory.name, to: destination)
        let held = try? await session.host.read(Layout.watchPassword(instance))
        if let held, SecretFiles.password(in: held) == next { context.secrets[key] = next }
      }
    }
    return context
  }

  /// What the recap says on a host that holds the secret of a module whose rotation has not finished.
  func rotationNotes(_ ref: HostRef, _ rotations: PendingRotations) -> [String] {
    let sent = Set(
      inventory.source(named: ref.name)?.directories.flatMap(\.destinations).map {
        "\($0.backup)/\($0.module)"
      }
        ?? [])
    return rotations.keys.filter { $0.hasPrefix(ref.name + "/") || sent.contains($0) }.map {
      "the secret rotation of \($0) has not finished: run `fleetsync rotate-secrets` to finish it "
        + "(meanwhile `up` gives both ends the secret its daemon holds)"
    }
  }
}
