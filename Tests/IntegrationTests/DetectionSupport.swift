import FleetTestSupport
import Foundation
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// The two-node fleet of ``TwoNodeFleet`` set up with `fleetsync up`, and what the detection tests
/// ask of it: the instances' pids (from systemd or their pid files: a node without systemd shares
/// the machine's pid namespace with other tests' instances), `fleetsync` runs, files that must arrive.
final class DetectionFleet {
  let setup: TwoNodeFleet
  let systemd: Bool
  static let instance = "a:bk1:s1-a"
  static let watcherUnit = "'fleetsync-watch@a:bk1:s1-a.service'"
  static let daemonUnit = "'fleetsync-rsyncd@main.service'"
  static let watcherPidFile = "'/run/fleetsync/watch-a:bk1:s1-a.pid'"
  static let daemonPidFile = "/run/fleetsync/rsyncd-main.pid"
  static let watcherLog = "'/var/log/fleetsync/watch-a:bk1:s1-a.log'"

  var fleet: TestFleet { setup.fleet }
  var source: TestFleet.Node { setup.source }
  var backup: TestFleet.Node { setup.backup }

  /// Boots the nodes (with systemd or not), runs `up` and waits for a first file on the backup.
  init(_ label: String, systemd: Bool) throws {
    setup = try TwoNodeFleet(label, systemd: systemd)
    self.systemd = systemd
    do {
      try on(source, "mkdir -p /srv/data/a")
      let up = try fleetsync(["up"])
      try #require(up.status == 0, "\(up.stdout)\(up.stderr)")
      try arrives("first")
    } catch {
      setup.tearDown()
      throw error
    }
  }

  func tearDown() { setup.tearDown() }

  /// Rewrites the inventory with SSH connect timeout `seconds` (the fleet tests' 30 s is for `up` on a
  /// loaded machine; 10 s is the default): how long a pass waits for a host that does not answer.
  func useConnectTimeout(_ seconds: Int) throws {
    let text = try String(contentsOfFile: setup.inventory, encoding: .utf8)
    try #require(text.contains("connect_timeout: 30"))
    try text.replacingOccurrences(of: "connect_timeout: 30", with: "connect_timeout: \(seconds)")
      .write(toFile: setup.inventory, atomically: true, encoding: .utf8)
  }

  /// Runs `fleetsync ARGS -i INVENTORY`.
  func fleetsync(_ args: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
    try setup.fleetsync(args)
  }

  /// Runs `command` on `node` and returns its output, trimmed; it must succeed.
  @discardableResult
  func on(_ node: TestFleet.Node, _ command: String) throws -> String {
    try setup.on(node, command)
  }

  /// The watcher's process id; empty when none runs.
  func watcherPid() throws -> String {
    try fleet.run(
      on: source,
      systemd
        ? "p=$(systemctl show -p MainPID --value \(Self.watcherUnit)); [ \"$p\" = 0 ] || echo $p"
        : "pgrep -P \"$(cat \(Self.watcherPidFile) 2>/dev/null)\" -f '[f]leetsync-watch run' | head -n 1"
    ).output.trimmingCharacters(in: .whitespacesAndNewlines)
  }

  /// The rsync daemon's process id; empty when none runs.
  func daemonPid() throws -> String {
    try fleet.run(
      on: backup,
      systemd
        ? "p=$(systemctl show -p MainPID --value \(Self.daemonUnit)); [ \"$p\" = 0 ] || echo $p"
        : "p=$(cat \(Self.daemonPidFile) 2>/dev/null) && kill -0 \"$p\" 2>/dev/null && echo $p"
    ).output.trimmingCharacters(in: .whitespacesAndNewlines)
  }

  /// How often systemd restarted the watcher by itself (systemd nodes).
  func systemdRestarts() throws -> String {
    try on(source, "systemctl show -p NRestarts --value \(Self.watcherUnit)")
  }

  /// The watcher's log: the journal under systemd, else its log file (with its supervisor's lines).
  func watcherLog() throws -> String {
    try fleet.run(
      on: source,
      systemd ? "journalctl --no-pager -o cat -u \(Self.watcherUnit)" : "cat \(Self.watcherLog)"
    ).output
  }

  /// Waits until the process `pid` is gone and another runs in its place (found by `pidOf`).
  func waitReplaced(_ what: String, _ pid: String, _ pidOf: () throws -> String) throws {
    try waitForBlocking("\(what) replaced") {
      let now = try pidOf()
      return !now.isEmpty && now != pid
    }
  }

  /// Writes `name` on the source and waits until the backup has it.
  func arrives(_ name: String) throws {
    try on(source, "echo \(name) > /srv/data/a/\(name)")
    try waitForBlocking("\(name) on the backup") {
      try fleet.run(on: backup, "test -f /srv/backup/s1/a/\(name)").status == 0
    }
  }

  /// Waits until `status` exits 0: every instance healthy.
  func waitAllHealthy() throws {
    var last = ""
    let healthy = try eventuallyBlocking {
      let status = try fleetsync(["status"])
      last = status.stdout + status.stderr
      return status.status == 0
    }
    #expect(healthy, "\(last)")
  }
}

/// A running `fleetsync supervise --interval 1` over a fleet's inventory, its log in a file and its
/// endpoint on a free local port; ``stop()`` ends it with SIGTERM.
final class SuperviseRun {
  let process = Process()
  let port = LocalPorts.free()
  let logPath = NSTemporaryDirectory() + "supervise-\(UUID().uuidString).log"

  init(inventory: String, deadline: Int = 20) throws {
    _ = FileManager.default.createFile(atPath: logPath, contents: nil)
    process.executableURL = URL(fileURLWithPath: CLI.binDir + "/fleetsync")
    process.arguments = [
      "supervise", "-i", inventory, "--interval", "1", "--deadline", "\(deadline)", "--metrics-port",
      "\(port)",
    ]
    process.standardOutput = FileHandle(forWritingAtPath: logPath)
    process.standardError = FileHandle(forWritingAtPath: logPath)
    try process.run()
    try waitForBlocking("a supervise pass on /metrics") { self.metrics().contains("passes_total") }
  }

  deinit {
    if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    try? FileManager.default.removeItem(atPath: logPath)
  }

  /// Its log so far.
  func log() -> String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

  /// Its `/metrics`; empty when it does not answer.
  func metrics() -> String { (try? AgentIT.get("/metrics", port: port).body) ?? "" }

  /// The value of the metric line that starts with `prefix` (name and labels), 0 when absent.
  func value(_ prefix: String) -> Double {
    let line = metrics().split(separator: "\n").first { $0.hasPrefix(prefix + " ") }
    return line.flatMap { Double($0.split(separator: " ").last ?? "") } ?? 0
  }

  /// How many starts, restarts or leaves of `instance` on `host` it has counted.
  func actions(_ host: String, _ instance: String, _ action: String) -> Double {
    value(#"fleetsync_supervise_actions_total{host="\#(host)",instance="\#(instance)",action="\#(action)"}"#)
  }

  /// The outcome of `host` in its last pass (`/status`), nil before it has one.
  func outcome(_ host: String) -> String? {
    guard let body = try? AgentIT.get("/status", port: port).body,
      let pass = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any],
      let hosts = pass["hosts"] as? [[String: Any]]
    else { return nil }
    return hosts.first { $0["host"] as? String == host }?["outcome"] as? String
  }

  /// Ends it with SIGTERM; it must exit 0.
  func stop() throws {
    process.terminate()
    try waitForBlocking("supervise exits on SIGTERM") { !self.process.isRunning }
    #expect(process.terminationStatus == 0, "\(log())")
  }
}
