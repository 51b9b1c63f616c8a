import FleetTestSupport
import FleetWatch
import Foundation
import Testing

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// The built `fleetsync-watch` against a real rsync daemon on 127.0.0.1: replication, signals,
/// health, bad input, secrets.
@Suite(
  "fleetsync-watch process", .serialized, .dependsOnInotifyLimits,
  .enabled(if: AgentIT.canRun, "needs /usr/bin/rsync and the built binary"))
struct AgentProcessTests {
  @Test func replicatesReportsAndStopsCleanlyOnSIGTERM() async throws {
    let daemon = try RsyncDaemon()
    let scratch = try AgentIT.Scratch("replicate")
    defer {
      daemon.stop()
      scratch.remove()
    }
    let source = try scratch.dir("source")
    let healthPort = LocalPorts.free()
    let agent = try AgentIT.Agent(
      [
        "--source", source, "--target", daemon.target.url, "--password-file",
        try daemon.passwordFile(in: scratch),
        "--state-dir", scratch.path + "/state", "--health-port", "\(healthPort)", "--batch-delay", "50",
      ], scratch: scratch)

    #expect(
      try await eventually { LocalPorts.canConnect(port: healthPort) }, "stderr: \(agent.stderr)")
    try FileManager.default.createDirectory(atPath: source + "/sub/deeper", withIntermediateDirectories: true)
    try "one".write(toFile: source + "/one.txt", atomically: false, encoding: .utf8)
    try "two".write(toFile: source + "/sub/two.txt", atomically: false, encoding: .utf8)
    try "three".write(toFile: source + "/sub/deeper/three.txt", atomically: false, encoding: .utf8)

    let converged = try await eventually {
      try treeDifferences(source, daemon.backup).isEmpty
        && (AgentIT.status(port: healthPort)["filesSent"] as? Int ?? 0) >= 3
    }
    #expect(
      converged, "diff: \((try? treeDifferences(source, daemon.backup)) ?? "?") stderr: \(agent.stderr)")
    #expect(try String(contentsOfFile: daemon.backup + "/sub/deeper/three.txt", encoding: .utf8) == "three")

    let status = try AgentIT.status(port: healthPort)
    #expect(status["source"] as? String == source)
    #expect(status["target"] as? String == daemon.target.url)
    #expect(status["lastSuccess"] is String)
    #expect(status["healthy"] as? Bool == true)
    #expect(try AgentIT.get("/healthz", port: healthPort).status == 200)
    let metrics = try AgentIT.get("/metrics", port: healthPort).body
    #expect(metrics.contains("fleetsync_watch_files_sent_total"))
    #expect(metrics.contains("fleetsync_watch_up 1"))

    // SIGUSR1 asks for a full sync.
    let fullSyncs = status["fullSyncs"] as? Int ?? 0
    agent.signal(SIGUSR1)
    let resynced = try await eventually {
      (try AgentIT.status(port: healthPort)["fullSyncs"] as? Int ?? 0) > fullSyncs
    }
    #expect(resynced, "\(agent.stderr)")

    #expect(try await agent.stop() == 0)
    #expect(agent.stderr.contains("stopped"))
    #expect(!agent.stderr.contains(daemon.password))
  }

  /// A relative source can never work: exit 64. (A missing, unreadable or non-directory source, or a
  /// state directory that cannot be made, may pass: see `AgentStartWaitTests`.)
  @Test func relativeSourceIsAUsageError() async throws {
    let scratch = try AgentIT.Scratch("badsource")
    defer { scratch.remove() }
    let common = ["--target", "rsync://backup@127.0.0.1:9/m", "--state-dir", scratch.path + "/state"]
    let relative = try await AgentIT.runToExit(["--source", "relative/dir"] + common, scratch: scratch)
    #expect(relative.status == 64)
    #expect(relative.stderr.contains("source must be an absolute path"), "\(relative.stderr)")
  }

  @Test(.enabled(if: getuid() != 0, "root reads every directory"))
  func unreadableSourceWaits() async throws {
    let scratch = try AgentIT.Scratch("unreadable")
    defer { scratch.remove() }
    let source = try scratch.dir("locked")
    chmod(source, 0)
    defer { chmod(source, 0o755) }
    let healthPort = LocalPorts.free()
    let agent = try AgentIT.Agent(
      [
        "--source", source, "--target", "rsync://h:9/m", "--state-dir", scratch.path + "/s", "--health-port",
        "\(healthPort)",
      ], scratch: scratch)
    try await AgentStartWaitTests.expectWaiting(
      agent, port: healthPort, state: "waitingForSource", mentions: ["not readable"])
    #expect(try await agent.stop() == 0)
  }

  @Test func groupReadablePasswordFileIsRefused() async throws {
    let scratch = try AgentIT.Scratch("pwmode")
    defer { scratch.remove() }
    let source = try scratch.dir("source")
    let password = try scratch.file("password", "secret\n", mode: 0o640)
    let result = try await AgentIT.runToExit(
      ["--source", source, "--target", "rsync://backup@127.0.0.1:9/m", "--password-file", password],
      scratch: scratch)
    #expect(result.status == 64)
    #expect(result.stderr.contains("chmod 600 \(password)"), "\(result.stderr)")
  }

  @Test func badConfigFileReportsFileAndLine() async throws {
    let scratch = try AgentIT.Scratch("badconfig")
    defer { scratch.remove() }
    let config = try scratch.file(
      "w.conf",
      """
      source = \(try scratch.dir("source"))
      target = rsync://backup@127.0.0.1:9/m
      workers = lots
      colour = blue

      """)
    let result = try await AgentIT.runToExit(["--config", config], scratch: scratch)
    #expect(result.status == 64)
    #expect(result.stderr.contains("\(config):3: workers must be a number"), "\(result.stderr)")
    #expect(result.stderr.contains("\(config):4: unknown key \"colour\""), "\(result.stderr)")
  }

  @Test func healthPortInUseExits69() async throws {
    let scratch = try AgentIT.Scratch("portinuse")
    let taken = try LocalPorts.occupy()
    defer {
      close(taken.fd)
      scratch.remove()
    }
    let result = try await AgentIT.runToExit(
      [
        "--source", try scratch.dir("source"), "--target", "rsync://backup@127.0.0.1:9/m",
        "--state-dir", scratch.path + "/state", "--health-port", "\(taken.port)",
      ], scratch: scratch)
    #expect(result.status == 69)
    #expect(
      result.stderr.contains("health port \(taken.port) on 127.0.0.1 is already in use"), "\(result.stderr)")
  }

  @Test func unreachableTargetKeepsRunningAndReportsIt() async throws {
    let scratch = try AgentIT.Scratch("unreachable")
    defer { scratch.remove() }
    let source = try scratch.dir("source")
    try "x".write(toFile: source + "/x", atomically: false, encoding: .utf8)
    let healthPort = LocalPorts.free()
    let deadPort = LocalPorts.free()
    let agent = try AgentIT.Agent(
      [
        "--source", source, "--target", "rsync://backup@127.0.0.1:\(deadPort)/m",
        "--password-file", try scratch.file("pw", "pw\n", mode: 0o600),
        "--state-dir", scratch.path + "/state", "--health-port", "\(healthPort)",
      ], scratch: scratch)
    let reported = try await eventually {
      try AgentIT.status(port: healthPort)["lastErrorKind"] as? String == "unreachable"
    }
    #expect(
      reported, "status: \((try? AgentIT.get("/status", port: healthPort).body) ?? "-") \(agent.stderr)")
    let health = try AgentIT.get("/healthz", port: healthPort)
    #expect(health.status == 503)
    #expect(agent.process.isRunning)
    #expect(try await agent.stop() == 0)
  }

  @Test func wrongPasswordIsReportedAsAuthAndNeverShown() async throws {
    let daemon = try RsyncDaemon()
    let scratch = try AgentIT.Scratch("wrongpw")
    defer {
      daemon.stop()
      scratch.remove()
    }
    let source = try scratch.dir("source")
    try "x".write(toFile: source + "/x", atomically: false, encoding: .utf8)
    let wrong = "wrong-\(UInt64.random(in: 1_000_000_000...9_999_999_999))-pw"
    let healthPort = LocalPorts.free()
    let agent = try AgentIT.Agent(
      [
        "--source", source, "--target", daemon.target.url,
        "--password-file", try daemon.passwordFile(in: scratch, wrong: wrong),
        "--state-dir", scratch.path + "/state", "--health-port", "\(healthPort)", "--log-level", "debug",
      ], scratch: scratch)
    var leaks: [String] = []
    let reported = try await eventually {
      leaks += AgentIT.commandLinesContaining(wrong)
      return try AgentIT.status(port: healthPort)["lastErrorKind"] as? String == "auth"
    }
    #expect(reported, "status: \((try? AgentIT.get("/status", port: healthPort).body) ?? "-")")
    let status = try AgentIT.status(port: healthPort)
    let message = (status["lastError"] as? String) ?? ""
    #expect(message.contains(daemon.module), "lastError should name the module: \(message)")
    let health = try AgentIT.get("/healthz", port: healthPort)
    #expect(health.status == 503)
    leaks += AgentIT.commandLinesContaining(wrong)
    #expect(try await agent.stop() == 0)
    #expect(leaks.isEmpty, "password visible in process list: \(leaks)")
    #expect(!agent.stderr.contains(wrong))
    #expect(!health.body.contains(wrong) && !message.contains(wrong))
  }

  @Test func sighupReloadsTheConfigAndKeepsTheOldOneWhenBad() async throws {
    let daemon = try RsyncDaemon()
    let scratch = try AgentIT.Scratch("reload")
    defer {
      daemon.stop()
      scratch.remove()
    }
    let source = try scratch.dir("source")
    let healthPort = LocalPorts.free()
    let base = """
      source = \(source)
      target = \(daemon.target.url)
      password-file = \(try daemon.passwordFile(in: scratch))
      state-dir = \(scratch.path)/state
      health-port = \(healthPort)
      batch-delay = 50

      """
    let config = try scratch.file("w.conf", base + "exclude = *.skip\n")
    let agent = try AgentIT.Agent(["--config", config], scratch: scratch)
    #expect(try await eventually { LocalPorts.canConnect(port: healthPort) }, "\(agent.stderr)")
    try "skip".write(toFile: source + "/a.skip", atomically: false, encoding: .utf8)
    try "keep".write(toFile: source + "/keep.txt", atomically: false, encoding: .utf8)
    #expect(
      try await eventually { FileManager.default.fileExists(atPath: daemon.backup + "/keep.txt") })
    // keep.txt was written after a.skip: once it is replicated and the engine is idle, a.skip had
    // its chance to be sent.
    #expect(try await eventually { try Self.idle(port: healthPort) }, "\(agent.stderr)")
    #expect(!FileManager.default.fileExists(atPath: daemon.backup + "/a.skip"))

    // A broken config: logged, counted, the running engine stays.
    try "source = \(source)\nworkers = none\n".write(toFile: config, atomically: true, encoding: .utf8)
    agent.signal(SIGHUP)
    #expect(
      try await eventually { try AgentIT.status(port: healthPort)["failedReloads"] as? Int == 1 })
    // The agent counts the failed reload before it logs why.
    #expect(
      try await eventually { agent.stderr.contains("\(config):2: workers must be a number") },
      "\(agent.stderr)")
    #expect(agent.process.isRunning)
    try "keep2".write(toFile: source + "/keep2.txt", atomically: false, encoding: .utf8)
    #expect(
      try await eventually { FileManager.default.fileExists(atPath: daemon.backup + "/keep2.txt") })

    // Without the exclude, the new engine sends a.skip too.
    try base.write(toFile: config, atomically: true, encoding: .utf8)
    agent.signal(SIGHUP)
    #expect(try await eventually { try AgentIT.status(port: healthPort)["reloads"] as? Int == 1 })
    let arrived = try await eventually {
      FileManager.default.fileExists(atPath: daemon.backup + "/a.skip")
    }
    #expect(arrived, "\(agent.stderr)")
    #expect(try await agent.stop() == 0)
  }

  /// A big file is in flight when the agent dies (SIGKILL, with its rsync) or is stopped (SIGTERM:
  /// exit 0, the batch finished or journaled); the next start converges to zero differences.
  @Test(arguments: [SIGKILL, SIGTERM])
  func interruptedMidTransferThenRestartConverges(signal: Int32) async throws {
    let daemon = try RsyncDaemon()
    let scratch = try AgentIT.Scratch("crash")
    defer {
      daemon.stop()
      scratch.remove()
    }
    let source = try scratch.dir("source")
    // rsync slowed to 4 MB/s, so a 40 MB file is in flight for seconds.
    let slowRsync = try scratch.file(
      "slow-rsync", "#!/bin/sh\nexec /usr/bin/rsync --bwlimit=4000 \"$@\"\n", mode: 0o755)
    let healthPort = LocalPorts.free()
    let arguments = [
      "--source", source, "--target", daemon.target.url, "--password-file",
      try daemon.passwordFile(in: scratch),
      "--state-dir", scratch.path + "/state", "--health-port", "\(healthPort)", "--rsync-path", slowRsync,
      "--batch-delay", "50",
    ]
    let first = try AgentIT.Agent(arguments, scratch: scratch)
    #expect(try await eventually { LocalPorts.canConnect(port: healthPort) }, "\(first.stderr)")
    for index in 0..<5 {
      try "small \(index)".write(toFile: source + "/small\(index).txt", atomically: false, encoding: .utf8)
    }
    var big = [UInt8](repeating: 0, count: 40 << 20)
    for index in stride(from: 0, to: big.count, by: 4096) { big[index] = UInt8.random(in: 0...255) }
    _ = FileManager.default.createFile(atPath: source + "/big.bin", contents: Data(big))

    // The transfer lasts about 10 s: it is watched for from a thread of its own and interrupted
    // there at once, so a cooperative pool busy with other tests cannot make the test miss it.
    let (pid, backup) = (first.pid, daemon.backup)
    let inFlight = try await onOwnThread {
      let seen = try eventuallyBlocking(every: .milliseconds(20)) {
        try FileManager.default.contentsOfDirectory(atPath: backup).contains { $0.hasPrefix(".big.bin.") }
      }
      if seen && signal == SIGKILL { AgentIT.crash(pid: pid) }
      if seen && signal == SIGTERM { kill(pid, SIGTERM) }
      return seen
    }
    #expect(inFlight, "the big file never started to arrive: \(first.stderr)")
    guard inFlight else { return first.crash() }
    if signal == SIGKILL {
      first.process.waitUntilExit()
      #expect(try treeDifferences(source, daemon.backup).contains("big.bin"))
    } else {
      #expect(try await first.waitForExit() == 0, "\(first.stderr)")
    }

    let second = try AgentIT.Agent(arguments, scratch: scratch)
    let converged = try await eventually {
      try treeDifferences(source, daemon.backup).isEmpty
    }
    #expect(
      converged, "diff: \((try? treeDifferences(source, daemon.backup)) ?? "?") stderr: \(second.stderr)")
    #expect(try await second.stop() == 0)
  }

  /// Whether the agent's engine has nothing queued and nothing in flight, as `/status` says.
  static func idle(port: Int) throws -> Bool {
    let status = try AgentIT.status(port: port)
    return status["queueDepth"] as? Int == 0 && status["inFlight"] as? Int == 0
  }
}
