import FleetCore
import FleetInventory
import Foundation

/// The result for one host.
public struct HostReport: Sendable {
  /// Host name.
  public var host: String
  /// Outcome.
  public var outcome: HostOutcome
  /// The plan (for `plan`, with diffs).
  public var plan: HostPlan?
  /// Services that did not become healthy, with what they said.
  public var unhealthy: [String: String] = [:]
  /// Watchers not waited for because their backup host is unreachable in this run.
  public var waiting: [String] = []
  /// What the operator should know about this host's run (it did not fail the host).
  public var notes: [String] = []
}

/// The result of a whole run; its exit status is ``ExitStatus`` of the hosts' outcomes.
public struct RunReport: Sendable {
  /// Per host, in inventory order.
  public var hosts: [HostReport]
}

/// Progress events, for live output.
public enum ProgressEvent: Sendable {
  /// Work on a host started (`phase`: connect, facts, apply, health).
  case phase(host: String, phase: String)
  /// A host is done.
  case finished(HostReport)
}

/// Options of a provisioning run.
public struct ProvisionOptions: Sendable {
  /// How many hosts are worked on at once.
  public var forks = 32
  /// Host or group names; empty = all hosts.
  public var limit: [String] = []
  /// The local fleetsync-watch binary to install on sources.
  public var watchBinary: String?
  /// Seconds `up` waits for instances to become healthy.
  public var healthDeadline = 60
  /// `down`: also delete backup data directories.
  public var deleteData = false
  /// `plan`/`up`: generate new module secrets when the secrets file is missing although hosts
  /// already run fleetsync (refused otherwise, and with ``limit``).
  public var newSecrets = false
  /// `up`/`down`: how long to wait for another run that holds the controller's lock on this
  /// inventory (zero: fail at once, naming the holder).
  public var lockWait: Duration = .zero

  /// Default options.
  public init() {}
}

/// Plans, applies and removes fleetsync's setup across an inventory's hosts.
public struct Provisioner: Sendable {
  /// The validated inventory.
  public let inventory: Inventory
  /// Connection factory.
  public let connector: any HostConnector
  /// Options.
  public let options: ProvisionOptions
  /// Called from any task as work progresses.
  public let progress: @Sendable (ProgressEvent) -> Void

  /// Makes a provisioner; validates `--limit` names against the inventory.
  public init(
    inventory: Inventory, connector: any HostConnector, options: ProvisionOptions,
    progress: @escaping @Sendable (ProgressEvent) -> Void = { _ in }
  ) throws {
    self.inventory = inventory
    self.connector = connector
    self.options = options
    self.progress = progress
    let known = Set(inventory.hosts.map(\.name)).union(inventory.groups)
    let unknown = options.limit.filter { !known.contains($0) }
    if !unknown.isEmpty {
      throw FleetError(
        .invalidInput,
        "--limit names \(unknown.joined(separator: ", ")), which is no host or group of \(inventory.file)")
    }
  }

  /// Path of the controller's port book beside the inventory.
  public var stateFile: String { stateBase + ".state.json" }

  /// Path of the controller's lock on this inventory (``ControllerLock``), beside the state file.
  public var lockFile: String { stateBase + ".lock" }

  /// The secrets file's path without `.secrets`: the stem of the controller's other files.
  var stateBase: String {
    inventory.secretsFile.hasSuffix(".secrets")
      ? String(inventory.secretsFile.dropLast(8)) : inventory.secretsFile
  }

  /// The hosts this run works on.
  public var selected: [HostRef] {
    guard !options.limit.isEmpty else { return inventory.hosts }
    let limit = Set(options.limit)
    return inventory.hosts.filter { limit.contains($0.name) || !limit.isDisjoint(with: $0.groups) }
  }

  // MARK: up / plan

  /// Computes what `up` would change; changes nothing. Plans carry unified diffs (secrets masked).
  public func plan() async throws -> RunReport { try await converge(apply: false) }

  /// Brings every selected host to the inventory's state, then waits for health.
  /// Holds the controller's lock on the inventory throughout.
  public func up() async throws -> RunReport {
    let lock = try await ControllerLock.acquire(path: lockFile, command: commandLine, wait: options.lockWait)
    defer { lock.release() }
    return try await converge(apply: true)
  }

  // MARK: down

  /// Stops and removes everything fleetsync made on the selected hosts, restores changed settings.
  /// Holds the controller's lock on the inventory throughout.
  public func down() async throws -> RunReport {
    let lock = try await ControllerLock.acquire(path: lockFile, command: commandLine, wait: options.lockWait)
    defer { lock.release() }
    var ports = try PortBook.load(path: stateFile)
    let sessions = await openAll(selected, leasing: Set(selected.map(\.name)))
    do {
      try checkDistinctMachines(sessions.compactMapValues { try? $0.get().facts })
      try checkLeases(sessions)
    } catch {
      await closeAll(sessions)
      throw error
    }
    let reports = await forEachHost(selected) { ref -> HostReport in
      switch sessions[ref.name] {
      case .failure(let error): return HostReport(host: ref.name, outcome: Self.outcome(for: error))
      case nil: return HostReport(host: ref.name, outcome: .failed("internal: no session"))
      case .success(let opened):
        let plan = Planner.down(host: ref, facts: opened.facts, deleteData: self.options.deleteData)
        do {
          try self.checkRecordedName(ref, facts: opened.facts)
          self.progress(.phase(host: ref.name, phase: "remove"))
          let kept = try await Applier(host: opened.host).down(plan)
          var report = HostReport(host: ref.name, outcome: plan.isEmpty ? .ok : .changed, plan: plan)
          report.notes = kept.map(Self.keptNote)
          return report
        } catch {
          return HostReport(host: ref.name, outcome: Self.outcome(for: error))
        }
      }
    }
    await closeAll(sessions)
    for report in reports where report.outcome == .ok || report.outcome == .changed {
      ports.retain(host: report.host, services: [])
    }
    try ports.save(path: stateFile)
    return RunReport(hosts: reports)
  }

  /// What `down --delete-data` says of a data directory it did not delete.
  static func keptNote(_ path: String) -> String {
    "kept \(path): fleetsync did not create the directory now at that path (it existed before `up`, "
      + "or was replaced or mounted over since), so it is not fleetsync's to delete; remove it by hand "
      + "if it really should go"
  }

  // MARK: Plumbing

  /// This process's command line, for the holder of a lock.
  var commandLine: String { CommandLine.arguments.joined(separator: " ") }

  struct Session: Sendable {
    var host: any RemoteHost
    var facts: HostFacts
    /// This run's lease on the node, when the run writes to it.
    var lease: NodeLease?
    /// Why the lease was refused because this run already holds the node under another name; the
    /// facts were read without it so the run can name both (``checkLeases(_:)``), and nothing is written.
    var leaseRefusal: FleetError?
  }

  /// Gives up the run's node leases, then closes every opened session and waits for it, so no
  /// libssh2 work outlives the run.
  func closeAll(_ sessions: [String: Result<Session, FleetError>]) async {
    for case .success(let session) in sessions.values {
      await session.lease?.release()
      await session.host.close()
    }
  }

  /// Connects to `refs` and reads their facts; takes the run's lease (``NodeLease``) first on the
  /// hosts in `leasing`, the ones it will write to, so the facts are not read in another run's middle.
  func openAll(_ refs: [HostRef], leasing: Set<String> = []) async -> [String: Result<Session, FleetError>] {
    let holder = ControllerLock.Holder.current(command: commandLine)
    let results = await forEachHost(refs) { ref -> Result<Session, FleetError> in
      self.progress(.phase(host: ref.name, phase: "connect"))
      do {
        let connection = try await self.connector.connect(ref)
        var lease: NodeLease?
        do {
          var host = connection
          if leasing.contains(ref.name) {
            let ttl = NodeLease.ttl(healthDeadline: self.options.healthDeadline)
            let taken = try await NodeLease.acquire(on: connection, name: ref.name, holder: holder, ttl: ttl)
            lease = taken
            host = LeasedHost(inner: connection, lease: taken)
          }
          let facts = try await HostFacts.gather(from: host)
          return .success(Session(host: host, facts: facts, lease: lease))
        } catch let refusal as FleetError where refusal.code == .sameMachine && lease == nil {
          let facts = try await HostFacts.gather(from: connection)
          return .success(Session(host: connection, facts: facts, leaseRefusal: refusal))
        } catch {
          await lease?.release()
          await connection.close()
          throw error
        }
      } catch {
        return .failure(FleetError.wrap(error, code: .remoteStep, "\(ref.name)"))
      }
    }
    return Dictionary(zip(refs.map(\.name), results), uniquingKeysWith: { a, _ in a })
  }

  /// Connects to each host (``forEachHost``), runs `body` on the connection and closes it; a host
  /// that cannot be reached gives `unreachable`'s result instead.
  func forEachConnectedHost<T: Sendable>(
    _ refs: [HostRef], unreachable: @escaping @Sendable (HostRef, FleetError) -> T,
    _ body: @escaping @Sendable (HostRef, any RemoteHost) async -> T
  ) async -> [T] {
    await forEachHost(refs) { ref in
      let host: any RemoteHost
      do {
        host = try await self.connector.connect(ref)
      } catch {
        return unreachable(ref, FleetError.wrap(error, code: .remoteStep, "failed"))
      }
      let result = await body(ref, host)
      await host.close()
      return result
    }
  }

  /// Runs `body` for each host with at most `forks` at once; results in input order.
  func forEachHost<T: Sendable>(_ refs: [HostRef], _ body: @escaping @Sendable (HostRef) async -> T) async
    -> [T]
  {
    await withTaskGroup(of: (Int, T).self) { group in
      var results: [T?] = Array(repeating: nil, count: refs.count)
      var next = 0
      let window = max(1, options.forks)
      while next < refs.count && next < window {
        let index = next
        group.addTask { (index, await body(refs[index])) }
        next += 1
      }
      while let (index, value) = await group.next() {
        results[index] = value
        if next < refs.count {
          let index = next
          group.addTask { (index, await body(refs[index])) }
          next += 1
        }
      }
      return results.map { $0! }
    }
  }

  /// The outcome of a host whose work stopped with `error`: what the error's code means (errors that
  /// are not ``FleetError`` count as a failed step).
  static func outcome(for error: any Error) -> HostOutcome {
    HostOutcome(FleetError.wrap(error, code: .remoteStep, "failed"))
  }

  func localWatchBinary() throws -> (path: String, sha256: String)? {
    var candidates: [String] = []
    if let explicit = options.watchBinary { candidates.append(explicit) }
    let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? ""
    if !exe.isEmpty { candidates.append((exe as NSString).deletingLastPathComponent + "/fleetsync-watch") }
    for path in candidates where FileManager.default.isExecutableFile(atPath: path) {
      return (path, try Digest.sha256Hex(file: path))
    }
    if options.watchBinary != nil {
      throw FleetError(.invalidInput, "--watch-binary \(options.watchBinary!) is not an executable file")
    }
    return nil
  }
}
