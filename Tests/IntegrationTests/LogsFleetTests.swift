import FleetTestSupport
import Foundation
import Testing

#if canImport(Glibc)
  import Glibc
#endif

extension ProvisionFleetTests {
  /// `fleetsync logs` (issue 11) on real hosts: a watcher's log from the journal (systemd) or its
  /// log file, a daemon's log file, an unknown instance refused, and `-f` showing what comes after.
  @Test(arguments: [false, true])
  func logsShowsAnInstancesLogAndFollowsIt(systemd: Bool) throws {
    guard !systemd || TestFleet.systemdSupported else { return }
    let setup = try TwoNodeFleet("logs", systemd: systemd)
    defer { setup.tearDown() }
    let fleetsync = setup.fleetsync
    _ = try setup.fleet.run(on: setup.source, "mkdir -p /srv/data/a")
    let up = try fleetsync(["up"])
    try #require(up.status == 0, "\(up.stdout)\(up.stderr)")
    _ = try setup.fleet.run(on: setup.source, "echo x > /srv/data/a/x")
    try waitForBlocking("x on the backup") {
      try setup.fleet.run(on: setup.backup, "test -f /srv/backup/s1/a/x").status == 0
    }

    let watcher = try fleetsync(["logs", "s1", "a", "-n", "50"])
    #expect(watcher.status == 0, "\(watcher.stderr)")
    #expect(watcher.stdout.contains("health endpoint listening"), "\(watcher.stdout)")
    let daemon = try fleetsync(["logs", "bk1"])
    #expect(daemon.status == 0 && daemon.stdout.contains("s1-a"), "\(daemon.stdout)\(daemon.stderr)")
    let unknown = try fleetsync(["logs", "s1", "nope"])
    #expect(unknown.status == 64 && unknown.stderr.contains("watch@a:bk1:s1-a"), "\(unknown.stderr)")

    // -f: a restart of the watcher logs its start again, and the follower shows it.
    let out = NSTemporaryDirectory() + "logs-\(UUID().uuidString).txt"
    _ = FileManager.default.createFile(atPath: out, contents: nil)
    defer { try? FileManager.default.removeItem(atPath: out) }
    let follower = Process()
    follower.executableURL = URL(fileURLWithPath: CLI.binDir + "/fleetsync")
    follower.arguments = ["logs", "s1", "watch@a:bk1:s1-a", "-n", "1", "-f", "-i", setup.inventory]
    follower.standardOutput = FileHandle(forWritingAtPath: out)
    try follower.run()
    defer { if follower.isRunning { kill(follower.processIdentifier, SIGKILL) } }
    func shown() -> String { (try? String(contentsOfFile: out, encoding: .utf8)) ?? "" }
    try waitForBlocking("the follower's first read") { !shown().isEmpty }
    let unit = "'fleetsync-watch@a:bk1:s1-a.service'"
    let pidFile = "'/run/fleetsync/watch-a:bk1:s1-a.pid'"
    _ = try setup.fleet.run(
      on: setup.source,
      systemd ? "systemctl restart \(unit)" : "kill \"$(cat \(pidFile))\"")
    if !systemd { _ = try fleetsync(["heal"]) }
    try waitForBlocking("the restart in the followed log") {
      shown().contains("health endpoint listening")
    }
    follower.terminate()

    // status --watch off a terminal: one reading after another, with --json one document per line.
    let readings = NSTemporaryDirectory() + "status-watch-\(UUID().uuidString).txt"
    _ = FileManager.default.createFile(atPath: readings, contents: nil)
    defer { try? FileManager.default.removeItem(atPath: readings) }
    let statusWatch = Process()
    statusWatch.executableURL = URL(fileURLWithPath: CLI.binDir + "/fleetsync")
    statusWatch.arguments = ["status", "--watch", "--json", "--interval", "0.5", "-i", setup.inventory]
    statusWatch.standardOutput = FileHandle(forWritingAtPath: readings)
    try statusWatch.run()
    defer { if statusWatch.isRunning { kill(statusWatch.processIdentifier, SIGKILL) } }
    func lines() -> [String] {
      ((try? String(contentsOfFile: readings, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }
    try waitForBlocking("two readings") { lines().count >= 2 }
    #expect(statusWatch.isRunning, "--watch keeps reading")
    for line in lines().prefix(2) {
      let document = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
      #expect((document?["hosts"] as? [Any])?.count == 2, "\(line)")
    }
    statusWatch.terminate()
  }
}
