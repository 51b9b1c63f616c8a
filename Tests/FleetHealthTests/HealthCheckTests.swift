import FleetCore
import FleetHealth
import FleetTestSupport
import FleetWatch
import FleetWire
import Foundation
import Logging
import Synchronization
import Testing

@testable import FleetAgent

#if canImport(Glibc)
  import Glibc
#endif

/// `fleetsync-watch check`: healthy, unhealthy (answers with a reason: leave it running) or hung (no
/// answer, or a stalled event loop: restart it), against real sockets and the agent's real server.
@Suite("fleetsync-watch check")
struct HealthCheckTests {
  static func settings(port: Int) throws -> AgentSettings {
    var settings = AgentSettings(
      watch: WatchConfig(
        source: "/nonexistent/fleetsync-check", target: try RsyncTarget.parse("rsync://h/m"),
        stateDir: "/nonexistent/state"))
    settings.healthPort = port
    return settings
  }

  static func body(_ status: WatchStatus, healthy: Bool) throws -> [UInt8] {
    try AgentStatusDocument(
      engine: status, source: "/src", target: "rsync://h/m", healthy: healthy, reloads: 0, failedReloads: 0
    ).json()
  }

  @Test func theVerdictTellsHungFromUnhealthy() throws {
    let now = Date()
    let fresh = WatchStatus(state: .watching, heartbeat: now)
    #expect(HealthCheck.verdict(statusBody: try Self.body(fresh, healthy: true), now: now) == .healthy)

    var waiting = WatchStatus(state: .waitingForSource, heartbeat: now)
    waiting.lastError = "source /src cannot be watched"
    let unhealthy = HealthCheck.verdict(statusBody: try Self.body(waiting, healthy: false), now: now)
    #expect(unhealthy.exitStatus == 1)
    #expect(unhealthy.line.contains("waitingForSource") && unhealthy.line.contains("cannot be watched"))

    let later = now.addingTimeInterval(WatchStatus.heartbeatStallSeconds + 1)
    let stalled = HealthCheck.verdict(statusBody: try Self.body(fresh, healthy: true), now: later)
    #expect(stalled.exitStatus == 2, "\(stalled)")
    #expect(stalled.line.contains("stalled"))
  }

  /// A process that is stopped (SIGSTOP) looks like this: the kernel accepts the connection and
  /// nobody answers. The check gives up at its deadline and says hung.
  @Test func aListenerThatNeverAnswersIsHung() throws {
    let silent = try LocalPorts.occupy()
    defer { close(silent.fd) }
    let verdict = try HealthCheck.check(try Self.settings(port: silent.port), timeout: .seconds(1))
    #expect(verdict.exitStatus == 2, "\(verdict)")
    #expect(verdict.line.contains("no answer"), "\(verdict.line)")
  }

  @Test func nothingListeningIsHung() throws {
    let verdict = try HealthCheck.check(try Self.settings(port: LocalPorts.free()), timeout: .seconds(5))
    #expect(verdict.exitStatus == 2, "\(verdict)")
  }

  @Test func aConfigWithoutAHealthPortCannotBeChecked() throws {
    var settings = try Self.settings(port: 1)
    settings.healthPort = nil
    #expect(throws: FleetError.self) { try HealthCheck.check(settings) }
  }

  /// Against the agent's own health server: a waiting agent is unhealthy with its reason, and stays
  /// so while its retry loop beats.
  @Test func aWaitingAgentIsUnhealthyNotHung() async throws {
    let port = LocalPorts.free()
    let settings = try Self.settings(port: port)
    let waiting = StartRetry.waitingStatus(
      .waitingForSource, reason: "source /nonexistent/fleetsync-check cannot be watched", settings: settings,
      retryIn: .seconds(1), now: Date())
    let current = CurrentEngine(waiting: waiting, settings: settings)
    let server = try await HealthServer.start(
      host: "127.0.0.1", port: port, source: AgentHealthSource(current: current),
      logger: Logger(label: "test"))
    // The agent's retry loop refreshes the waiting status (and its heartbeat) at every attempt: a
    // thread of its own does it here, so a busy task pool cannot let the heartbeat go stale.
    let beating = Beating()
    let thread = Thread {
      while beating.on.withLock({ $0 }) {
        current.stillWaiting(
          StartRetry.waitingStatus(
            .waitingForSource, reason: "source /nonexistent/fleetsync-check cannot be watched",
            settings: settings, retryIn: .seconds(1), now: Date()))
        usleep(200_000)
      }
    }
    thread.start()
    // A check whose thread loses the CPU for over 10 s between the server's answer and its reading of
    // the clock sees a stale heartbeat and rightly says "hung" (it happened on a machine busy with two
    // builds and a test run): such a check is asked again, up to five times.
    var verdict = try await onOwnThread { try HealthCheck.check(settings, timeout: .seconds(30)) }
    for _ in 0..<4 where verdict.exitStatus == 2 {
      verdict = try await onOwnThread { try HealthCheck.check(settings, timeout: .seconds(30)) }
    }
    beating.on.withLock { $0 = false }
    await server.close()
    #expect(verdict.exitStatus == 1, "\(verdict)")
    #expect(verdict.line.contains("findmnt"), "\(verdict.line)")
  }
}

/// Whether a test's beating thread goes on.
final class Beating: Sendable {
  let on = Mutex(true)
}
