import FleetTestSupport
import FleetWatch
import Foundation
import Testing

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// The mass-change alarm (issue 10 §5) with the built `fleetsync-watch` against a real rsync daemon
/// configured with the contract's module lines (`fake super`, the versions filter): many files
/// rewritten at once raise the alarm (degraded, `/status`, the prune-hold marker on the backup), a
/// restart keeps it, `resume --mass-change` clears it and removes only this watcher's marker; a
/// trickle below the threshold does not alarm, nor does the first full sync over a seeded backup.
@Suite(
  "mass-change alarm", .serialized, .dependsOnInotifyLimits,
  .enabled(if: AgentIT.canRun, "needs /usr/bin/rsync and the built binary"))
struct MassChangeAgentTests {
  /// One watcher (state directory `STATE/alarm-w`, so its marker is `.hold-alarm-w`) over a source of
  /// `files` files, with `mass-change = 50,10x,5m`.
  struct Setup {
    let daemon: RsyncDaemon
    let scratch: AgentIT.Scratch
    let source: String
    let config: String
    let healthPort: Int

    init(_ name: String, files: Int) throws {
      daemon = try RsyncDaemon(moduleLines: RsyncDaemon.contractModuleLines)
      scratch = try AgentIT.Scratch(name)
      source = try scratch.dir("source")
      healthPort = LocalPorts.free()
      for i in 0..<files {
        try "v1 \(i)".write(toFile: "\(source)/f\(i)", atomically: false, encoding: .utf8)
      }
      config = try scratch.file(
        "watch.conf",
        """
        source = \(source)
        target = \(daemon.target.url)
        password-file = \(try daemon.passwordFile(in: scratch))
        state-dir = \(scratch.path)/state/alarm-w
        health-port = \(healthPort)
        batch-delay = 50
        mass-change = 50,10x,5m

        """)
    }

    func write(_ name: String, _ text: String) throws {
      try text.write(toFile: source + "/" + name, atomically: false, encoding: .utf8)
    }

    func start() async throws -> AgentIT.Agent {
      let agent = try AgentIT.Agent(["--config", config], scratch: scratch)
      #expect(try await eventually { LocalPorts.canConnect(port: healthPort) }, "stderr: \(agent.stderr)")
      return agent
    }

    func status() throws -> [String: Any] { try AgentIT.status(port: healthPort) }
    func alarm() throws -> [String: Any]? { try status()["massChangeAlarm"] as? [String: Any] }

    /// The content of `name` on the backup.
    func onBackup(_ name: String) -> String? {
      try? String(contentsOfFile: daemon.backup + "/" + name, encoding: .utf8)
    }

    func marker(_ name: String = ".hold-alarm-w") -> String { daemon.backup + "/.fleetsync-versions/" + name }

    func resume(_ arguments: [String]) throws -> (status: Int32, output: String) {
      try AgentIT.resume(config: config, arguments)
    }

    func remove() {
      daemon.stop()
      scratch.remove()
    }
  }

  @Test func rewritingManyFilesRaisesTheAlarmUntilAnOperatorClearsIt() async throws {
    let setup = try Setup("masschange-alarm", files: 80)
    defer { setup.remove() }
    var agent = try await setup.start()
    #expect(try await eventually { setup.onBackup("f79") == "v1 79" }, "stderr: \(agent.stderr)")
    #expect(try setup.alarm() == nil)
    // Another watcher's hold on the same module, which clearing this one's must leave alone.
    let other = setup.marker(".hold-other")
    try FileManager.default.createDirectory(
      atPath: setup.daemon.backup + "/.fleetsync-versions", withIntermediateDirectories: true)
    try "other\n".write(toFile: other, atomically: false, encoding: .utf8)

    // A script gone wrong rewrites every file: the alarm goes off, replication goes on.
    for i in 0..<80 { try setup.write("f\(i)", "encrypted \(i)") }
    #expect(
      try await eventually { try setup.alarm()?["pruneHeld"] as? Bool == true }, "stderr: \(agent.stderr)")
    #expect(FileManager.default.fileExists(atPath: setup.marker()))
    let alarm = try #require(try setup.alarm())
    #expect((alarm["count"] as? Int ?? 0) >= 50 && alarm["threshold"] as? Int == 50, "\(alarm)")
    let health = try AgentIT.get("/healthz", port: setup.healthPort)
    #expect(health.status == 200)
    #expect(health.body.hasPrefix("degraded: mass change: "), "\(health.body)")
    #expect(health.body.contains("fleetsync resume --mass-change"))
    let metrics = try AgentIT.get("/metrics", port: setup.healthPort).body
    #expect(metrics.contains("\nfleetsync_watch_mass_change_alarm 1"), "\(metrics)")
    #expect(agent.stderr.contains("mass change: "))
    #expect(try await eventually { setup.onBackup("f79") == "encrypted 79" }, "stderr: \(agent.stderr)")

    // A restart keeps the alarm, and the full sync at start (`--delete`) keeps both markers.
    #expect(try await agent.stop() == 0)
    agent = try await setup.start()
    #expect(try setup.alarm()?["since"] as? String == alarm["since"] as? String)
    #expect(
      try await eventually { (try setup.status()["fullSyncs"] as? Int ?? 0) >= 1 }, "stderr: \(agent.stderr)")
    #expect(try setup.alarm()?["since"] as? String == alarm["since"] as? String)
    #expect(FileManager.default.fileExists(atPath: setup.marker()))
    #expect(FileManager.default.fileExists(atPath: other))

    let resumed = try setup.resume(["--mass-change"])
    #expect(resumed.status == 0, "\(resumed.output)")
    #expect(resumed.output.contains("clear-mass-change: taken"), "\(resumed.output)")
    #expect(
      try await eventually { !FileManager.default.fileExists(atPath: setup.marker()) }, "\(agent.stderr)")
    #expect(try setup.alarm() == nil)
    #expect(try AgentIT.get("/healthz", port: setup.healthPort).body == "ok\n")
    #expect(FileManager.default.fileExists(atPath: other))
    // The burst that raised it does not raise it again.
    try setup.write("after", "after")
    #expect(try await eventually { setup.onBackup("after") == "after" }, "stderr: \(agent.stderr)")
    #expect(try setup.alarm() == nil)
    #expect(try await agent.stop() == 0)
  }

  /// A backup seeded by another tool, every file of it different from the source: the first full
  /// sync overwrites all 80 (more than the threshold of 50), and that is the baseline, not an alarm.
  /// Once the baseline is made, a rewrite of every file still raises it.
  @Test func aPreSeededBackupIsTheBaselineNotAnAlarm() async throws {
    let setup = try Setup("masschange-seeded", files: 80)
    defer { setup.remove() }
    for i in 0..<80 {
      try "seeded by another tool \(i)".write(
        toFile: setup.daemon.backup + "/f\(i)", atomically: false, encoding: .utf8)
    }
    let agent = try await setup.start()
    #expect(
      try await eventually {
        let fullSyncs = try setup.status()["fullSyncs"] as? Int ?? 0
        return fullSyncs >= 1 && (0..<80).allSatisfy { setup.onBackup("f\($0)") == "v1 \($0)" }
      }, "stderr: \(agent.stderr)")
    #expect(try setup.alarm() == nil, "\(agent.stderr)")
    #expect(try AgentIT.get("/healthz", port: setup.healthPort).body == "ok\n")
    #expect(!FileManager.default.fileExists(atPath: setup.marker()))
    #expect(agent.stderr.contains("the first full sync makes the baseline"), "\(agent.stderr)")

    for i in 0..<80 { try setup.write("f\(i)", "encrypted \(i)") }
    #expect(try await eventually { try setup.alarm() != nil }, "stderr: \(agent.stderr)")
    #expect(try await agent.stop() == 0)
  }

  /// Fifteen files rewritten one by one: even a file sent three times (truncate, write, close seen
  /// apart) keeps the count under 50.
  @Test func aTrickleDoesNotAlarm() async throws {
    let setup = try Setup("masschange-trickle", files: 15)
    defer { setup.remove() }
    let agent = try await setup.start()
    // After the first full sync: it is the baseline, and a rewrite it happens to carry is not counted.
    #expect(
      try await eventually {
        (try setup.status()["fullSyncs"] as? Int ?? 0) >= 1 && setup.onBackup("f14") == "v1 14"
      }, "stderr: \(agent.stderr)")
    for i in 0..<15 {
      try setup.write("f\(i)", "v2 \(i)")
      #expect(try await eventually { setup.onBackup("f\(i)") == "v2 \(i)" }, "stderr: \(agent.stderr)")
    }
    // The last copy is on the backup before rsync exits; the count follows when the agent reads its output.
    #expect(
      try await eventually { (try setup.status()["massChangeRecent"] as? Int ?? 0) >= 15 },
      "\((try? setup.status()) ?? [:])")
    let status = try setup.status()
    #expect(status["massChangeAlarm"] == nil)
    #expect(try AgentIT.get("/healthz", port: setup.healthPort).body == "ok\n")
    #expect(!FileManager.default.fileExists(atPath: setup.marker()))
    #expect(try await agent.stop() == 0)
  }
}
