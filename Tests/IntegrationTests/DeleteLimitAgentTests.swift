import FleetTestSupport
import FleetWatch
import Foundation
import Testing

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// The delete limit (issue 9 §2) with the built `fleetsync-watch` against a real rsync daemon: a
/// mass delete above `max-delete` is held (the backup keeps the files, creates still flow, the
/// status says so) until `fleetsync-watch resume --deletes` releases it.
@Suite(
  "delete limit", .serialized, .dependsOnInotifyLimits,
  .enabled(if: AgentIT.canRun, "needs /usr/bin/rsync and the built binary"))
struct DeleteLimitAgentTests {
  /// One watcher with its config file, a source holding `bulk/` of `files` files, and its daemon.
  struct Setup {
    let daemon: RsyncDaemon
    let scratch: AgentIT.Scratch
    let source: String
    let config: String
    let healthPort: Int

    init(_ name: String, files: Int, maxDelete: String) throws {
      daemon = try RsyncDaemon()
      scratch = try AgentIT.Scratch(name)
      source = try scratch.dir("source")
      healthPort = LocalPorts.free()
      let bulk = try scratch.dir("source/bulk")
      for i in 0..<files { try "\(i)".write(toFile: "\(bulk)/f\(i)", atomically: false, encoding: .utf8) }
      try "keep".write(toFile: source + "/keep.txt", atomically: false, encoding: .utf8)
      config = try scratch.file(
        "watch.conf",
        """
        source = \(source)
        target = \(daemon.target.url)
        password-file = \(try daemon.passwordFile(in: scratch))
        state-dir = \(scratch.path)/state
        health-port = \(healthPort)
        batch-delay = 50
        max-delete = \(maxDelete)

        """)
    }

    func start() async throws -> AgentIT.Agent {
      let agent = try AgentIT.Agent(["--config", config], scratch: scratch)
      #expect(try await eventually { LocalPorts.canConnect(port: healthPort) }, "stderr: \(agent.stderr)")
      return agent
    }

    func status() throws -> [String: Any] { try AgentIT.status(port: healthPort) }

    /// Files left under `bulk/` on the backup.
    var backupBulk: Int {
      (try? FileManager.default.contentsOfDirectory(atPath: daemon.backup + "/bulk").count) ?? 0
    }

    func exists(onBackup name: String) -> Bool {
      FileManager.default.fileExists(atPath: daemon.backup + "/" + name)
    }

    /// Runs `fleetsync-watch resume --config CONFIG ARGS`: exit status and output.
    func resume(_ arguments: [String]) throws -> (status: Int32, output: String) {
      try AgentIT.resume(config: config, arguments)
    }

    func remove() {
      daemon.stop()
      scratch.remove()
    }
  }

  /// The source loses 2,000 files while the watcher is stopped (the restart case): the full sync
  /// at start holds all of them, a restart keeps them held, and a release deletes them.
  @Test func massDeleteAtStartIsHeldUntilReleased() async throws {
    let setup = try Setup("deletes-start", files: 2_000, maxDelete: "1000")
    defer { setup.remove() }
    var agent = try await setup.start()
    #expect(
      try await eventually { setup.backupBulk == 2_000 && setup.exists(onBackup: "keep.txt") },
      "stderr: \(agent.stderr)")
    #expect(try await agent.stop() == 0)

    try FileManager.default.removeItem(atPath: setup.source + "/bulk")
    try "new".write(toFile: setup.source + "/new.txt", atomically: false, encoding: .utf8)
    agent = try await setup.start()
    // The create flows; the deletes are held, and the watcher stays healthy.
    #expect(
      try await eventually {
        let held = try setup.status()["deletesHeld"] as? Int
        return setup.exists(onBackup: "new.txt") && held != nil
      },
      "stderr: \(agent.stderr)")
    var status = try setup.status()
    #expect(status["deletesHeld"] as? Int == 2_001)
    #expect(status["deleteLimit"] as? Int == 1_000)
    #expect(status["deletesHeldSince"] is String)
    // The examples come from a dry run right after the count.
    var examples: [String] = []
    #expect(
      try await eventually {
        examples = try setup.status()["deletesHeldPaths"] as? [String] ?? []
        return !examples.isEmpty
      })
    #expect(examples.allSatisfy { $0.hasPrefix("bulk/") }, "\(examples)")
    #expect(status["healthy"] as? Bool == true)
    let health = try AgentIT.get("/healthz", port: setup.healthPort)
    #expect(health.status == 200)
    #expect(
      health.body.hasPrefix("degraded: 2001 delete(s) on the backup held by max-delete"), "\(health.body)")
    #expect(setup.backupBulk == 2_000)
    #expect(agent.stderr.contains("deletes held"))

    // A restart keeps them held, not applied.
    #expect(try await agent.stop() == 0)
    agent = try await setup.start()
    #expect(
      try await eventually { (try setup.status()["fullSyncs"] as? Int ?? 0) >= 1 }, "stderr: \(agent.stderr)")
    status = try setup.status()
    #expect(status["deletesHeld"] as? Int == 2_001)
    #expect(setup.backupBulk == 2_000)

    let resumed = try setup.resume(["--deletes"])
    #expect(resumed.status == 0, "\(resumed.output)")
    #expect(resumed.output.contains("release-deletes: taken"))
    #expect(
      try await eventually {
        let held = try setup.status()["deletesHeld"]
        return setup.backupBulk == 0 && held == nil
      },
      "stderr: \(agent.stderr)")
    #expect(setup.exists(onBackup: "keep.txt") && setup.exists(onBackup: "new.txt"))
    #expect(try await agent.stop() == 0)
  }

  /// `rm -rf` of 2,000 files while the watcher runs: no more than the limit is ever deleted, the
  /// rest is held while a new file still reaches the backup; a release deletes the rest.
  @Test func liveMassDeleteIsHeldWhileCreatesFlow() async throws {
    let setup = try Setup("deletes-live", files: 2_000, maxDelete: "1000")
    defer { setup.remove() }
    let agent = try await setup.start()
    #expect(try await eventually { setup.backupBulk == 2_000 }, "stderr: \(agent.stderr)")

    try FileManager.default.removeItem(atPath: setup.source + "/bulk")
    #expect(
      try await eventually { (try setup.status()["deletesHeld"] as? Int ?? 0) > 0 }, "stderr: \(agent.stderr)"
    )
    try "after".write(toFile: setup.source + "/after.txt", atomically: false, encoding: .utf8)
    #expect(try await eventually { setup.exists(onBackup: "after.txt") }, "stderr: \(agent.stderr)")
    #expect(setup.backupBulk >= 1_000, "more than max-delete was deleted: \(setup.backupBulk) left")
    #expect(try setup.status()["healthy"] as? Bool == true)

    let resumed = try setup.resume(["--deletes"])
    #expect(resumed.status == 0, "\(resumed.output)")
    #expect(try await eventually { setup.backupBulk == 0 }, "stderr: \(agent.stderr)")
    let after = try setup.status()
    #expect(after["deletesHeld"] == nil)
    #expect(try await agent.stop() == 0)
  }

  /// A release asked of a watcher that does not run is withdrawn, not left to act later.
  @Test func resumeWithoutARunningWatcherWithdrawsTheRequest() async throws {
    let setup = try Setup("deletes-norun", files: 1, maxDelete: "unlimited")
    defer { setup.remove() }
    try FileManager.default.createDirectory(
      atPath: setup.scratch.path + "/state", withIntermediateDirectories: true)
    let resumed = try setup.resume(["--deletes", "--wait", "1"])
    #expect(resumed.status == 75, "\(resumed.output)")
    #expect(resumed.output.contains("withdrawn"))
    #expect(!FileManager.default.fileExists(atPath: setup.scratch.path + "/state/request.release-deletes"))
    #expect(try setup.resume([]).status == 64)
  }
}
