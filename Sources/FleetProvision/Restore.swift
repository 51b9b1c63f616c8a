import FleetCore
import FleetInventory
import FleetWire
import Foundation

/// What `fleetsync restore` is asked to do.
public struct RestoreRequest: Sendable, Equatable {
  /// What to restore: a protected directory, a path beneath one, or one file, on its source host.
  public var place: HostPath
  /// The time to restore to; nil: the latest state (the mirror).
  public var at: RestoreTime?
  /// Where to put it; nil: where it came from.
  public var to: HostPath?
  /// The backup module to read (`BACKUP/MODULE`) when the directory has several; nil: its first.
  public var from: String?
  /// List what would change; change nothing.
  public var dryRun = false
  /// Delete at the destination what the restored tree does not have.
  public var delete = false

  /// Makes a request to restore `place` in place from the mirror.
  public init(place: HostPath) { self.place = place }
}

/// What a restore did (or, with `--dry-run`, would do).
public struct RestoreResult: Sendable, Equatable, Codable {
  /// `HOST:PATH` restored.
  public var source: String
  /// `HOST:PATH` written.
  public var destination: String
  /// `BACKUP/MODULE` read.
  public var backup: String
  /// `--at` (ISO 8601, UTC), or nil for the latest state.
  public var at: String?
  /// The version STAMPs laid over the mirror, newest first.
  public var versions: [String]
  /// Whether nothing was changed.
  public var dryRun: Bool
  /// What changed (or would change), as `rsync -i` itemizes it (`>f+++++++++ path`, `*deleting path`).
  public var changes: [String]
  /// Watcher instances paused for the restore and resumed after it.
  public var paused: [String]
  /// What the operator should know (a watcher that holds, what the next full sync does).
  public var notes: [String]
}

extension FleetError.Code {
  /// The backup has nothing at that path and time, or the restored tree is empty and `--delete` was asked.
  public static let restoreNothing = FleetError.Code("restore.nothing", meaning: .invalidInput)
  /// A step of a restore or a versions listing failed on a host (reading the backup, writing the destination).
  public static let restoreFailed = FleetError.Code("restore.failed", meaning: .failed)
}

extension Provisioner {
  /// Restores a path from its backup (see ``RestoreRequest``); rsync runs on the destination host.
  ///
  /// - Throws: ``FleetError``: ``FleetError/Code/invalidInput`` for a path under no protected
  ///   directory or an unknown host, ``FleetError/Code/restoreNothing`` when the backup has nothing
  ///   there at that time, ``FleetError/Code/restoreFailed`` when a step failed (the destination
  ///   then holds no partial file; watchers paused are resumed), and the SSH layer's codes.
  public func restore(_ request: RestoreRequest, progress: @escaping @Sendable (String) -> Void = { _ in })
    async throws -> RestoreResult
  {
    let place = try inventory.protectedPlace(request.place, from: request.from)
    let target = request.to ?? request.place
    let targetRef = try restoreTarget(target, delete: request.delete)
    let sourceRef = inventory.hosts.first { $0.name == place.source.name }!
    progress("connecting to \(sourceRef.name)")
    let sourceHost = try await connector.connect(sourceRef)
    let sameHost = targetRef.name == sourceRef.name
    var other: (any RemoteHost)?
    var lent: String?
    do {
      let moduleURL = try await Self.watcherTarget(place, on: sourceHost)
      if !sameHost {
        let connected = try await connector.connect(targetRef)
        other = connected
        lent = try await Self.lendPassword(place, from: sourceHost, to: connected)
      }
      let reader = BackupReader(
        moduleURL: moduleURL, passwordFile: lent ?? Layout.watchPassword(place.instance))
      let result = try await restore(
        request, place: place, target: target, reader: reader, on: other ?? sourceHost, progress: progress)
      await Self.finish(sourceHost, other, lent: lent)
      return result
    } catch {
      await Self.finish(sourceHost, other, lent: lent)
      throw Self.explainRefusal(error, place: place, host: target.host)
    }
  }

  /// The host to restore to, when `target` is a place a restore may write: a host of the inventory,
  /// outside every backup module there (a restore into one would overwrite the backup itself), and not
  /// `/` with `--delete`.
  func restoreTarget(_ target: HostPath, delete: Bool) throws -> HostRef {
    guard let ref = inventory.hosts.first(where: { $0.name == target.host }) else {
      throw FleetError(.invalidInput, "--to \(target): '\(target.host)' is not a host of this inventory")
    }
    let modules = inventory.backup(named: target.host)?.daemons.flatMap(\.modules) ?? []
    if let module = modules.first(where: {
      target.relative(to: $0.path) != nil
        || HostPath(unchecked: target.host, $0.path).relative(to: target.path) != nil
    }) {
      throw FleetError(
        .invalidInput,
        "--to \(target): \(target.path) holds or is inside backup module \(module.name) (\(module.path)); a "
          + "restore there would overwrite the backup itself: restore to a path outside every module")
    }
    if delete && target.path == "/" {
      throw FleetError(.invalidInput, "refusing --delete into / (restore into a directory)")
    }
    return ref
  }

  /// A daemon answers a host outside its `hosts allow`, and a config without the read-only views,
  /// as if the module did not exist: say why, and what to do.
  static func explainRefusal(_ error: any Error, place: ProtectedPlace, host: String) -> any Error {
    guard let error = error as? FleetError, error.code == .restoreFailed else { return error }
    let module = place.destination.module
    if error.message.contains("Unknown module") {
      return FleetError(
        .restoreFailed,
        "\(error.message); the daemon on \(place.destination.backup) has no read-only view of \(module) "
          + "(\(module)\(VersionsLayout.mirrorModuleSuffix), \(module)\(VersionsLayout.versionsModuleSuffix)): "
          + "its config predates them; run `fleetsync up` to add them")
    }
    guard error.message.contains("access denied") else { return error }
    return FleetError(
      .restoreFailed,
      "\(error.message); the daemon on \(place.destination.backup) admits the inventory's addresses, and "
        + "\(host) reached it from another one (NAT, a second interface): restore to \(place.source.name) "
        + "and copy from there, or give \(host) the address the daemon sees")
  }

  /// Removes a lent password file and closes the connections (`other`: the target host, when not the source).
  private static func finish(_ source: any RemoteHost, _ other: (any RemoteHost)?, lent: String?) async {
    if let other {
      if let lent, let quoted = try? ShellQuote.quote(lent) { _ = try? await other.run("rm -f -- \(quoted)") }
      await other.close()
    }
    await source.close()
  }

  private func restore(
    _ request: RestoreRequest, place: ProtectedPlace, target: HostPath, reader: BackupReader,
    on host: any RemoteHost,
    progress: @escaping @Sendable (String) -> Void
  ) async throws -> RestoreResult {
    progress("reading what \(place.destination.backup)/\(place.destination.module) holds")
    let content = try await Self.backupContent(place, at: request.at, reader: reader, on: host)
    let watched =
      request.dryRun
      ? []
      : Self.touchedDirectories(inventory, target).flatMap { dir in
        dir.destinations.map { Layout.watchInstance(directory: dir.name, to: $0) }
      }
    var script = RestoreScript(
      reader: reader, sub: place.sub, isDirectory: content.isDirectory, fromMirror: content.fromMirror,
      overlays: content.overlays, at: request.at, destination: target.path,
      stageNear: stageNear(target, dryRun: request.dryRun), delete: request.delete, dryRun: request.dryRun)
    try await RestoreMountGuard.check(inventory, target, on: host)
    let identities = try await Self.directoryInodes(inventory, target, on: host)
    var paused: [String] = []
    for instance in watched {
      progress("pausing watch@\(instance)")
      let out = try await host.run(try WatcherPause.pause(instance))
      if out.stdout.contains("paused") { paused.append(instance) }
      guard out.status == 0 else {
        try await Self.resume(paused, on: host)
        throw FleetError(.restoreFailed, "could not pause watch@\(instance) on \(target.host): \(out.stderr)")
      }
    }
    progress(request.dryRun ? "listing what would change" : "restoring into \(target)")
    let out: CommandOutput
    do {
      script.stampsFile = try await Self.uploadStamps(content.overlays, to: host)
      out = try await host.run(try script.text())
    } catch {
      do { try await Self.resume(paused, on: host) } catch let resumeError as FleetError {
        throw FleetError(.restoreFailed, "the restore stopped (\(error)), and \(resumeError.message)")
      }
      throw error
    }
    try await Self.resume(paused, on: host)
    try Self.check(out, place: place, target: target, request: request)
    var result = RestoreResult(
      source: "\(request.place)", destination: "\(target)",
      backup: "\(place.destination.backup)/\(place.destination.module)", at: request.at?.description,
      versions: content.overlays, dryRun: request.dryRun,
      changes: out.stdout.split(separator: "\n").map(String.init), paused: paused, notes: [])
    result.notes = try await Self.notes(result, inventory, target, before: identities, on: host)
    return result
  }

  /// Where the stage goes: inside the outermost protected directory holding the target, on its
  /// filesystem (its watchers are paused, and the move leaves the stage alone); for a dry run, whose
  /// watchers run, beside that directory; beside the target when no protected directory holds it.
  func stageNear(_ target: HostPath, dryRun: Bool) -> String {
    let roots = inventory.source(named: target.host)?.directories.map(\.path).filter {
      target.relative(to: $0) != nil
    }
    if let outer = roots?.min(by: { $0.count < $1.count }), !dryRun { return outer }
    let beside = roots?.min { $0.count < $1.count } ?? target.path
    let parent = beside.lastIndex(of: "/").map { String(beside[..<$0]) } ?? ""
    return parent.isEmpty ? "/" : parent
  }

  /// Turns the restore script's exit into a result or an error that says what to do.
  static func check(_ out: CommandOutput, place: ProtectedPlace, target: HostPath, request: RestoreRequest)
    throws
  {
    let said = out.stderr.split(separator: "\n").suffix(4).joined(separator: " | ")
    switch out.status {
    case 0: return
    case RestoreScript.emptyStatus:
      throw FleetError(
        .restoreNothing,
        "\(request.place): \(said); see what the backup holds with `fleetsync versions -i INVENTORY \(request.place)`"
      )
    default:
      let hint =
        "; nothing was changed at the destination if a read failed (the stage is removed); check the backup host "
        + "with `fleetsync status` and run the restore again"
      throw FleetError(
        .restoreFailed, "restoring \(request.place) to \(target) failed (exit \(out.status)): \(said)\(hint)")
    }
  }

  /// Starts the paused instances again.
  static func resume(_ instances: [String], on host: any RemoteHost) async throws {
    var failed: [String] = []
    for instance in instances {
      let out = try await host.run(try WatcherPause.resume(instance))
      if out.status != 0 { failed.append("watch@\(instance): \(out.stderr)") }
    }
    guard failed.isEmpty else {
      throw FleetError(
        .restoreFailed,
        "could not start again the watchers paused for the restore: \(failed.joined(separator: "; ")); "
          + "start them with `fleetsync up` (it starts what is not running)")
    }
  }

  /// The watcher's `target` (`rsync://USER@HOST:PORT/MODULE`) from its config on the source host.
  static func watcherTarget(_ place: ProtectedPlace, on host: any RemoteHost) async throws -> String {
    let path = Layout.watchConf(place.instance)
    guard let bytes = try await host.read(path) else {
      throw FleetError(
        .restoreFailed,
        "\(place.source.name) has no \(path): watch@\(place.instance) is not set up (run `fleetsync up`)")
    }
    for line in WatcherConfigFile.read(String(decoding: bytes, as: UTF8.self)).lines {
      if case .setting(.target, let value) = line.content { return value }
    }
    throw FleetError(.restoreFailed, "\(place.source.name):\(path) names no target (run `fleetsync up`)")
  }

  /// Writes the STAMPs a restore lays over the mirror to a temporary file on `host`, one per line in
  /// their order; returns its path (nil when there are none). The restore script removes it, and
  /// reads it instead of carrying thousands of STAMPs in its own text.
  static func uploadStamps(_ stamps: [String], to host: any RemoteHost) async throws -> String? {
    guard !stamps.isEmpty else { return nil }
    let path = "\(Layout.run)/restore-\(UUID().uuidString.lowercased()).stamps"
    try await host.check("mkdir -p \(Layout.run) && chmod 755 \(Layout.run)", "making \(Layout.run)")
    try await host.write(Array(stamps.map { $0 + "\n" }.joined().utf8), to: path, mode: 0o600)
    return path
  }

  /// Copies the watcher's password file to a temporary 0600 file on `host`; returns its path.
  static func lendPassword(_ place: ProtectedPlace, from source: any RemoteHost, to host: any RemoteHost)
    async throws
    -> String
  {
    guard let secret = try await source.read(Layout.watchPassword(place.instance)).map(Secret.init(bytes:))
    else {
      throw FleetError(
        .restoreFailed,
        "\(place.source.name) has no password file for watch@\(place.instance) (run `fleetsync up`)")
    }
    let path = "\(Layout.run)/restore-\(UUID().uuidString.lowercased()).password"
    try await host.check("mkdir -p \(Layout.run) && chmod 755 \(Layout.run)", "making \(Layout.run)")
    try await host.write(secret.withBytes { $0 }, to: path, mode: 0o600)
    return path
  }
}
