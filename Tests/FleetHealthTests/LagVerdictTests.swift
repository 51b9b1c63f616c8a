import FleetHealth
import FleetWatch
import Foundation
import Testing

@testable import FleetAgent

/// A change held back longer than `max-lag` is unhealthy, whatever the reason, and says why.
@Suite("Agent health verdict: the lag bound")
struct LagVerdictTests {
  static func status(lag: Double?, bound: Double?, failing: Int = 0) -> WatchStatus {
    var s = WatchStatus(state: .watching)
    s.oldestPendingAgeSeconds = lag
    s.maxLagSeconds = bound
    s.failingPathCount = failing
    s.failingPaths =
      failing > 0
      ? [
        WatchStatus.FailingPath(
          path: "d/f", error: "mkstemp failed: Permission denied (13)", failures: 4, nextRetryAt: nil)
      ]
      : []
    return s
  }

  @Test func withinTheBoundIsHealthyEvenWithAFailingPath() {
    let s = Self.status(lag: 10, bound: 300, failing: 1)
    #expect(s.isHealthy && s.lagProblem == nil)
    #expect(AgentHealthSource.verdict(for: s, now: Date()) == .healthy)
  }

  @Test func overTheBoundIsUnhealthyAndNamesTheFailingPath() {
    let s = Self.status(lag: 412, bound: 300, failing: 3)
    #expect(!s.isHealthy)
    let verdict = AgentHealthSource.verdict(for: s, now: Date())
    #expect(!verdict.isHealthy)
    #expect(
      verdict.reason.hasPrefix(
        "replication lag 412 s is over max-lag 300 s; 3 paths cannot be sent to the backup, first \"d/f\""),
      "\(verdict)")
  }

  @Test func overTheBoundForAnyReasonIsUnhealthy() {
    var s = Self.status(lag: 301, bound: 300)
    s.lastError = "cannot reach the rsync daemon"
    #expect(!s.isHealthy)
    #expect(s.lagProblem?.contains("last error: cannot reach the rsync daemon") == true)
  }

  @Test func noBoundNoLagVerdict() {
    #expect(Self.status(lag: 100_000, bound: nil).isHealthy)
  }
}
