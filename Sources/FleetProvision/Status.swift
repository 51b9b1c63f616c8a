import FleetCore
import FleetInventory
import FleetWatch
import Foundation

/// The state of one service instance, as `fleetsync status` shows it.
public struct ServiceStatus: Sendable, Equatable {
  /// The instance.
  public var service: ServiceName
  /// Its port (rsync, or health).
  public var port: Int
  /// Whether its process runs.
  public var running: Bool
  /// Whether it answers healthy (rsyncd: the greeting; watcher: `/healthz` 200).
  public var healthy: Bool
  /// Replication lag in seconds (watchers), from `/status`.
  public var lagSeconds: Double?
  /// Pending paths (watchers).
  public var queueDepth: Int?
  /// The watcher's state or the reason it is unhealthy.
  public var detail: String
  /// Paths the watcher cannot send to the backup (rsync exit 23), from `/status`.
  public var failingPathCount = 0
  /// The first of them, with rsync's error.
  public var failingPaths: [WatchStatus.FailingPath] = []
  /// Whether the watcher's rsync sender runs confined to the source (Landlock); nil when unknown.
  public var senderConfined: Bool?
  /// Whether it answered its health check at all (healthy, or a watcher's `/status` saying why not).
  public var answers = false
  /// A restart made because it did not answer, while it has not answered since
  /// (``Layout/unansweredMark(_:)``); nil otherwise.
  public var unansweredRestart: UnansweredRestart?

  /// The detail of an instance whose process runs but does not answer its health check.
  public static let notAnswering = "not answering"
}

/// A restart of an instance that did not answer its health check: when, and by whom.
public struct UnansweredRestart: Sendable, Equatable {
  /// When it was restarted.
  public var at: Date
  /// `heal` (also under `supervise`) or `fleetsync-supervise` (the watcher's supervisor without systemd).
  public var by: String

  /// Reads a mark's `EPOCH BY` line; nil when it is not one.
  init?(mark line: some StringProtocol) {
    let parts = line.split(separator: " ", maxSplits: 1)
    guard let first = parts.first, let epoch = Double(first) else { return nil }
    at = Date(timeIntervalSince1970: epoch)
    by = parts.count > 1 ? String(parts[1]) : "fleetsync"
  }

  /// `heal at 2026-11-28T00:05:01Z`, for people.
  public var description: String { "\(by) at \(at.formatted(.iso8601))" }
}

/// The state of one host.
public struct HostStatus: Sendable {
  /// Host name.
  public var host: String
  /// Source, backup, or both.
  public var roles: Set<HostRef.Role>
  /// Why the host could not be read, if it could not (its meaning tells unreachable from failed).
  public var error: FleetError?
  /// Instances fleetsync runs there (from the manifest).
  public var services: [ServiceStatus]
  /// Its modules' mirror and versions sizes (backup hosts), as last measured there.
  public var moduleSizes: [ModuleSize] = []
}

extension Provisioner {
  /// Reads every selected host's instances and their health; changes nothing.
  public func status() async -> [HostStatus] {
    await forEachHost(selected) { ref -> HostStatus in
      let host: any RemoteHost
      do {
        host = try await self.connector.connect(ref)
      } catch {
        return HostStatus(
          host: ref.name, roles: ref.roles,
          error: FleetError.wrap(error, code: .remoteStep, "failed"),
          services: [])
      }
      let result = await self.status(of: ref, on: host)
      await host.close()
      return result
    }
  }

  func status(of ref: HostRef, on host: any RemoteHost) async -> HostStatus {
    do {
      let facts = try await HostFacts.gather(from: host)
      guard let manifest = facts.manifest else {
        return HostStatus(host: ref.name, roles: ref.roles, error: nil, services: [])
      }
      let services = manifest.services.keys.sorted().compactMap { key -> (name: ServiceName, port: Int)? in
        guard let name = Planner.parseService(key), let entry = manifest.services[key] else { return nil }
        return (name, entry.port)
      }
      let out =
        services.isEmpty
        ? CommandOutput(status: 0, stdout: "", stderr: "")
        : try await host.run(HealthProbe.statusScript(services))
      let blocks = SectionedOutput(out.stdout)
      let rows = services.map { name, port -> ServiceStatus in
        ServiceStatus(
          name, port: port, running: facts.running.contains(name.description),
          probe: blocks[name.description] ?? [], host: ref.name)
      }
      var status = HostStatus(host: ref.name, roles: ref.roles, error: nil, services: rows)
      if ref.roles.contains(.backup) { status.moduleSizes = await ModuleSize.read(on: host) }
      return status
    } catch {
      return HostStatus(
        host: ref.name, roles: ref.roles,
        error: FleetError.wrap(error, code: .remoteStep, "failed"),
        services: [])
    }
  }
}

extension ServiceStatus {
  /// An instance as the status probe (``HealthProbe/statusScript(_:)``) found it on `host`: its
  /// section's `lines` say whether it answered healthy, hold a watcher's `/status` JSON, and the
  /// mark of a restart for not answering.
  init(_ name: ServiceName, port: Int, running: Bool, probe lines: [Substring], host: String) {
    self.init(
      service: name, port: port, running: running, healthy: lines.contains("healthy"), lagSeconds: nil,
      queueDepth: nil, detail: "")
    let json = lines.first { $0.hasPrefix("{") }
    answers = running && (healthy || json != nil)
    if let mark = lines.first(where: { $0.hasPrefix(HealthProbe.unansweredPrefix) }) {
      unansweredRestart = UnansweredRestart(mark: mark.dropFirst(HealthProbe.unansweredPrefix.count))
    }
    if let json {
      read(watcherStatus: json, host: host)
    } else if !running {
      detail = "not running"
    } else if !healthy {
      detail = Self.notAnswering
      if let restart = unansweredRestart {
        detail += ", also since a restart for that (\(restart.description))"
      }
    }
  }
}
