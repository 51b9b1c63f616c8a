import Foundation
import Testing

@testable import FleetWatch

#if canImport(Glibc)
  import Glibc
#endif

/// A run's priority is its program's from its first instruction: a full sync's rsync, and anything
/// it starts, never runs at the watcher's priority.
@Suite("Process priority")
struct ProcessPriorityTests {
  /// What a shell started at `priority` says of itself: its nice value, then `ionice -p`.
  private func observed(at priority: ProcessPriority) async throws -> (nice: String, io: String) {
    let script = "cut -d' ' -f19 /proc/$$/stat; ionice -p $$"
    let r = try await ConfinedProcess.run(
      executable: "/bin/sh", arguments: ["-c", script], ruleset: -1, tailCapacity: 4096, priority: priority)
    #expect(r.termination == .exited(0), "\(r.stderr.text)")
    let lines = r.stdout.text.split(separator: "\n").map(String.init)
    return (lines.first ?? "", lines.dropFirst().first ?? "")
  }

  @Test func aBackgroundRunStartsAtNiceTenAndTheLowestBestEffortLevel() async throws {
    let (nice, io) = try await observed(at: .background)
    #expect(nice == "10")
    #expect(io.contains("best-effort: prio 7"), "ionice says: \(io)")
  }

  @Test func aNormalRunKeepsTheWatchersPriority() async throws {
    errno = 0
    let own = getpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0)
    let (nice, _) = try await observed(at: .normal)
    #expect(nice == "\(own)")
  }
}
