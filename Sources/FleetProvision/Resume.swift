import FleetCore
import FleetInventory
import Foundation

/// What `fleetsync resume` asks of the watchers it selects.
public struct ResumeRequest: Sendable, Equatable {
  /// Apply the deletes each watcher's delete limit holds (once: what is held now).
  public var releaseDeletes = false
  /// Accept each watcher's source as it is now as the real source.
  public var acceptSource = false
  /// Clear each watcher's mass-change alarm, so pruning of its versions may resume.
  public var clearMassChange = false
  /// Only the watchers of these directories (inventory names); empty: every directory.
  public var directories: [String] = []
  /// How long each watcher is waited for, in seconds.
  public var waitSeconds = 120

  /// Makes an empty request.
  public init() {}

  /// The agent's flags for this request.
  var agentFlags: [String] {
    (releaseDeletes ? ["--deletes"] : []) + (acceptSource ? ["--accept-source"] : [])
      + (clearMassChange ? ["--mass-change"] : [])
      + ["--wait", String(waitSeconds)]
  }
}

/// How one watcher instance took a `fleetsync resume` request.
public struct InstanceResume: Sendable, Equatable, Codable {
  /// `taken`, `not taken` (the watcher did not act within the wait: is it running?) or `failed`.
  public var outcome: String
  /// The watcher instance (`watch@DIRECTORY:BACKUP:MODULE`).
  public var instance: String
  /// What the agent said.
  public var detail: String
}

/// One source host's result of `fleetsync resume`.
public struct HostResume: Sendable {
  /// Host name.
  public var host: String
  /// `ok` when every instance took the request; otherwise why not.
  public var outcome: HostOutcome
  /// Its instances, in inventory order.
  public var instances: [InstanceResume]
}

extension Provisioner {
  /// Runs `fleetsync-watch resume` for the selected watcher instances on each selected source host.
  ///
  /// - Throws: ``FleetError`` ``FleetError/Code/invalidInput`` when the request asks for nothing or
  ///   names a directory no selected source has; nothing is run then.
  public func resume(_ request: ResumeRequest) async throws -> [HostResume] {
    let targets = try resumeTargets(request)
    return await forEachConnectedHost(
      targets.map(\.ref),
      unreachable: { ref, failure in HostResume(host: ref.name, outcome: HostOutcome(failure), instances: [])
      }
    ) { ref, host -> HostResume in
      let instances = targets.first { $0.ref == ref }?.instances ?? []
      var results: [InstanceResume] = []
      for instance in instances {
        results.append(await Self.resume(instance, request, on: host))
      }
      let notDone = results.filter { $0.outcome != "taken" }.map { "\($0.instance): \($0.outcome)" }
      return HostResume(
        host: ref.name, outcome: notDone.isEmpty ? .ok : .failed(notDone.joined(separator: "; ")),
        instances: results)
    }
  }

  /// The selected source hosts and the watcher instances the request is for on each.
  func resumeTargets(_ request: ResumeRequest) throws -> [(ref: HostRef, instances: [String])] {
    guard request.releaseDeletes || request.acceptSource || request.clearMassChange else {
      throw FleetError(
        .invalidInput,
        "say what to resume: --deletes (apply the deletes the delete limit holds), --accept-source and/or "
          + "--mass-change (clear the mass-change alarm)")
    }
    let sources = selected.compactMap { ref in
      inventory.sources.first { $0.name == ref.name }.map { (ref, $0) }
    }
    let known = Set(sources.flatMap { $0.1.directories.map(\.name) })
    for name in request.directories where !known.contains(name) {
      let hint = Suggestion.didYouMean(name, among: known.sorted()).map { "; \($0)" } ?? ""
      throw FleetError(
        .invalidInput,
        "no selected source has a directory '\(name)'\(hint) (directories: \(known.sorted().joined(separator: ", ")))"
      )
    }
    return sources.compactMap { ref, source in
      let instances = source.directories.filter {
        request.directories.isEmpty || request.directories.contains($0.name)
      }
      .flatMap { directory in
        directory.destinations.map { Layout.watchInstance(directory: directory.name, to: $0) }
      }
      return instances.isEmpty ? nil : (ref, instances)
    }
  }

  /// Runs the agent's `resume` for one instance.
  static func resume(_ instance: String, _ request: ResumeRequest, on host: any RemoteHost) async
    -> InstanceResume
  {
    let name = ServiceName(.watch, instance).description
    do {
      let command = try ShellQuote.command(
        [Layout.watchBinary, "resume", "--config", Layout.watchConf(instance)] + request.agentFlags)
      let out = try await host.run(command + " 2>&1")
      let said = out.stdout.split(whereSeparator: \.isNewline).joined(separator: " | ")
      switch out.status {
      case 0: return InstanceResume(outcome: "taken", instance: name, detail: said)
      case 75: return InstanceResume(outcome: "not taken", instance: name, detail: said)
      case 64 where said.contains("does not exist"):
        return InstanceResume(
          outcome: "failed", instance: name,
          detail: "not set up on this host (`fleetsync up` sets it up): \(said)")
      default:
        return InstanceResume(
          outcome: "failed", instance: name, detail: "fleetsync-watch resume exited \(out.status): \(said)")
      }
    } catch {
      return InstanceResume(outcome: "failed", instance: name, detail: "\(error)")
    }
  }
}
