import FleetCore
import FleetInventory
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
}

/// The state of one host.
public struct HostStatus: Sendable {
  /// Host name.
  public var host: String
  /// Role.
  public var role: HostRef.Role
  /// Reachability problem, if any.
  public var error: String?
  /// Instances fleetsync runs there (from the manifest).
  public var services: [ServiceStatus]
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
          host: ref.name, role: ref.role,
          error: FleetError.wrap(error, code: .remoteStep, "failed").description,
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
        return HostStatus(host: ref.name, role: ref.role, error: nil, services: [])
      }
      var script = ""
      let services = manifest.services.keys.sorted().compactMap { key -> (ServiceName, Int)? in
        guard let name = Planner.parseService(key), let entry = manifest.services[key] else { return nil }
        return (name, entry.port)
      }
      for (name, port) in services {
        script += "echo \"@@\(name)\"\n"
        if name.kind == .rsyncd {
          script +=
            "timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/\(port) && head -c 12 <&3' 2>/dev/null | grep -q @RSYNCD && echo healthy\n"
        } else {
          script += """
            timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/\(port) && printf "GET /healthz HTTP/1.0\\r\\n\\r\\n" >&3 && head -n 1 <&3' 2>/dev/null | grep -q ' 200' && echo healthy
            timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/\(port) && printf "GET /status HTTP/1.0\\r\\n\\r\\n" >&3 && cat <&3' 2>/dev/null | sed '1,/^\\r*$/d' | tr -d '\\n'; echo

            """
        }
      }
      let out =
        script.isEmpty ? CommandOutput(status: 0, stdout: "", stderr: "") : try await host.run(script)
      var blocks: [String: [Substring]] = [:]
      var current = ""
      for line in out.stdout.split(separator: "\n", omittingEmptySubsequences: false) {
        if line.hasPrefix("@@") {
          current = String(line.dropFirst(2))
        } else {
          blocks[current, default: []].append(line)
        }
      }
      let rows = services.map { name, port -> ServiceStatus in
        let lines = blocks[name.description] ?? []
        var row = ServiceStatus(
          service: name, port: port, running: facts.running.contains(name.description),
          healthy: lines.contains("healthy"), lagSeconds: nil, queueDepth: nil, detail: "")
        if let json = lines.first(where: { $0.hasPrefix("{") }) {
          row.read(watcherStatus: json)
        } else if !row.running {
          row.detail = "not running"
        } else if !row.healthy {
          row.detail = "not answering"
        }
        return row
      }
      return HostStatus(host: ref.name, role: ref.role, error: nil, services: rows)
    } catch {
      return HostStatus(
        host: ref.name, role: ref.role,
        error: FleetError.wrap(error, code: .remoteStep, "failed").description,
        services: [])
    }
  }
}
