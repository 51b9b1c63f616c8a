import FleetCore
import FleetInventory

/// A `HOST:PATH` argument of `restore`, `versions` and `--to`: an inventory host and an absolute path on it.
public struct HostPath: Sendable, Equatable, CustomStringConvertible {
  /// Inventory host name.
  public var host: String
  /// Absolute, normalized path (no trailing `/`, no `.`/`..`/empty component; `/` for the root).
  public var path: String

  /// Parses `HOST:PATH`.
  ///
  /// - Throws: ``FleetError/Code/invalidInput`` naming what is wrong (no host, a relative path, `..`).
  public init(parsing text: String) throws {
    guard let colon = text.firstIndex(of: ":"), colon != text.startIndex else {
      throw FleetError(.invalidInput, "'\(text)' is not HOST:PATH (e.g. nfs1:/srv/data/projects/report.txt)")
    }
    host = String(text[..<colon])
    let raw = String(text[text.index(after: colon)...])
    guard raw.hasPrefix("/") else {
      throw FleetError(.invalidInput, "'\(text)': the path must be absolute (HOST:/PATH)")
    }
    let parts = raw.split(separator: "/").filter { $0 != "." }
    if parts.contains("..") {
      throw FleetError(.invalidInput, "'\(text)': the path must not contain '..'")
    }
    path = "/" + parts.joined(separator: "/")
  }

  public var description: String { "\(host):\(path)" }

  /// The path relative to `root` ("" for `root` itself), or nil when the path is not `root` or beneath it.
  func relative(to root: String) -> String? {
    if root == "/" { return String(path.dropFirst()) }
    if path == root { return "" }
    return path.hasPrefix(root + "/") ? String(path.dropFirst(root.count + 1)) : nil
  }
}

/// Where a path of a source host is backed up: its protected directory, the path beneath it, the
/// backup module that `restore` and `versions` read, and the watcher instance that sends it there.
public struct ProtectedPlace: Sendable, Equatable {
  /// The source host.
  public var source: SourceHost
  /// The protected directory holding the path.
  public var directory: ProtectedDirectory
  /// The path relative to the directory ("" for the directory itself).
  public var sub: String
  /// The backup module read.
  public var destination: Destination
  /// The watcher instance sending the directory to ``destination``.
  public var instance: String { Layout.watchInstance(directory: directory.name, to: destination) }
}

extension Inventory {
  /// Resolves `place` to the protected directory that holds it and the backup module to read.
  ///
  /// - Parameter from: the backup module to read (`BACKUP/MODULE`) when the directory has several;
  ///   nil takes its first destination.
  /// - Throws: ``FleetError/Code/invalidInput`` when the host is not a source, the path is under no
  ///   protected directory, or `from` is not one of its destinations.
  public func protectedPlace(_ place: HostPath, from: String? = nil) throws -> ProtectedPlace {
    guard let source = source(named: place.host) else {
      let hint = Suggestion.didYouMean(place.host, among: sources.map(\.name)).map { "; \($0)" } ?? ""
      throw FleetError(
        .invalidInput,
        "'\(place.host)' is not a source host of this inventory\(hint) (sources: \(sources.map(\.name).joined(separator: ", ")))"
      )
    }
    // The inventory refuses overlapping directories, so at most one holds the path.
    let matches = source.directories.compactMap { dir in place.relative(to: dir.path).map { (dir, $0) } }
    guard let (directory, sub) = matches.first else {
      let list = source.directories.map { "\($0.name): \($0.path)" }.joined(separator: ", ")
      throw FleetError(
        .invalidInput,
        "\(place) is not under a protected directory of \(source.name), so it has no backup (protected: \(list))"
      )
    }
    let destination: Destination
    if let from {
      guard let chosen = directory.destinations.first(where: { "\($0.backup)/\($0.module)" == from }) else {
        let list = directory.destinations.map { "\($0.backup)/\($0.module)" }.joined(separator: ", ")
        throw FleetError(.invalidInput, "--from \(from): \(directory.path) is backed up to \(list)")
      }
      destination = chosen
    } else {
      destination = directory.destinations[0]
    }
    return ProtectedPlace(source: source, directory: directory, sub: sub, destination: destination)
  }
}

extension HostPath {
  init(unchecked host: String, _ path: String) {
    self.host = host
    self.path = path
  }
}
