import FleetTestSupport
import FleetWatch
import Foundation
import Testing

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// Exit 23 against a real rsync daemon and the real agent: a path the backup refuses is retried on
/// its own and reported while the rest flows, a lag over `max-lag` is unhealthy, and clearing the
/// cause heals both.
///
/// The obstacle fails for a root sender too: the daemon writes as `nobody` (as provisioned daemons
/// do) and the backup holds a directory `blocked` owned by root, mode 755, where the source has
/// `blocked/f`. The receiver cannot create the file in it (rsync: `mkstemp "blocked/.f.XXXXXX"
/// failed: Permission denied`, exit 23); giving the directory to `nobody` clears it.
@Suite(
  "Exit 23: failing paths", .serialized, .dependsOnInotifyLimits,
  .enabled(if: AgentIT.canRun && getuid() == 0, "needs root, /usr/bin/rsync and the built binary"))
struct FailingPathTests {
  @Test func aPathTheBackupRefusesIsQuarantinedReportedAndHealsWhileTheRestFlows() async throws {
    let daemon = try RsyncDaemon(runAs: "nobody")
    let scratch = try AgentIT.Scratch("failing-path")
    defer {
      daemon.stop()
      scratch.remove()
    }
    let source = try scratch.dir("source")
    try FileManager.default.createDirectory(atPath: source + "/blocked", withIntermediateDirectories: true)
    try "precious".write(toFile: source + "/blocked/f", atomically: false, encoding: .utf8)
    try "fine".write(toFile: source + "/fine.txt", atomically: false, encoding: .utf8)
    let obstacle = daemon.backup + "/blocked"
    try FileManager.default.createDirectory(atPath: obstacle, withIntermediateDirectories: false)
    chmod(obstacle, 0o755)  // root's: the daemon (nobody) cannot write into it
    let healthPort = LocalPorts.free()
    let config = try scratch.file(
      "w.conf",
      """
      source = \(source)
      target = \(daemon.target.url)
      password-file = \(try daemon.passwordFile(in: scratch))
      state-dir = \(scratch.path)/state
      health-port = \(healthPort)
      batch-delay = 50
      retry-max = 2
      max-lag = 3

      """)
    let agent = try AgentIT.Agent(["--config", config], scratch: scratch)
    func status() -> [String: Any] { (try? AgentIT.status(port: healthPort)) ?? [:] }
    func body() -> String { (try? AgentIT.get("/status", port: healthPort).body) ?? "-" }

    // Reported: the count, and the path with rsync's error.
    let reported = try await eventually {
      let paths = status()["failingPaths"] as? [[String: Any]] ?? []
      return (status()["failingPathCount"] as? Int ?? 0) >= 1
        && paths.contains { ($0["path"] as? String ?? "").hasPrefix("blocked") && $0["error"] is String }
    }
    #expect(reported, "status: \(body()) stderr: \(agent.stderr)")

    // The rest flows meanwhile, the initial files and a later one.
    try "later".write(toFile: source + "/later.txt", atomically: false, encoding: .utf8)
    let flowed = try await eventually {
      FileManager.default.fileExists(atPath: daemon.backup + "/later.txt")
        && FileManager.default.fileExists(atPath: daemon.backup + "/fine.txt")
    }
    #expect(flowed, "status: \(body())")
    #expect(!FileManager.default.fileExists(atPath: obstacle + "/f"))

    // Held back longer than max-lag: unhealthy, saying why.
    let unhealthy = try await eventually { (try? AgentIT.get("/healthz", port: healthPort).status) == 503 }
    #expect(unhealthy, "status: \(body())")
    let verdict = try AgentIT.get("/healthz", port: healthPort).body
    #expect(verdict.contains("max-lag") && verdict.contains("blocked"), "\(verdict)")
    #expect(status()["healthy"] as? Bool == false)

    // Clearing the cause: the path arrives on a retry of its own, and all is well again.
    guard let nobody = getpwnam("nobody") else { throw AgentIT.Failure("no user nobody") }
    chown(obstacle, nobody.pointee.pw_uid, nobody.pointee.pw_gid)
    let healed = try await eventually {
      (try? AgentIT.get("/healthz", port: healthPort).status) == 200
        && status()["failingPathCount"] as? Int == 0
        && (try? String(contentsOfFile: obstacle + "/f", encoding: .utf8)) == "precious"
    }
    #expect(healed, "status: \(body()) stderr: \(agent.stderr)")
    #expect(agent.stderr.contains("a path did not reach the backup"), "\(agent.stderr)")
    #expect(try await agent.stop() == 0)
  }
}
