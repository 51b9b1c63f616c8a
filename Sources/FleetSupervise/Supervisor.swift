import FleetCore
import FleetHealth
import FleetInventory
import FleetProvision
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// `fleetsync supervise`: a check-and-repair pass over the fleet every interval, under a restart
/// budget, with every action logged and the result on `/status`, `/metrics` and `/healthz`.
///
/// Each pass is a ``FleetProvision/Provisioner/heal(deadline:hosts:gate:)`` over the hosts that are
/// due (``RestartBudget``): instances that do not run are started, hung ones restarted, unhealthy
/// ones that answer are reported and left. It runs until a graceful shutdown (SIGTERM, SIGINT).
public final class Supervisor: Service, Sendable {
  /// The last pass, as `/status` shows it.
  public struct Pass: Sendable, Encodable {
    /// When it ended.
    public var ended: Date
    /// Seconds it took.
    public var seconds: Double
    /// What it found and did, host by host.
    public var hosts: [Host]

    /// One host of a pass.
    public struct Host: Sendable, Encodable {
      public var host: String
      public var outcome: String
      public var detail: String
      public var actions: [HealAction]
    }
  }

  private let provisioner: Provisioner
  private let hostNames: [String]
  private let interval: Duration
  private let deadline: Int
  private let budget: RestartBudget
  /// Its metrics.
  public let metrics = SuperviseMetrics()
  private let logger: Logger
  private let last = Mutex<Pass?>(nil)
  private let started = Date()

  /// A supervisor of `provisioner`'s selected hosts, a pass every `interval`.
  public init(
    provisioner: Provisioner, interval: Duration, deadline: Int, budget: RestartBudget = RestartBudget(),
    logger: Logger
  ) {
    self.provisioner = provisioner
    hostNames = provisioner.selected.map(\.name)
    self.interval = interval
    self.deadline = deadline
    self.budget = budget
    self.logger = logger
  }

  /// Runs passes until a graceful shutdown.
  public func run() async throws {
    logger.notice(
      "supervising", metadata: ["hosts": "\(hostNames.count)", "interval": "\(interval.components.seconds)s"])
    while !Task.isShuttingDownGracefully && !Task.isCancelled {
      await pass()
      do {
        try await cancelWhenGracefulShutdown { try await Task.sleep(for: self.interval) }
      } catch {
        break
      }
    }
    logger.notice("supervise stopped")
  }

  /// One pass: heal the due hosts, log, record.
  public func pass() async {
    let begin = Date()
    let budget = self.budget
    let due = Set(hostNames.filter { budget.hostDue($0, now: begin) })
    let reports: [HealReport]
    do {
      reports = try await provisioner.heal(deadline: deadline, hosts: due) { host, instance in
        budget.take("\(host)/\(instance)")
      }
    } catch {
      // Another run (`up`, `down`, `heal`) holds the inventory's lock: never repair under it.
      logger.notice("pass skipped", metadata: ["reason": "\(error)"])
      return
    }
    let end = Date()
    for report in reports { note(report, at: end) }
    metrics.record(reports, at: end)
    let hosts = reports.map {
      Pass.Host(host: $0.host, outcome: $0.outcome.word, detail: $0.outcome.detail, actions: $0.actions)
    }
    last.withLock { $0 = Pass(ended: end, seconds: end.timeIntervalSince(begin), hosts: hosts) }
  }

  private func note(_ report: HealReport, at now: Date) {
    switch report.outcome {
    case .unreachable(let why), .auth(let why):
      let next = budget.hostFailed(report.host, interval: Double(interval.components.seconds), now: now)
      logger.warning(
        "host not reached; trying again later",
        metadata: [
          "host": "\(report.host)", "reason": "\(why)", "next": "\(next.formatted(.iso8601))",
          "backoff": "\(Int(next.timeIntervalSince(now).rounded()))s",
        ])
      return
    default:
      budget.hostAnswered(report.host)
    }
    for service in report.status?.services ?? [] where service.healthy {
      budget.healthy("\(report.host)/\(service.service.description)", now: now)
    }
    for action in report.actions {
      let metadata: Logger.Metadata = [
        "host": "\(report.host)", "instance": "\(action.instance)", "action": "\(action.action)",
        "reason": "\(action.reason)", "healthyAfter": "\(action.healthyAfter)",
      ]
      if action.action == "leave" {
        logger.warning("unhealthy, left alone", metadata: metadata)
      } else {
        logger.notice("\(action.action == "start" ? "started" : "restarted")", metadata: metadata)
      }
    }
  }

  /// `/healthz`: healthy while passes keep coming (the last ended within three intervals and a
  /// deadline), with the hosts that are not ok as a note.
  public func health(now: Date = Date()) -> HealthVerdict {
    let limit = Double(interval.components.seconds) * 3 + Double(deadline) + 30
    guard let pass = last.withLock({ $0 }) else {
      return now.timeIntervalSince(started) < limit ? .healthy : .unhealthy("no pass has finished yet")
    }
    let age = now.timeIntervalSince(pass.ended)
    if age > limit { return .unhealthy("no pass for \(Int(age)) s") }
    let bad = pass.hosts.filter { $0.outcome != "ok" && $0.outcome != "changed" }.map(\.host)
    return bad.isEmpty ? .healthy : .degraded("not ok: \(bad.joined(separator: ", "))")
  }

  /// `/status`: the last pass as JSON.
  public func statusJSON() -> [UInt8] {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    encoder.dateEncodingStrategy = .iso8601
    let pass = last.withLock { $0 }
    return (try? encoder.encode(pass)).map(Array.init) ?? Array("null".utf8)
  }

  /// The endpoints' source.
  public var healthSource: some HealthSource {
    ClosureHealthSource(
      health: { self.health() }, status: { self.statusJSON() }, metrics: { self.metrics.exposition() })
  }
}
