import FleetCore
import FleetInventory

/// What `fleetsync versions` found: the mirror's copy and every version of a path.
public struct VersionsListing: Sendable, Equatable, Codable {
  /// `HOST:PATH` asked about.
  public var place: String
  /// `BACKUP/MODULE` read.
  public var backup: String
  /// The protected directory holding it.
  public var directory: String
  /// The path and what is beneath it in the mirror (the latest state); `stamp` is nil.
  public var mirror: [BackupEntry]
  /// The path and what is beneath it in each version, by STAMP then path. A version STAMP holds what a
  /// transfer starting at that time replaced or deleted, so `restore --at` a time before STAMP gets it back.
  public var versions: [BackupEntry]
}

extension Provisioner {
  /// Lists the mirror's copy and the versions of a path (rsync `--list-only` on its source host).
  ///
  /// - Throws: ``FleetError``: ``FleetError/Code/invalidInput`` for a path under no protected
  ///   directory, ``FleetError/Code/restoreFailed`` when the backup cannot be read, and the SSH layer's codes.
  public func versions(of place: HostPath, from: String? = nil) async throws -> VersionsListing {
    let resolved = try inventory.protectedPlace(place, from: from)
    let ref = inventory.hosts.first { $0.name == resolved.source.name }!
    let host = try await connector.connect(ref)
    do {
      let listing = try await versions(resolved, place, on: host)
      await host.close()
      return listing
    } catch {
      await host.close()
      throw error
    }
  }

  private func versions(_ resolved: ProtectedPlace, _ place: HostPath, on host: any RemoteHost) async throws
    -> VersionsListing
  {
    let reader = BackupReader(
      moduleURL: try await Self.watcherTarget(resolved, on: host),
      passwordFile: Layout.watchPassword(resolved.instance))
    let sub = resolved.sub
    let mirror = try await host.run(
      try reader.rsync(
        ["--list-only", "--no-h", "-r", "--contimeout=30", "--timeout=600"]
          + ["--", reader.url(reader.mirrorURL, sub)]))
    guard mirror.status == 0 || mirror.stderr.contains("No such file or directory") else {
      throw Self.readFailure(resolved, "listing its mirror", mirror)
    }
    let versions = try await Self.versionEntries(resolved, recursive: true, reader: reader, on: host)
    return VersionsListing(
      place: "\(place)", backup: "\(resolved.destination.backup)/\(resolved.destination.module)",
      directory: resolved.directory.path,
      mirror: mirror.status == 0 ? Self.mirrorEntries(mirror.stdout, sub: sub) : [],
      versions: versions)
  }

  /// Mirror entries with paths relative to the protected directory. Listing `MODULE/a/b` names
  /// `b`, `b/x`; listing the module's root names `.`, `x`.
  static func mirrorEntries(_ listing: String, sub: String) -> [BackupEntry] {
    let parent = sub.contains("/") ? String(sub[..<sub.lastIndex(of: "/")!]) + "/" : ""
    return BackupReader.parse(listing).compactMap { entry in
      if sub.isEmpty && entry.name == "." { return nil }
      return BackupEntry(
        stamp: nil, path: sub.isEmpty ? entry.name : parent + entry.name, kind: entry.kind, size: entry.size,
        modified: entry.modified)
    }
  }
}
