import FleetCore
import FleetInventory
import Foundation

/// What the backup holds of a path at a time: whether the mirror has it, which versions to lay over
/// it, and whether it is a directory.
struct BackupContent: Sendable, Equatable {
  /// Whether the mirror's copy is the base of the reconstruction.
  var fromMirror: Bool
  /// The version STAMPs after `--at` holding the path, newest first.
  var overlays: [String]
  /// Whether the path is (was, at that time) a directory.
  var isDirectory: Bool

  /// Decides the reconstruction from what the mirror (`mirrorKind`, nil when absent) and the
  /// versions (STAMPs holding the path, with its kind there) hold; nil when there is nothing.
  ///
  /// The oldest version after `at` is applied last, so its kind wins; the mirror is the base only
  /// when its kind is that kind.
  static func decide(mirrorKind: String?, held: [(stamp: String, kind: String)], at: RestoreTime?) -> Self? {
    let after = at.map { time in held.filter { $0.stamp > time.stamp } } ?? []
    let newestFirst = after.sorted { $0.stamp > $1.stamp }
    guard let kind = newestFirst.last?.kind ?? mirrorKind else { return nil }
    let isDirectory = kind == "directory"
    let matching = newestFirst.filter { ($0.kind == "directory") == isDirectory }.map(\.stamp)
    return BackupContent(
      fromMirror: mirrorKind.map { ($0 == "directory") == isDirectory } ?? false, overlays: matching,
      isDirectory: isDirectory)
  }
}

extension Provisioner {
  /// Reads what the backup holds of the place (one listing of the mirror, one of the versions).
  static func backupContent(
    _ place: ProtectedPlace, at: RestoreTime?, reader: BackupReader, on host: any RemoteHost
  )
    async throws -> BackupContent
  {
    let mirrorKind = try await mirrorKind(place, reader: reader, on: host)
    var held: [(stamp: String, kind: String)] = []
    if at != nil {
      let entries = try await versionEntries(place, recursive: false, reader: reader, on: host)
      held = BackupReader.stampsHolding(entries, sub: place.sub)
    }
    guard let content = BackupContent.decide(mirrorKind: mirrorKind, held: held, at: at) else {
      let path = place.sub.isEmpty ? place.directory.path : "\(place.directory.path)/\(place.sub)"
      let when = at.map { "at \($0)" } ?? "in the mirror (the latest state: it was deleted?)"
      throw FleetError(
        .restoreNothing,
        "the backup \(place.destination.backup)/\(place.destination.module) has nothing of \(path) \(when); "
          + "list what it has with `fleetsync versions -i INVENTORY \(place.source.name):\(path)` and pass --at "
          + "a time before the change")
    }
    return content
  }

  /// The versions of the place (and, with `recursive`, of what is beneath it); none when the module
  /// has no versions directory yet (no transfer has replaced anything) or no versions module.
  static func versionEntries(
    _ place: ProtectedPlace, recursive: Bool, reader: BackupReader, on host: any RemoteHost
  )
    async throws -> [BackupEntry]
  {
    let listing = try await host.run(try reader.versionsListCommand(sub: place.sub, recursive: recursive))
    // The mirror was read first through the same daemon and `hosts allow`, so an unknown versions
    // module is one the daemon does not have (`keep_versions: 0`), not a refusal.
    let none = ["chroot failed", "chdir failed", "Unknown module '\(place.destination.module).versions'"]
    if listing.status == 5 && none.contains(where: listing.stderr.contains) { return [] }
    guard listing.status == 0 else { throw readFailure(place, "listing its versions", listing) }
    return BackupReader.versionEntries(listing.stdout, sub: place.sub)
  }

  /// The kind of the place in the mirror, or nil when the mirror does not have it.
  static func mirrorKind(_ place: ProtectedPlace, reader: BackupReader, on host: any RemoteHost) async throws
    -> String?
  {
    let probe = try await host.run(try reader.mirrorProbeCommand(sub: place.sub))
    if probe.status != 0 {
      if probe.stderr.contains("No such file or directory") { return nil }
      throw readFailure(place, "reading its mirror", probe)
    }
    return BackupReader.parse(probe.stdout).first?.kind
  }

  /// A failed read of the backup, with rsync's words and what to check.
  static func readFailure(_ place: ProtectedPlace, _ what: String, _ out: CommandOutput) -> FleetError {
    let said = out.stderr.split(separator: "\n").suffix(3).joined(separator: " | ")
    return FleetError(
      .restoreFailed,
      "\(what) on \(place.destination.backup)/\(place.destination.module) failed (rsync exit \(out.status)): \(said); "
        + "check the daemon with `fleetsync status -i INVENTORY --limit \(place.destination.backup)` "
        + "(the versions module \(place.destination.module).versions comes with `fleetsync up`)")
  }

  /// The inode of each protected directory of the target host that the restore touches ("-" when absent).
  static func directoryInodes(_ inventory: Inventory, _ target: HostPath, on host: any RemoteHost)
    async throws
    -> [String: String]
  {
    var out: [String: String] = [:]
    for dir in touchedDirectories(inventory, target) {
      let line = try await host.run("stat -c %i -- \(try ShellQuote.quote(dir.path)) 2>/dev/null || echo -")
      out[dir.path] = line.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }
    return out
  }

  static func touchedDirectories(_ inventory: Inventory, _ target: HostPath) -> [ProtectedDirectory] {
    (inventory.source(named: target.host)?.directories ?? []).filter {
      target.relative(to: $0.path) != nil
        || HostPath(unchecked: target.host, $0.path).relative(to: target.path) != nil
    }
  }

  /// What the operator must know after a restore: a recreated protected directory is held by its
  /// source guard; a resumed watcher's full sync makes the mirror equal to the restored tree.
  static func notes(
    _ result: RestoreResult, _ inventory: Inventory, _ target: HostPath, before: [String: String],
    on host: any RemoteHost
  ) async throws -> [String] {
    guard !result.dryRun else { return [] }
    var notes: [String] = []
    let after = try await directoryInodes(inventory, target, on: host)
    for dir in touchedDirectories(inventory, target) where before[dir.path] != after[dir.path] {
      notes.append(
        "\(dir.path) was made anew, so its watchers hold (source replaced) until you accept it: "
          + "fleetsync resume -i INVENTORY --accept-source --directory \(dir.name) --limit \(target.host)")
    }
    if !result.paused.isEmpty {
      notes.append(
        "watchers resumed; their full sync makes the mirror equal to the restored tree, and what it replaces or "
          + "deletes in the mirror is kept as a version")
    }
    return notes
  }
}
