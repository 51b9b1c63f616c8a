import FleetCore
import FleetInventory

/// `plan` and `up`: facts, then the run's decisions (ports, secrets), then each host on its own.
extension Provisioner {
  /// What every host's part of a `plan` or `up` shares, decided once before any host is changed.
  struct RunDecisions: Sendable {
    /// Whether to apply (`up`) or only plan.
    var apply: Bool
    /// Inventory, ports, secrets and agent binary, for rendering.
    var context: RenderContext
    /// Hosts whose instances could not all have their ports, with every reason.
    var portErrors: [String: [FleetError]]
    /// Backup hosts that could not be reached in this run.
    var unreachableBackups: Set<String>
    /// Modules whose secret rotation has not finished, and the secrets their ends keep meanwhile.
    var rotations = PendingRotations()
  }

  func converge(apply: Bool) async throws -> RunReport {
    var secrets = try SecretStore(path: inventory.secretsFile)
    var ports = try PortBook.load(path: stateFile)
    let binary = try localWatchBinary()

    // Phase 1: facts of the selected hosts and of the backups they send to (read-only).
    //          Hosts this run writes to are leased first (the backups it only reads are not).
    let sessions = await openAll(hostsToRead, leasing: apply ? Set(selected.map(\.name)) : [])

    // Phase 2: ports (stable) and secrets (saved before any host sees them).
    //          A failure here closes the sessions (and gives the node leases back) first.
    let portErrors: [String: [FleetError]]
    let moduleSecrets: [String: Secret]
    do {
      try checkDistinctMachines(sessions.compactMapValues { try? $0.get().facts })
      try checkLeases(sessions)
      try checkSecretsFile(secrets, facts: sessions.compactMapValues { try? $0.get().facts })
      portErrors = ports.assign(inventory, facts: sessions.compactMapValues { try? $0.get().facts })
      moduleSecrets = try secrets.moduleSecrets(inventory)
      if apply {
        try secrets.save()
        try ports.save(path: stateFile)
      }
    } catch {
      await closeAll(sessions)
      throw error
    }
    let rotations = await pendingRotations(secrets, sessions: sessions)
    let run = RunDecisions(
      apply: apply,
      context: RenderContext(
        inventory: inventory, ports: ports, secrets: moduleSecrets.merging(rotations.resolved) { $1 },
        watchBinary: binary),
      portErrors: portErrors,
      unreachableBackups: Set(
        inventory.backups.map(\.name).filter {
          if case .failure = sessions[$0] { true } else { false }
        }),
      rotations: rotations)

    // Phase 3: per host, render → plan → (apply → health).
    let reports = await forEachHost(selected) { ref in
      await self.converge(ref, session: sessions[ref.name], run)
    }
    await closeAll(sessions)
    if apply { try forgetRemovedInstances(ports, reports: reports) }
    return RunReport(hosts: reports)
  }

  /// Refuses to generate secrets for a fleet that already runs fleetsync when the secrets file is
  /// missing (a fresh checkout of the inventory elsewhere, say): hosts this run does not reach would
  /// keep the old secrets, and their watchers could no longer log in. `--new-secrets` asks for new
  /// ones on purpose, for every host at once.
  func checkSecretsFile(_ secrets: SecretStore, facts: [String: HostFacts]) throws {
    if options.newSecrets && !options.limit.isEmpty {
      throw FleetError(
        .invalidInput,
        "--new-secrets changes the secret of every module: run it without --limit, so that every host "
          + "gets the new secrets in the same run")
    }
    guard !secrets.existed, !options.newSecrets else { return }
    let provisioned = facts.filter { $0.value.manifest?.services.isEmpty == false }.keys.sorted()
    guard !provisioned.isEmpty else { return }
    throw FleetError(
      .localState,
      "the secrets file \(secrets.path) is missing, but \(provisioned.joined(separator: ", ")) already "
        + "run fleetsync with secrets from it: restore the file (mode 0600) from where `fleetsync up` last "
        + "ran, or run `fleetsync up --new-secrets` (without --limit) to give every module a new secret")
  }

  /// The selected hosts and the backups their sources send to: the hosts a run reads facts from.
  var hostsToRead: [HostRef] {
    var needed = selected
    let selectedNames = Set(selected.map(\.name))
    for source in inventory.sources where selectedNames.contains(source.name) {
      for dir in source.directories {
        for dest in dir.destinations where !needed.contains(where: { $0.name == dest.backup }) {
          if let ref = inventory.hosts.first(where: { $0.name == dest.backup }) { needed.append(ref) }
        }
      }
    }
    return needed
  }

  /// One host's part of a run: render, plan, and for `up` apply and wait for health.
  func converge(_ ref: HostRef, session: Result<Session, FleetError>?, _ run: RunDecisions) async
    -> HostReport
  {
    let opened: Session
    switch session {
    case nil: return HostReport(host: ref.name, outcome: .failed("internal: no session"))
    case .failure(let error): return HostReport(host: ref.name, outcome: Self.outcome(for: error))
    case .success(let s): opened = s
    }
    if let errors = run.portErrors[ref.name] {
      return HostReport(host: ref.name, outcome: .failed(errors.map(\.description).joined(separator: "; ")))
    }
    do {
      try checkRecordedName(ref, facts: opened.facts)
      let context = await renderContext(ref, session: opened, run)
      var desired = try render(ref, context: context, facts: opened.facts)
      // `plan` writes nothing, not even the check's temporary file.
      if run.apply, let backup = inventory.backup(named: ref.name), ref.roles.contains(.backup) {
        desired.warnings += try await ModuleXattrCheck.require(backup, on: opened.host)
      }
      var plan = Planner.up(desired: desired, facts: opened.facts)
      var report: HostReport
      if run.apply {
        report = try await apply(plan, on: opened, run)
      } else {
        try await addDiffs(&plan, host: opened.host)
        report = HostReport(host: ref.name, outcome: plan.isEmpty ? .ok : .changed, plan: plan)
      }
      report.notes += rotationNotes(ref, run.rotations)
      return report
    } catch {
      return HostReport(host: ref.name, outcome: Self.outcome(for: error))
    }
  }

  /// Applies `plan` to the session's host, then waits until its instances answer healthy.
  func apply(_ plan: HostPlan, on session: Session, _ run: RunDecisions) async throws -> HostReport {
    let name = plan.host.name
    let services = plan.desired?.services ?? []
    progress(.phase(host: name, phase: "apply"))
    try await Applier(host: session.host).up(plan, previous: session.facts.manifest)
    progress(.phase(host: name, phase: "health"))
    // A watcher whose backup host is unreachable in this run cannot be healthy; that is the
    // backup's failure (reported there), not this host's.
    let waiting = services.filter { service in
      service.name.kind == .watch
        && run.unreachableBackups.contains { service.name.instance.contains(":\($0):") }
    }
    let unhealthy = try await Applier(host: session.host).waitHealthy(
      services.filter { !waiting.contains($0) }, deadline: options.healthDeadline)
    var report = HostReport(host: name, outcome: plan.isEmpty ? .ok : .changed, plan: plan)
    report.waiting = waiting.map(\.name.description)
    if !unhealthy.isEmpty {
      report.unhealthy = unhealthy
      let names = unhealthy.keys.sorted().map { "\($0) (\(unhealthy[$0] ?? ""))" }.joined(separator: ", ")
      report.outcome = .failed("not healthy within \(options.healthDeadline)s: \(names)")
    }
    return report
  }

  /// After `up`: the port book forgets instances gone from the hosts that came through (a failed
  /// or unreachable host keeps all its ports until a run on it succeeds).
  func forgetRemovedInstances(_ ports: PortBook, reports: [HostReport]) throws {
    var book = ports
    for report in reports {
      if !report.outcome.succeeded { continue }
      let services = Set(report.plan?.desired?.services.map(\.name) ?? [])
      book.retain(host: report.host, services: services)
    }
    try book.save(path: stateFile)
  }

  /// Everything the host's roles want, as one desired state: one node, one manifest.
  func render(_ ref: HostRef, context: RenderContext, facts: HostFacts) throws -> DesiredHost {
    var roles: [DesiredHost] = []
    if ref.roles.contains(.source), let source = inventory.source(named: ref.name) {
      roles.append(
        try Renderer.source(
          source, context: context, systemd: facts.systemd, currentSysctl: facts.sysctl,
          sysctlWritable: facts.sysctlWritable, manifest: facts.manifest))
    }
    if ref.roles.contains(.backup), let backup = inventory.backup(named: ref.name) {
      roles.append(try Renderer.backup(backup, context: context, systemd: facts.systemd))
    }
    return try DesiredHost(combining: roles)
  }

  /// Fills the plan's unified diffs of text files (never of secrets or the agent binary).
  func addDiffs(_ plan: inout HostPlan, host: any RemoteHost) async throws {
    guard let desired = plan.desired else { return }
    let byPath = Dictionary(desired.files.map { ($0.path, $0) }, uniquingKeysWith: { a, _ in a })
    for index in plan.files.indices {
      let change = plan.files[index]
      guard !change.secret, let file = byPath[change.path], case .bytes(let bytes) = file.content else {
        continue
      }
      let new = String(decoding: bytes, as: UTF8.self)
      let old =
        change.kind == .update
        ? (try await host.read(change.path)).map { String(decoding: $0, as: UTF8.self) } ?? "" : ""
      plan.files[index].diff = UnifiedDiff.make(old: old, new: new, path: change.path)
    }
  }
}
