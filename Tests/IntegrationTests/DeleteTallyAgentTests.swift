import FleetTestSupport
import FleetWatch
import Foundation
import Testing

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// The delete limit's tally survives a restart of the built `fleetsync-watch` (issue 9 §2): held
/// deletes stay held and shown, and the deletes applied within the window still count, so a
/// crash-looping agent cannot let one more limit's worth through at each start.
@Suite(
  "delete tally across restarts", .serialized, .dependsOnInotifyLimits,
  .enabled(if: AgentIT.canRun, "needs /usr/bin/rsync and the built binary"))
struct DeleteTallyAgentTests {
  /// Files under `name/` on the backup.
  private func onBackup(_ setup: DeleteLimitAgentTests.Setup, _ name: String) -> Int {
    (try? FileManager.default.contentsOfDirectory(atPath: setup.daemon.backup + "/" + name).count) ?? 0
  }

  /// Moves `name` out of the source in one rename: one gone path, counted in one batch.
  private func moveOut(_ setup: DeleteLimitAgentTests.Setup, _ name: String) throws {
    try FileManager.default.moveItem(
      atPath: setup.source + "/" + name, toPath: setup.scratch.path + "/moved-" + name)
  }

  @Test func heldDeletesAndTheWindowSurviveARestart() async throws {
    let setup = try DeleteLimitAgentTests.Setup("deletes-tally", files: 2_000, maxDelete: "1000")
    defer { setup.remove() }
    for (name, count) in [("some", 600), ("more", 500)] {
      let dir = try setup.scratch.dir("source/" + name)
      for i in 0..<count { try "\(i)".write(toFile: "\(dir)/f\(i)", atomically: false, encoding: .utf8) }
    }
    var agent = try await setup.start()
    #expect(
      try await eventually {
        setup.backupBulk == 2_000 && onBackup(setup, "some") == 600 && onBackup(setup, "more") == 500
      }, "stderr: \(agent.stderr)")

    // 601 deletes (the files and their directory) fit the limit and are applied: 399 left.
    try moveOut(setup, "some")
    #expect(try await eventually { !setup.exists(onBackup: "some") }, "stderr: \(agent.stderr)")
    #expect(try setup.status()["deletesHeld"] == nil)
    #expect(try await agent.stop() == 0)

    // 2,000 files and their directory gone while stopped: 2,001 deletes, held at start.
    try FileManager.default.removeItem(atPath: setup.source + "/bulk")
    agent = try await setup.start()
    #expect(
      try await eventually { try setup.status()["deletesHeld"] as? Int == 2_001 }, "stderr: \(agent.stderr)")
    let since = try #require(try setup.status()["deletesHeldSince"] as? String)
    let tally = setup.scratch.path + "/state/delete-budget.json"
    var st = stat()
    #expect(stat(tally, &st) == 0 && st.st_mode & 0o777 == 0o600)

    // A crash and a start with the backup unreachable, so nothing can be counted anew: the hold
    // is shown at once, from when it began.
    agent.crash()
    setup.daemon.stop()
    agent = try await setup.start()
    var status = try setup.status()
    #expect(status["deletesHeld"] as? Int == 2_001, "\(status)")
    #expect(status["deletesHeldSince"] as? String == since)
    try setup.daemon.start()
    #expect(
      try await eventually { (try setup.status()["fullSyncs"] as? Int ?? 0) >= 1 }, "stderr: \(agent.stderr)")
    #expect(try AgentIT.get("/healthz", port: setup.healthPort).body.hasPrefix("degraded: 2001 delete(s)"))
    #expect(setup.backupBulk == 2_000)

    // 501 deletes would fit a fresh limit of 1,000, not the 399 the window has left: held too.
    try moveOut(setup, "more")
    #expect(
      try await eventually { (try setup.status()["deletesHeld"] as? Int ?? 0) > 2_001 },
      "stderr: \(agent.stderr)")
    #expect(onBackup(setup, "more") == 500)
    #expect(setup.backupBulk == 2_000)

    // A reload with a larger limit: the new engine's limit applies to the saved tally. 2,502
    // deletes would fit a fresh 2,600; with 601 applied in the window they are still held.
    let text = try String(contentsOfFile: setup.config, encoding: .utf8)
    try text.replacingOccurrences(of: "max-delete = 1000", with: "max-delete = 2600")
      .write(toFile: setup.config, atomically: true, encoding: .utf8)
    agent.signal(SIGHUP)
    #expect(
      try await eventually {
        let s = try setup.status()
        return s["reloads"] as? Int == 1 && s["deleteLimit"] as? Int == 2_600
          && (s["fullSyncs"] as? Int ?? 0) >= 1
      }, "stderr: \(agent.stderr)")
    #expect(try setup.status()["deletesHeld"] as? Int == 2_502)
    #expect(onBackup(setup, "more") == 500)
    #expect(setup.backupBulk == 2_000)

    // The operator's release still works after the restart.
    let resumed = try setup.resume(["--deletes"])
    #expect(resumed.status == 0, "\(resumed.output)")
    #expect(
      try await eventually {
        let held = try setup.status()["deletesHeld"]
        return setup.backupBulk == 0 && !setup.exists(onBackup: "more") && held == nil
      },
      "stderr: \(agent.stderr)")
    #expect(setup.exists(onBackup: "keep.txt"))
    status = try setup.status()
    #expect(status["healthy"] as? Bool == true)
    #expect(try await agent.stop() == 0)
  }
}
