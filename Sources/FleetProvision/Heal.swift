import FleetCore
import FleetInventory
import Foundation

/// What `fleetsync heal` does with one instance, and why.
public struct HealAction: Sendable, Equatable, Codable {
  /// `start`, `restart` or `leave`.
  public var action: String
  /// The instance, as `status` names it (`watch@DIR:BACKUP:MODULE`, `rsyncd@NAME`).
  public var instance: String
  /// Why, for people.
  public var reason: String
  /// Whether it answered healthy once the pass was over (always false for `leave`).
  public var healthyAfter: Bool
}

/// One host's heal pass.
public struct HealReport: Sendable {
  /// Host name.
  public var host: String
  /// `ok` (nothing to do), `changed` (repaired, all healthy now), or why not.
  public var outcome: HostOutcome
  /// What was done or left, instance by instance; empty when everything was healthy.
  public var actions: [HealAction]
  /// The host as last read (after the repairs, when there were any); nil when it could not be read.
  public var status: HostStatus?
}

/// Whether `heal` may start or restart an instance now; the reason when not (a restart budget spent).
public typealias HealGate = @Sendable (_ host: String, _ instance: String) -> String?

/// The policy of `heal`: which instance to start, which to restart, which to leave.
///
/// A restart fixes a process, not its surroundings: an instance that runs and answers its health
/// check says why it is unhealthy (the backup is down, the source is held, deletes are held), and a
/// restart would only add a full sync to that, so it is left and reported. An instance that does not
/// run is started (systemd gave up on it, or it was stopped); one that runs but does not answer is
/// hung (stopped, deadlocked) and is restarted, once: the restart leaves a mark on the host
/// (``Layout/unansweredMark(_:)``, also left by the watcher's supervisor without systemd), and while
/// the restarted instance has not answered either, the cause is not the process (its port is blocked
/// or taken): it is left and reported, not restarted in a loop. The mark goes once it answers.
///
/// A watcher whose `/status` answers but whose event loop has stopped beating (by the host's clock,
/// ``ServiceStatus/stalledSeconds``) is hung too and is restarted. A replication lag that grows
/// while the backup answers is not a reason: a watcher at its rsync ceiling, or in a long full sync,
/// lags too, and a restart would add a full sync; a transfer that truly hangs ends at rsync's
/// `--timeout` and is retried, and a loop that hangs stops beating.
enum HealPolicy {
  enum Decision: Equatable {
    case none
    case start(String)
    case restart(String)
    case leave(String)
  }

  static func decide(_ s: ServiceStatus) -> Decision {
    if s.healthy { return .none }
    if !s.running { return .start("not running") }
    if !s.answers {
      guard let restart = s.unansweredRestart else {
        return .restart("runs but does not answer its health check: hung")
      }
      return .leave(
        "runs but does not answer its health check, also since it was restarted for that "
          + "(\(restart.description)): a restart does not fix this, so it is not restarted again until it has "
          + "answered; is port \(s.port) blocked on the host's loopback (firewall rules) or taken "
          + "(`ss -ltnp 'sport = :\(s.port)'`)? See its log: `fleetsync logs HOST \(s.service)`")
    }
    if let stalled = s.stalledSeconds {
      return .restart("answers, but its event loop has not beaten for \(stalled) s: hung")
    }
    return .leave("answers but is unhealthy, which a restart does not fix: \(s.detail)")
  }

  /// The shell command that restarts (or starts) `service` on its host, systemd or not: a stopped
  /// process is continued first so that it can stop cleanly; systemd forgets that it gave up. With
  /// `mark`, it first leaves the mark of a restart for not answering (``Layout/unansweredMark(_:)``).
  ///
  /// The restart is counted in ``Layout/restartsFile(_:)``, with systemd's own count of restarts
  /// (`NRestarts`), which the reset and the restart set back to 0.
  static func command(_ service: ServiceName, mark: Bool = false) throws -> String {
    let unit = try ShellQuote.quote(service.unit)
    let pid = try ShellQuote.quote(Layout.pidFile(service))
    let restarts = try ShellQuote.quote(Layout.restartsFile(service))
    let log = try ShellQuote.quote(Layout.logFile(service))
    let marking =
      mark
      ? "mkdir -p \(Layout.run) && echo \"$(date +%s) heal\" >\(try ShellQuote.quote(Layout.unansweredMark(service)))\n"
      : ""
    let start: String
    switch service.kind {
    case .rsyncd:
      start = PidFileServices.startRsyncd(
        pid: pid, log: log, conf: try ShellQuote.quote(Layout.rsyncdConf(service.instance)))
    case .watch:
      start = try PidFileServices.startWatch(
        pid: pid, log: log, conf: try ShellQuote.quote(Layout.watchConf(service.instance)))
    }
    return marking + """
      mkdir -p \(Layout.run); n=0; c=$(cat \(restarts) 2>/dev/null)
      [ -d /run/systemd/system ] && n=$(systemctl show -p NRestarts --value \(unit) 2>/dev/null)
      case "$n" in ''|*[!0-9]*) n=0;; esac; case "$c" in ''|*[!0-9]*) c=0;; esac
      echo $((c + n + 1)) >\(restarts)
      if [ -d /run/systemd/system ]; then
        systemctl kill --signal=SIGCONT \(unit) 2>/dev/null
        systemctl reset-failed \(unit) 2>/dev/null
        systemctl restart \(unit)
      else
        [ -f \(pid) ] && kill -CONT "$(cat \(pid))" 2>/dev/null
      \(PidFileServices.stop(pid: pid))
      \(start)
      fi
      """
  }
}

extension Provisioner {
  /// One pass over the selected hosts: reads every instance's health, starts what does not run,
  /// restarts what runs but does not answer, and leaves (and reports) what answers unhealthy.
  ///
  /// After its repairs a host is read again until each repaired instance answers healthy or
  /// `deadline` seconds pass.
  ///
  /// - Parameters:
  ///   - hosts: only these of the selected hosts (nil: all of them).
  ///   - gate: asked before each start or restart; an instance it refuses is left, with its reason.
  ///
  /// Holds the controller's lock on the inventory throughout, as `up` and `down` do, so a pass never
  /// starts what an `up` is stopping.
  ///
  /// - Throws: ``FleetError/Code/controllerLocked`` when another run holds the lock after
  ///   ``ProvisionOptions/lockWait``.
  public func heal(
    deadline: Int = 60, hosts: Set<String>? = nil, gate: @escaping HealGate = { _, _ in nil }
  ) async throws -> [HealReport] {
    let lock = try await ControllerLock.acquire(path: lockFile, command: commandLine, wait: options.lockWait)
    defer { lock.release() }
    let book = portBookForStatus()
    return await forEachConnectedHost(selected.filter { hosts?.contains($0.name) ?? true }) { ref, error in
      HealReport(host: ref.name, outcome: HostOutcome(error), actions: [], status: nil)
    } _: { ref, host in
      await self.heal(ref, on: host, book: book, deadline: deadline, gate: gate)
    }
  }

  private func heal(
    _ ref: HostRef, on host: any RemoteHost, book: PortBook, deadline: Int, gate: HealGate
  ) async -> HealReport {
    let before = await status(of: ref, on: host, book: book)
    if let error = before.error {
      return HealReport(host: ref.name, outcome: HostOutcome(error), actions: [], status: nil)
    }
    var actions: [HealAction] = []
    var repaired: [String] = []
    for service in before.services {
      let name = service.service.description
      switch HealPolicy.decide(service) {
      case .none: continue
      case .leave(let why):
        actions.append(HealAction(action: "leave", instance: name, reason: why, healthyAfter: false))
      case .start(let why), .restart(let why):
        let verb = service.running ? "restart" : "start"
        if let refused = gate(ref.name, name) {
          actions.append(
            HealAction(
              action: "leave", instance: name, reason: "\(why); not now: \(refused)", healthyAfter: false))
          continue
        }
        do {
          let command = try HealPolicy.command(service.service, mark: service.running)
          let out = try await host.run(command)
          let failed = out.status == 0 ? "" : "; the \(verb) failed (exit \(out.status)): \(out.stderr)"
          actions.append(HealAction(action: verb, instance: name, reason: why + failed, healthyAfter: false))
          repaired.append(name)
        } catch {
          actions.append(
            HealAction(action: verb, instance: name, reason: "\(why); \(error)", healthyAfter: false))
        }
      }
    }
    var after = before
    if !repaired.isEmpty {
      after = await waitHealthy(Set(repaired), ref: ref, on: host, book: book, deadline: deadline)
      let healthy = Set(after.services.filter(\.healthy).map(\.service.description))
      for index in actions.indices where healthy.contains(actions[index].instance) {
        actions[index].healthyAfter = true
      }
    }
    await clearUnansweredMarks(&after, on: host)
    return HealReport(host: ref.name, outcome: Self.outcome(actions), actions: actions, status: after)
  }

  /// Removes the marks of restarts for not answering (``Layout/unansweredMark(_:)``) of the instances
  /// that answer now: the next time one does not, a restart may help again.
  private func clearUnansweredMarks(_ status: inout HostStatus, on host: any RemoteHost) async {
    let answered = status.services.indices.filter {
      status.services[$0].answers && status.services[$0].unansweredRestart != nil
    }
    guard !answered.isEmpty,
      let paths = try? answered.map({
        try ShellQuote.quote(Layout.unansweredMark(status.services[$0].service))
      }),
      (try? await host.run("rm -f " + paths.joined(separator: " ")))?.status == 0
    else { return }
    for index in answered { status.services[index].unansweredRestart = nil }
  }

  /// Reads the host until every instance in `names` answers healthy or `deadline` seconds pass;
  /// returns the last reading.
  private func waitHealthy(
    _ names: Set<String>, ref: HostRef, on host: any RemoteHost, book: PortBook, deadline: Int
  ) async -> HostStatus {
    let end = Date().addingTimeInterval(TimeInterval(deadline))
    while true {
      let now = await status(of: ref, on: host, book: book)
      let healthy = Set(now.services.filter(\.healthy).map(\.service.description))
      if names.isSubset(of: healthy) || Date() >= end || Task.isCancelled { return now }
      try? await Task.sleep(for: .seconds(1))
    }
  }

  static func outcome(_ actions: [HealAction]) -> HostOutcome {
    let bad = actions.filter { !$0.healthyAfter }
    if !bad.isEmpty {
      return .failed(bad.map { "\($0.instance): \($0.reason)" }.joined(separator: "; "))
    }
    return actions.isEmpty ? .ok : .changed
  }
}
