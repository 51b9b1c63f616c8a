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
  /// Where the watcher's change events come from (`fanotify`, `inotify`); nil when unknown.
  public var eventBackend: String?
  /// Restarts since the host booted (by systemd, the pid-file supervisor or `heal`); nil when unknown.
  public var restarts: Int?
  /// Seconds since its process started; nil when it does not run or the host did not say.
  public var uptimeSeconds: Int?
  /// When the watcher last sent something successfully.
  public var lastSuccess: Date?
  /// The watcher's last error, for people (it may be over: see ``lastSuccess``).
  public var lastError: String?
  /// When ``lastError`` happened, when the watcher says.
  public var lastErrorAt: Date?
  /// Whether it answered its health check at all (healthy, or a watcher's `/status` saying why not).
  public var answers = false
  /// A restart made because it did not answer, while it has not answered since
  /// (``Layout/unansweredMark(_:)``); nil otherwise.
  public var unansweredRestart: UnansweredRestart?
  /// Seconds since a watcher's event loop last beat, by the host's clock, when that is over the
  /// engine's stall threshold: it answers `/status`, but its loop is stuck; nil otherwise.
  public var stalledSeconds: Int?

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
    let book = portBookForStatus()
    return await forEachHost(selected) { ref -> HostStatus in
      let host: any RemoteHost
      do {
        host = try await self.connector.connect(ref)
      } catch {
        return HostStatus(
          host: ref.name, roles: ref.roles,
          error: FleetError.wrap(error, code: .remoteStep, "failed"),
          services: [])
      }
      let result = await self.status(of: ref, on: host, book: book)
      await host.close()
      return result
    }
  }

  /// The controller's port book as `status` uses it: read once per pass; when it cannot be read,
  /// every host's instances are probed by a second command (``StatusProbe``).
  func portBookForStatus() -> PortBook { (try? PortBook.load(path: stateFile)) ?? PortBook() }

  /// Reads one host's instances in one remote command (two when the host has instances `book` does
  /// not know; see ``StatusProbe``).
  func status(of ref: HostRef, on host: any RemoteHost, book: PortBook) async -> HostStatus {
    do {
      let expected = StatusProbe.expected(on: ref.name, book: book)
      let out = try await host.run(
        StatusProbe.script(expected: expected, backup: ref.roles.contains(.backup)))
      let facts = try HostFacts.parse(output: out)
      guard let manifest = facts.manifest else {
        return HostStatus(host: ref.name, roles: ref.roles, error: nil, services: [])
      }
      let services = manifest.services.keys.sorted().compactMap { key -> StatusProbe.Instance? in
        guard let name = Planner.parseService(key), let entry = manifest.services[key] else { return nil }
        return (name, entry.port)
      }
      var sections = [SectionedOutput(out.stdout)]
      let missed = services.filter { sections[0][StatusProbe.section($0)] == nil }
      if !missed.isEmpty {
        sections.append(SectionedOutput(try await host.run(StatusProbe.probes(missed)).stdout))
      }
      let rows = services.map { instance -> ServiceStatus in
        let reading = sections.lazy.compactMap { StatusProbe.reading(instance, in: $0) }.first
        return ServiceStatus(
          instance, reading: reading ?? StatusProbe.Reading(),
          running: facts.running.contains(instance.name.description), host: ref.name)
      }
      var status = HostStatus(host: ref.name, roles: ref.roles, error: nil, services: rows)
      if ref.roles.contains(.backup) {
        status.moduleSizes = ModuleSize.parse((sections[0]["sizes"] ?? []).joined(separator: "\n"))
      }
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
  /// The row of `instance` from what its section said: whether it answered healthy, a watcher's
  /// `/status`, its restarts and uptime, and the mark of a restart for not answering.
  init(_ instance: StatusProbe.Instance, reading: StatusProbe.Reading, running: Bool, host: String) {
    self.init(
      service: instance.name, port: instance.port, running: running, healthy: reading.healthy,
      lagSeconds: nil, queueDepth: nil, detail: "")
    restarts = reading.restarts
    uptimeSeconds = running ? reading.uptimeSeconds : nil
    answers = running && (healthy || reading.statusJSON != nil)
    unansweredRestart = reading.unansweredMark.flatMap { UnansweredRestart(mark: $0) }
    if healthy, !reading.moduleFailures.isEmpty {
      // The daemon greets, but a watcher cannot use some of its modules: a restart does not fix
      // that (it answers), and `status` says which and why.
      healthy = false
      detail = reading.moduleFailures.sorted { $0.key < $1.key }.map { "module \($0.key): \($0.value)" }
        .joined(separator: "; ")
    } else if let json = reading.statusJSON {
      read(watcherStatus: json, host: host, clock: reading.clock)
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
