import FleetCore
import FleetWatch
import FleetWire
import Foundation
import Testing

@testable import FleetProvision

/// What `heal` decides for each state an instance is read in, from the status probe's lines: start
/// what does not run, restart what does not answer once, leave what answers unhealthy, and leave
/// (reported) what did not answer after a restart for that either.
@Suite struct HealPolicyTests {
  static let watcher = ServiceName(.watch, "a:bk1:s1-a")
  static let daemon = ServiceName(.rsyncd, "main")
  static let status = #"{"state":"retrying","lastError":"cannot reach the rsync daemon"}"#

  func row(_ lines: [String], _ name: ServiceName = watcher, running: Bool = true) -> ServiceStatus {
    let instance: StatusProbe.Instance = (name, 9700)
    let section = SectionedOutput((["@@" + StatusProbe.section(instance)] + lines).joined(separator: "\n"))
    return ServiceStatus(
      instance, reading: StatusProbe.reading(instance, in: section) ?? StatusProbe.Reading(),
      running: running,
      host: "s1")
  }

  @Test func healthyIsLeftAloneAndWhatDoesNotRunIsStarted() {
    #expect(HealPolicy.decide(row(["healthy"])) == .none)
    let down = row([], running: false)
    #expect(down.detail == "not running" && !down.answers)
    #expect(HealPolicy.decide(down) == .start("not running"))
    // A mark of an earlier restart does not keep a crashed instance from being started.
    #expect(HealPolicy.decide(row(["unanswered 1795000000 heal"], running: false)) == .start("not running"))
  }

  /// A daemon that greets but refuses a module's login, or lacks its directory, is unhealthy and left:
  /// a restart does not bring back a secret or a filesystem.
  @Test func aDaemonWhoseModuleFailsIsUnhealthyAndLeft() {
    let lines = [
      "healthy", "module home failed: @ERROR: chdir failed", "module proj ok",
      "module web failed: @ERROR: auth failed on module web.versions",
    ]
    let daemon = row(lines, Self.daemon)
    #expect(!daemon.healthy && daemon.answers)
    #expect(daemon.detail.hasPrefix("module home: chdir failed (its directory"), "\(daemon.detail)")
    #expect(daemon.detail.contains("; module web: auth failed on module web.versions (the daemon refuses"))
    #expect(!daemon.detail.contains("proj"))
    guard case .leave(let why) = HealPolicy.decide(daemon) else {
      Issue.record("not left: \(HealPolicy.decide(daemon))")
      return
    }
    #expect(why.contains("module home: chdir failed"))
    let fine = row(["healthy", "module home ok"], Self.daemon)
    #expect(fine.healthy && HealPolicy.decide(fine) == .none)
    let unreadable = row(
      ["healthy", "module * failed: cannot read /etc/fleetsync/rsyncd/main.secrets"], Self.daemon)
    #expect(
      !unreadable.healthy && unreadable.detail == "module *: cannot read /etc/fleetsync/rsyncd/main.secrets")
  }

  @Test func notAnsweringIsRestartedOnce() throws {
    for name in [Self.watcher, Self.daemon] {
      let hung = row([], name)
      #expect(hung.detail == ServiceStatus.notAnswering && !hung.answers && hung.unansweredRestart == nil)
      guard case .restart = HealPolicy.decide(hung) else {
        Issue.record("\(name): \(HealPolicy.decide(hung))")
        continue
      }
      // The restart did not make it answer: left, and why.
      let again = row(["unanswered 1795000000 fleetsync-supervise"], name)
      let restart = try #require(again.unansweredRestart)
      #expect(restart.by == "fleetsync-supervise")
      #expect(restart.at == Date(timeIntervalSince1970: 1_795_000_000))
      #expect(
        again.detail.hasPrefix(ServiceStatus.notAnswering + ", also since a restart"), "\(again.detail)")
      guard case .leave(let why) = HealPolicy.decide(again) else {
        Issue.record("\(name): \(HealPolicy.decide(again))")
        continue
      }
      #expect(why.contains("a restart does not fix this") && why.contains("port 9700"), "\(why)")
    }
  }

  @Test func answeringUnhealthyIsLeftWithOrWithoutAMark() {
    for lines in [[Self.status], [Self.status, "unanswered 1795000000 heal"]] {
      let degraded = row(lines)
      #expect(degraded.answers && !degraded.healthy)
      guard case .leave(let why) = HealPolicy.decide(degraded) else {
        Issue.record("\(lines): \(HealPolicy.decide(degraded))")
        continue
      }
      #expect(why.contains("which a restart does not fix"), "\(why)")
    }
    // A healthy answer with a mark left over: nothing to do (heal removes the mark).
    let recovered = row(["healthy", "unanswered 1795000000 heal"])
    #expect(recovered.answers && HealPolicy.decide(recovered) == .none)
  }

  /// A watcher whose `/status` answers while its event loop no longer beats (by the host's clock,
  /// not the controller's) is hung and restarted; one that beats and is unhealthy is left.
  @Test func aStalledEventLoopThatStillAnswersIsRestarted() throws {
    let clock = 1_795_000_000
    func reading(heartbeatAge: Int) throws -> ServiceStatus {
      let engine = WatchStatus(
        state: .watching, heartbeat: Date(timeIntervalSince1970: TimeInterval(clock - heartbeatAge)))
      let document = AgentStatusDocument(
        engine: engine, source: "/srv/a", target: "rsync://fs-m@bk1:8730/m/", healthy: false, reloads: 0,
        failedReloads: 0)
      let json = String(decoding: try document.json(), as: UTF8.self).trimmingCharacters(in: .newlines)
      return row([json, "clock \(clock)"])
    }
    let stalled = try reading(heartbeatAge: 40)
    #expect(stalled.answers && stalled.stalledSeconds == 40, "\(stalled)")
    #expect(stalled.detail.contains("event loop stalled, no heartbeat for 40 s"), "\(stalled.detail)")
    guard case .restart(let why) = HealPolicy.decide(stalled) else {
      Issue.record("\(HealPolicy.decide(stalled))")
      return
    }
    #expect(why.contains("has not beaten for 40 s"), "\(why)")
    let beating = try reading(heartbeatAge: 2)
    #expect(beating.stalledSeconds == nil)
    guard case .leave = HealPolicy.decide(beating) else {
      Issue.record("\(HealPolicy.decide(beating))")
      return
    }
  }

  /// Only a restart for not answering leaves the mark; the start of what does not run does not.
  @Test func theRestartCommandLeavesTheMark() throws {
    let mark = try ShellQuote.quote(Layout.unansweredMark(Self.watcher))
    let restart = try HealPolicy.command(Self.watcher, mark: true)
    #expect(
      restart.hasPrefix("mkdir -p /run/fleetsync && echo \"$(date +%s) heal\" >\(mark)\n"), "\(restart)")
    #expect(!(try HealPolicy.command(Self.watcher)).contains(".unanswered"))
    #expect(Layout.unansweredMark(Self.daemon) == "/run/fleetsync/rsyncd-main.unanswered")
    #expect(Units.supervisor.contains("mark=${1%.pid}.unanswered"))
    let pid = Layout.pidFile(Self.watcher)
    #expect(Layout.unansweredMark(Self.watcher) == pid.dropLast(".pid".count) + ".unanswered")
  }
}
