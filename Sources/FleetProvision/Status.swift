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

  /// The detail of an instance whose process runs but does not answer its health check.
  public static let notAnswering = "not answering"
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
        let lines = blocks[name.description] ?? []
        var row = ServiceStatus(
          service: name, port: port, running: facts.running.contains(name.description),
          healthy: lines.contains("healthy"), lagSeconds: nil, queueDepth: nil, detail: "")
        if let json = lines.first(where: { $0.hasPrefix("{") }) {
          row.read(watcherStatus: json, host: ref.name)
        } else if !row.running {
          row.detail = "not running"
        } else if !row.healthy {
          row.detail = ServiceStatus.notAnswering
        }
        return row
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
