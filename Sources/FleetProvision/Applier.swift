import FleetCore
import Foundation

/// Carries out a ``HostPlan`` on one node, in an order that never leaves a half-made state behind:
/// the manifest is widened first (so everything that may exist is on record), files are written
/// atomically, services are started after their files, the final manifest is written last.
public struct Applier: Sendable {
  /// The node.
  public let host: any RemoteHost

  /// Makes an applier for `host`.
  public init(host: any RemoteHost) { self.host = host }

  /// Applies an `up` plan.
  public func up(_ plan: HostPlan, previous: Manifest?) async throws {
    guard let desired = plan.desired, let final = plan.manifest else { return }
    if plan.isEmpty && !plan.manifestChanged { return }
    // 1. Directories.
    try await makeDirectories(plan.directories)
    // 2. A manifest that covers both the old and the new state, so an interrupted run leaves
    //    nothing off the record.
    var union = final
    for (path, file) in previous?.files ?? [:] where union.files[path] == nil { union.files[path] = file }
    for (name, service) in previous?.services ?? [:] where union.services[name] == nil {
      union.services[name] = service
    }
    //    An instance to restart keeps its old hash until it has restarted: cut off before that, the
    //    next run still sees its config as changed and restarts it.
    for action in plan.services where action.kind == .restart {
      let key = action.service.description
      if let old = previous?.services[key] { union.services[key] = old }
    }
    try await writeManifest(union)
    // 3. Files.
    try await writeFiles(plan, desired)
    // 4. Kernel settings (the drop-in file is already written).
    if !plan.sysctl.isEmpty {
      try await host.check("sysctl -q -p \(try ShellQuote.quote(Layout.sysctl))", "applying \(Layout.sysctl)")
    }
    // 5. Services: stop the removed, remove their files, then (re)start the changed.
    try await updateServices(plan)
    //    Without systemd, the boot script brings them back after a reboot.
    if !plan.systemd && desired.files.contains(where: { $0.path == Layout.bootScript }) {
      try await host.check(PidFileServices.enableBootScript, "enabling \(Layout.bootScript) at boot")
    }
    // 6. The final manifest.
    try await writeManifest(final)
  }

  /// Creates `directories` (data directories get the daemon's owner when fleetsync creates them,
  /// and go on the node's record of what it created: ``CreatedDataDirectories``), after sweeping
  /// temp files of uploads a lost connection cut off (the SSH layer cannot).
  func makeDirectories(_ directories: [DesiredDirectory]) async throws {
    var mkdir = "set -e; umask 022\n"
    mkdir += "\(Self.staleTempSweep) -mmin +10 -delete 2>/dev/null || true\n"
    if directories.contains(where: \.data) { mkdir += try CreatedDataDirectories.functions() }
    for dir in directories {
      if dir.data {
        mkdir += try CreatedDataDirectories.create(dir)
        continue
      }
      let path = try ShellQuote.quote(dir.path)
      let mode = String(dir.mode, radix: 8)
      if let owner = dir.owner {
        let own = try ShellQuote.quote(owner)
        mkdir +=
          "if [ ! -d \(path) ]; then mkdir -p \(path) && chown \(own) \(path) && chmod \(mode) \(path); fi\n"
      } else {
        mkdir += "mkdir -p \(path) && chmod \(mode) \(path)\n"
      }
    }
    try await host.check(mkdir, "creating directories")
  }

  /// Writes every created or updated file of `plan` atomically; reloads systemd when units changed.
  func writeFiles(_ plan: HostPlan, _ desired: DesiredHost) async throws {
    let byPath = Dictionary(desired.files.map { ($0.path, $0) }, uniquingKeysWith: { a, _ in a })
    for change in plan.files where change.kind != .delete {
      guard let file = byPath[change.path] else { continue }
      switch file.content {
      case .bytes(let bytes): try await host.write(bytes, to: file.path, mode: file.mode)
      case .localFile(let local, _): try await host.upload(localPath: local, to: file.path, mode: file.mode)
      }
    }
    let unitsChanged = plan.files.contains { $0.path.hasPrefix(Layout.units) }
    if plan.systemd && unitsChanged {
      try await host.check("systemctl daemon-reload", "systemctl daemon-reload")
    }
  }

  /// Stops removed instances, deletes the files no longer wanted, then starts or restarts the changed.
  func updateServices(_ plan: HostPlan) async throws {
    for action in plan.services where action.kind == .stop {
      try await host.check(
        try stopCommand(action.service, systemd: plan.systemd), "stopping \(action.service)")
    }
    let deletions = plan.files.filter { $0.kind == .delete }.map(\.path)
    if deletions.contains(Layout.bootScript) {
      try await host.check(PidFileServices.disableBootScript, "disabling \(Layout.bootScript)")
    }
    if !deletions.isEmpty {
      try await host.check(
        "rm -f -- " + (try deletions.map(ShellQuote.quote).joined(separator: " ")), "removing files")
    }
    let dropIns = try Self.removeDropInDirectories(of: deletions)
    if !dropIns.isEmpty { try await host.check(dropIns, "removing drop-in directories") }
    for action in plan.services where action.kind != .stop {
      let command =
        action.kind == .restart
        ? try restartCommand(action.service, systemd: plan.systemd)
        : try startCommand(action.service, systemd: plan.systemd)
      try await host.check(command, "\(action.kind.rawValue)ing \(action.service)")
    }
  }

  /// Applies a `down` plan. Returns the data directories it was asked to delete but kept, because
  /// the node's record does not show that fleetsync created them (``CreatedDataDirectories``).
  @discardableResult
  public func down(_ plan: HostPlan) async throws -> [String] {
    guard !plan.isEmpty || plan.manifestChanged else { return [] }
    for action in plan.services {
      try await host.check(
        try stopCommand(action.service, systemd: plan.systemd), "stopping \(action.service)")
    }
    if plan.systemd {
      try await host.check("systemctl daemon-reload || true", "systemctl daemon-reload")
    }
    for change in plan.sysctl {
      let path = "/proc/sys/" + change.key.replacingOccurrences(of: ".", with: "/")
      try await host.check("echo \(change.to) > \(try ShellQuote.quote(path))", "restoring \(change.key)")
    }
    let deletions = plan.files.map(\.path)
    if deletions.contains(Layout.bootScript) {
      try await host.check(PidFileServices.disableBootScript, "disabling \(Layout.bootScript)")
    }
    if !deletions.isEmpty {
      try await host.check(
        "rm -f -- " + (try deletions.map(ShellQuote.quote).joined(separator: " ")), "removing files")
    }
    var cleanup = try CreatedDataDirectories.functions()
    cleanup += try Self.removeDropInDirectories(of: deletions)
    for dir in plan.directories {
      cleanup +=
        dir.data
        ? try CreatedDataDirectories.delete(dir.path)
        : "rmdir -- \(try ShellQuote.quote(dir.path)) 2>/dev/null || true\n"
    }
    cleanup += try CreatedDataDirectories.forget()
    cleanup += "\(Self.staleTempSweep) -delete 2>/dev/null || true\n"
    // Runtime leftovers of our own services (pid, lock, logs, journals) go with the directories.
    cleanup += "rm -rf -- \(Layout.run) \(Layout.log) \(Layout.state) /var/lib/fleetsync/bin\n"
    cleanup +=
      "rmdir -- /var/lib/fleetsync \(Layout.etc)/rsyncd \(Layout.etc)/watch \(Layout.etc) 2>/dev/null || true\n"
    cleanup += CreatedDataDirectories.verdict
    return CreatedDataDirectories.kept(in: try await host.check(cleanup, "removing directories"))
  }

  /// Shell lines removing the drop-in directories (`UNIT.service.d`) of the deleted `files`, each
  /// when it is empty: a unit's drop-in directory goes with its last drop-in.
  static func removeDropInDirectories(of files: [String]) throws -> String {
    let directories = Set(
      files.filter { $0.contains(".service.d/") }.map { String($0[..<$0.lastIndex(of: "/")!]) })
    return try directories.sorted().map { "rmdir -- \(try ShellQuote.quote($0)) 2>/dev/null || true\n" }
      .joined()
  }

  /// `find` over the places fleetsync uploads to, matching upload temp files.
  static let staleTempSweep =
    "find \(Layout.etc) /var/lib/fleetsync/bin /etc/sysctl.d /etc/init.d \(Layout.units) -maxdepth 2 -name '.*.fleetsync-tmp.*'"

  func writeManifest(_ manifest: Manifest) async throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    let data = try encoder.encode(manifest)
    try await host.write(Array(data) + [10], to: Layout.manifest, mode: 0o644)
  }

  func startCommand(_ service: ServiceName, systemd: Bool) throws -> String {
    if systemd { return "systemctl enable --now \(try ShellQuote.quote(service.unit))" }
    let pid = try ShellQuote.quote(Layout.pidFile(service))
    let log = try ShellQuote.quote(Layout.logFile(service))
    switch service.kind {
    case .rsyncd:
      let conf = try ShellQuote.quote(Layout.rsyncdConf(service.instance))
      return PidFileServices.startRsyncd(pid: pid, log: log, conf: conf)
    case .watch:
      let conf = try ShellQuote.quote(Layout.watchConf(service.instance))
      return try PidFileServices.startWatch(pid: pid, log: log, conf: conf)
    }
  }

  func stopCommand(_ service: ServiceName, systemd: Bool) throws -> String {
    if systemd {
      let unit = try ShellQuote.quote(service.unit)
      return "systemctl disable --now \(unit) 2>/dev/null || true"
    }
    return PidFileServices.stop(pid: try ShellQuote.quote(Layout.pidFile(service)))
  }

  func restartCommand(_ service: ServiceName, systemd: Bool) throws -> String {
    if systemd {
      return
        "systemctl enable \(try ShellQuote.quote(service.unit)) && systemctl restart \(try ShellQuote.quote(service.unit))"
    }
    return try stopCommand(service, systemd: false) + "\n" + startCommand(service, systemd: false)
  }

  /// Waits until every service of the plan answers: rsync daemons accept TCP, watchers say
  /// 200 on `/healthz`. Returns the services that did not, with what they said.
  public func waitHealthy(_ services: [DesiredService], deadline seconds: Int) async throws -> [String:
    String]
  {
    guard !services.isEmpty else { return [:] }
    let out = try await host.run(HealthProbe.waitScript(services, seconds: seconds))
    return HealthProbe.failures(in: out.stdout)
  }
}
