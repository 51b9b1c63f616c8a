import FleetCore
import FleetInventory
import Foundation

/// What `fleetsync verify` checks and whether it repairs.
public struct VerifyRequest: Sendable, Equatable {
  /// Per source host, only these protected directories (inventory names or paths); a host not
  /// listed here has all of its directories checked.
  public var directories: [String: [String]] = [:]
  /// Send what differs or is missing (`--repair`).
  public var repair = false
  /// With ``repair``: also delete what is only on the backup (`--delete`).
  public var delete = false
  /// Compare only this percentage of each directory's files, picked at random (`--sample`).
  public var samplePercent: Double?

  /// Makes a request that checks everything and repairs nothing.
  public init() {}
}

/// One protected directory → one backup module's result of `fleetsync verify`.
public struct DirectoryVerify: Sendable, Equatable, Codable {
  /// What came of it.
  public enum Outcome: String, Sendable, Codable {
    /// The backup matches the source.
    case clean
    /// The backup differs from the source.
    case drift
    /// It differed and the repair sent the differences.
    case repaired
    /// It differed and the repair was refused (the source looks empty, unmounted or replaced).
    case refused
    /// It could not be compared.
    case failed
  }
  /// The watcher instance (`DIRECTORY:BACKUP:MODULE`).
  public var instance: String
  /// The protected directory on the source host.
  public var source: String
  /// The module's URL.
  public var target: String
  /// The percentage compared, when a sample.
  public var sample: Double?
  /// What came of it.
  public var outcome: Outcome
  /// What happened and what to do, for people.
  public var detail: String
  /// What the comparison found.
  public var found: VerifyTally?
  /// What the repair sent (and deleted, with `--delete`).
  public var repaired: VerifyTally?
}

/// One source host's result of `fleetsync verify`.
public struct HostVerify: Sendable {
  /// Host name.
  public var host: String
  /// `ok` when every directory is clean, `changed` when repaired, `failed` on drift or a failure.
  public var outcome: HostOutcome
  /// Its directories, in inventory order.
  public var directories: [DirectoryVerify]
}

extension Provisioner {
  /// Compares every selected protected directory with each of its backups, from its source host.
  ///
  /// - Throws: ``FleetError`` ``FleetError/Code/invalidInput`` when the request names a directory
  ///   no selected source has, or asks to repair from a sample; nothing is run then.
  public func verify(_ request: VerifyRequest) async throws -> [HostVerify] {
    if request.repair && request.samplePercent != nil {
      throw FleetError(.invalidInput, "--repair compares every file: leave out --sample")
    }
    let targets = try verifyTargets(request)
    return await forEachConnectedHost(
      targets.map(\.ref),
      unreachable: { ref, failure in
        HostVerify(host: ref.name, outcome: HostOutcome(failure), directories: [])
      }
    ) { ref, host -> HostVerify in
      let instances = targets.first { $0.ref == ref }?.instances ?? []
      var results: [DirectoryVerify] = []
      for instance in instances {
        results.append(await VerifyRun(host: host, hostName: ref.name, request: request).verify(instance))
      }
      return HostVerify(host: ref.name, outcome: Self.verifyOutcome(results), directories: results)
    }
  }

  /// `ok` when all are clean, `changed` when some were repaired and none is left otherwise, else failed.
  static func verifyOutcome(_ results: [DirectoryVerify]) -> HostOutcome {
    let bad = results.filter { $0.outcome != .clean && $0.outcome != .repaired }
    if !bad.isEmpty {
      return .failed(
        bad.map { "\($0.source) → \($0.target): \($0.outcome.rawValue)" }.joined(separator: "; "))
    }
    return results.contains { $0.outcome == .repaired } ? .changed : .ok
  }

  /// The selected source hosts and their watcher instances the request is for.
  func verifyTargets(_ request: VerifyRequest) throws -> [(ref: HostRef, instances: [String])] {
    let sources = selected.compactMap { ref in
      inventory.sources.first { $0.name == ref.name }.map { (ref, $0) }
    }
    for (host, wanted) in request.directories {
      guard let source = sources.first(where: { $0.0.name == host })?.1 else {
        throw FleetError(.invalidInput, "--limit \(host):…: \(host) is no selected source host")
      }
      let known = source.directories.flatMap { [$0.name, Self.trimmed($0.path)] }
      for name in wanted where !known.contains(Self.trimmed(name)) {
        let hint = Suggestion.didYouMean(name, among: known).map { "; \($0)" } ?? ""
        throw FleetError(
          .invalidInput,
          "\(host) protects no directory '\(name)'\(hint) (it protects: "
            + "\(source.directories.map(\.path).joined(separator: ", ")))")
      }
    }
    return sources.compactMap { ref, source in
      let wanted = request.directories[ref.name].map { Set($0.map(Self.trimmed)) }
      let instances = source.directories.filter { directory in
        wanted.map { $0.contains(directory.name) || $0.contains(Self.trimmed(directory.path)) } ?? true
      }
      .flatMap { directory in
        directory.destinations.map { Layout.watchInstance(directory: directory.name, to: $0) }
      }
      return instances.isEmpty ? nil : (ref, instances)
    }
  }

  /// A path without its trailing slashes (`/` stays `/`), so `--limit HOST:/srv/a/` names `/srv/a`.
  static func trimmed(_ path: String) -> String {
    var path = path
    while path.count > 1 && path.hasSuffix("/") { path.removeLast() }
    return path
  }
}
