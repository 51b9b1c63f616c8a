import FleetTestSupport
import Foundation
import Testing

#if canImport(Glibc)
  import Glibc
#endif

extension ProvisionFleetTests {
  /// `fleetsync supervise` (issue 11) on real hosts: its passes find a hung watcher (SIGSTOP, with its
  /// pid-file supervisor, so that only supervise can act) and restart it; it serves /healthz and
  /// /metrics, logs the restart with its reason, and stops with exit 0 on SIGTERM.
  @Test func supervisePassesRestartAHungWatcherAndServeMetrics() throws {
    let setup = try TwoNodeFleet("supervise")
    defer { setup.tearDown() }
    _ = try setup.fleet.run(on: setup.source, "mkdir -p /srv/data/a")
    let up = try CLI.run("fleetsync", ["up", "-i", setup.inventory])
    try #require(up.status == 0, "\(up.stdout)\(up.stderr)")
    let pidFile = "'/run/fleetsync/watch-a:bk1:s1-a.pid'"
    func watcherPid() throws -> String {
      try setup.fleet.run(
        on: setup.source, "pgrep -P \"$(cat \(pidFile))\" -f '[f]leetsync-watch run' | head -n 1"
      )
      .output.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    let port = LocalPorts.free()
    let log = NSTemporaryDirectory() + "supervise-\(UUID().uuidString).log"
    _ = FileManager.default.createFile(atPath: log, contents: nil)
    defer { try? FileManager.default.removeItem(atPath: log) }
    let supervise = Process()
    supervise.executableURL = URL(fileURLWithPath: CLI.binDir + "/fleetsync")
    supervise.arguments = [
      "supervise", "-i", setup.inventory, "--interval", "1", "--deadline", "30", "--metrics-port", "\(port)",
    ]
    supervise.standardOutput = FileHandle(forWritingAtPath: log)
    supervise.standardError = FileHandle(forWritingAtPath: log)
    try supervise.run()
    defer { if supervise.isRunning { kill(supervise.processIdentifier, SIGKILL) } }
    func logText() -> String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
    try waitForBlocking("a pass on /metrics") {
      ((try? AgentIT.get("/metrics", port: port).body) ?? "").contains("fleetsync_supervise_passes_total")
    }
    #expect(try AgentIT.get("/healthz", port: port).status == 200, "\(logText())")

    let hung = try watcherPid()
    try #require(!hung.isEmpty)
    _ = try setup.fleet.run(on: setup.source, "kill -STOP \(hung) \"$(cat \(pidFile))\"")
    var metrics = ""
    var restarted = false
    try? waitForBlocking("supervise restarts the hung watcher") {
      metrics = (try? AgentIT.get("/metrics", port: port).body) ?? ""
      let now = try watcherPid()
      restarted = metrics.contains(#"action="restart""#) && now != hung && !now.isEmpty
      return restarted
    }
    #expect(restarted, "\(metrics)\n\(logText())")
    _ = try setup.fleet.run(on: setup.source, "echo after > /srv/data/a/after")
    try waitForBlocking("a file after the restart on the backup") {
      try setup.fleet.run(on: setup.backup, "test -f /srv/backup/s1/a/after").status == 0
    }
    #expect(logText().contains("restarted"), "\(logText())")
    #expect(logText().contains("does not answer its health check"), "\(logText())")

    supervise.terminate()
    try waitForBlocking("supervise exits on SIGTERM") { !supervise.isRunning }
    #expect(supervise.terminationStatus == 0, "\(logText())")
  }
}
