import FleetTestSupport
import FleetWatch
import Foundation
import Testing

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// The built `fleetsync-watch` started while a start error is transient (the source not mounted yet,
/// the state directory not writable): it does not exit (exit 64 would keep systemd from restarting
/// it), it tells systemd it is ready and answers `/healthz` 503 with the reason, and once the problem
/// is gone it starts by itself and replicates.
@Suite(
  "fleetsync-watch waits for transient start errors", .serialized, .dependsOnInotifyLimits,
  .enabled(if: AgentIT.canRun, "needs /usr/bin/rsync and the built binary"))
struct AgentStartWaitTests {
  /// The source is missing at start (a data filesystem mounted late), then appears.
  @Test func missingSourceWaitsThenReplicates() async throws {
    let daemon = try RsyncDaemon()
    let scratch = try AgentIT.Scratch("waitsource")
    defer {
      daemon.stop()
      scratch.remove()
    }
    let notify = try AgentNotifySocket(in: scratch)
    let source = scratch.path + "/mnt/data"
    let healthPort = LocalPorts.free()
    let agent = try AgentIT.Agent(
      [
        "--source", source, "--target", daemon.target.url, "--password-file",
        try daemon.passwordFile(in: scratch), "--state-dir", scratch.path + "/state",
        "--health-port", "\(healthPort)", "--batch-delay", "50",
      ], scratch: scratch, environment: ["NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "1000000"])
    defer { if agent.process.isRunning { agent.crash() } }

    try await Self.expectWaiting(
      agent, port: healthPort, state: "waitingForSource", mentions: [source, "mounted"])
    // systemd sees an active unit whose watchdog is fed: the retry loop is alive.
    #expect(try await eventually { notify.saw("READY=1") }, "\(notify.received) \(agent.stderr)")
    #expect(try await eventually { notify.saw("WATCHDOG=1") }, "\(notify.received)")

    // The filesystem "is mounted": the directory appears with its content.
    let staging = try scratch.dir("staging")
    try FileManager.default.createDirectory(atPath: staging + "/sub", withIntermediateDirectories: true)
    try "one".write(toFile: staging + "/one.txt", atomically: false, encoding: .utf8)
    try "two".write(toFile: staging + "/sub/two.txt", atomically: false, encoding: .utf8)
    try FileManager.default.createDirectory(atPath: scratch.path + "/mnt", withIntermediateDirectories: true)
    #expect(rename(staging, source) == 0)

    try await Self.expectReplicating(agent, source: source, daemon: daemon, port: healthPort)
    #expect(try await agent.stop() == 0)
  }

  /// The state directory cannot be created (a full or read-only /var looks the same to the agent:
  /// the journal cannot be written), then it can.
  @Test func unwritableStateDirectoryWaitsThenReplicates() async throws {
    let daemon = try RsyncDaemon()
    let scratch = try AgentIT.Scratch("waitstate")
    defer {
      daemon.stop()
      scratch.remove()
    }
    let source = try scratch.dir("source")
    try "one".write(toFile: source + "/one.txt", atomically: false, encoding: .utf8)
    // A file where the state directory's parent should be: even root cannot create it.
    let blocker = try scratch.file("var", "not a directory")
    let stateDir = blocker + "/lib/fleetsync"
    let healthPort = LocalPorts.free()
    let agent = try AgentIT.Agent(
      [
        "--source", source, "--target", daemon.target.url, "--password-file",
        try daemon.passwordFile(in: scratch), "--state-dir", stateDir,
        "--health-port", "\(healthPort)", "--batch-delay", "50",
      ], scratch: scratch)
    defer { if agent.process.isRunning { agent.crash() } }

    try await Self.expectWaiting(agent, port: healthPort, state: "startFailed", mentions: [blocker, "df -h"])
    #expect(!FileManager.default.fileExists(atPath: daemon.backup + "/one.txt"))

    try FileManager.default.removeItem(atPath: blocker)
    try FileManager.default.createDirectory(atPath: blocker, withIntermediateDirectories: true)
    try await Self.expectReplicating(agent, source: source, daemon: daemon, port: healthPort)
    #expect(FileManager.default.fileExists(atPath: stateDir + "/" + WatchEngine.journalName))
    #expect(try await agent.stop() == 0)
  }

  /// A SIGHUP with a config that fixes the problem starts replication at once; a waiting agent
  /// stops cleanly on SIGTERM.
  @Test func waitingAgentReloadsAndStops() async throws {
    let daemon = try RsyncDaemon()
    let scratch = try AgentIT.Scratch("waitreload")
    defer {
      daemon.stop()
      scratch.remove()
    }
    let source = try scratch.dir("source")
    try "one".write(toFile: source + "/one.txt", atomically: false, encoding: .utf8)
    let healthPort = LocalPorts.free()
    let common = """
      target = \(daemon.target.url)
      password-file = \(try daemon.passwordFile(in: scratch))
      state-dir = \(scratch.path)/state
      health-port = \(healthPort)

      """
    let config = try scratch.file("w.conf", "source = \(scratch.path)/typo\n" + common)
    let waiting = try AgentIT.Agent(["--config", config], scratch: scratch)
    defer { if waiting.process.isRunning { waiting.crash() } }
    try await Self.expectWaiting(waiting, port: healthPort, state: "waitingForSource", mentions: ["typo"])
    #expect(try await waiting.stop() == 0, "\(waiting.stderr)")

    let agent = try AgentIT.Agent(["--config", config], scratch: scratch)
    defer { if agent.process.isRunning { agent.crash() } }
    try await Self.expectWaiting(agent, port: healthPort, state: "waitingForSource", mentions: ["typo"])
    try "source = \(source)\n\(common)".write(toFile: config, atomically: true, encoding: .utf8)
    agent.signal(SIGHUP)
    try await Self.expectReplicating(agent, source: source, daemon: daemon, port: healthPort)
    #expect(try AgentIT.status(port: healthPort)["reloads"] as? Int == 1)
    #expect(try await agent.stop() == 0)
  }

  /// A problem that turns out, once the source is there, to be a config that can never work (the
  /// state directory inside the source) ends the agent with exit 64, as it would have at start.
  @Test func aConfigThatCanNeverWorkFoundWhileWaitingExits64() async throws {
    let scratch = try AgentIT.Scratch("waitbad")
    defer { scratch.remove() }
    let source = scratch.path + "/data"
    let healthPort = LocalPorts.free()
    let agent = try AgentIT.Agent(
      [
        "--source", source, "--target", "rsync://backup@127.0.0.1:9/m", "--state-dir", source + "/state",
        "--health-port", "\(healthPort)",
      ], scratch: scratch)
    defer { if agent.process.isRunning { agent.crash() } }
    try await Self.expectWaiting(agent, port: healthPort, state: "waitingForSource", mentions: [source])
    try FileManager.default.createDirectory(atPath: source, withIntermediateDirectories: true)
    #expect(try await agent.waitForExit() == 64)
    #expect(agent.stderr.contains("is inside the source"), "\(agent.stderr)")
  }

  /// Waits until the agent answers 503 in `state`, with a reason naming each of `mentions`; it keeps running.
  static func expectWaiting(_ agent: AgentIT.Agent, port: Int, state: String, mentions: [String]) async throws
  {
    let waiting = try await eventually {
      guard agent.process.isRunning else {
        throw AgentIT.Failure("the agent exited with \(agent.process.terminationStatus): \(agent.stderr)")
      }
      guard LocalPorts.canConnect(port: port) else { return false }
      return try AgentIT.status(port: port)["state"] as? String == state
    }
    #expect(
      waiting, "status: \((try? AgentIT.get("/status", port: port).body) ?? "-") stderr: \(agent.stderr)")
    let health = try AgentIT.get("/healthz", port: port)
    #expect(health.status == 503)
    let status = try AgentIT.status(port: port)
    #expect(status["healthy"] as? Bool == false)
    for word in mentions {
      #expect(health.body.contains(word), "/healthz: \(health.body)")
      #expect((status["lastError"] as? String ?? "").contains(word), "/status: \(status)")
    }
    #expect(agent.process.isRunning, "the agent exited: \(agent.stderr)")
  }

  /// Waits until the agent replicated `source` completely and says it is healthy.
  static func expectReplicating(_ agent: AgentIT.Agent, source: String, daemon: RsyncDaemon, port: Int)
    async throws
  {
    let converged = try await eventually {
      try treeDifferences(source, daemon.backup).isEmpty && AgentIT.get("/healthz", port: port).status == 200
    }
    #expect(
      converged,
      "diff: \((try? treeDifferences(source, daemon.backup)) ?? "?") stderr: \(agent.stderr)")
    try "later".write(toFile: source + "/later.txt", atomically: false, encoding: .utf8)
    let arrived = try await eventually {
      FileManager.default.fileExists(atPath: daemon.backup + "/later.txt")
    }
    let stuck =
      arrived
      ? ""
      : "status: \((try? AgentIT.get("/status", port: port).body) ?? "-")\nthreads:\n"
        + AgentIT.threadDump(pid: agent.pid)
    #expect(arrived, "a change after the start is replicated too: \(agent.stderr)\n\(stuck)")
  }
}
