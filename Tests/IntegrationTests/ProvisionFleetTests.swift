import FleetCore
import FleetTestSupport
import Foundation
import Synchronization
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// Runs a built product of this package (`fleetsync`, `fleetsync-watch`) and captures its output.
struct CLI {
  /// Directory of the built products: the test bundle lives beside them.
  static let binDir: String = {
    let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? ""
    var dir = URL(fileURLWithPath: exe).deletingLastPathComponent()
    // `swift test` runs `<bin>/fleetsyncPackageTests.xctest`; a bundle directory sits one level deeper.
    if !FileManager.default.fileExists(atPath: dir.appendingPathComponent("fleetsync").path) {
      dir = dir.deletingLastPathComponent()
    }
    return dir.path
  }()

  static func run(_ product: String, _ args: [String], environment: [String: String] = [:]) throws
    -> (status: Int32, stdout: String, stderr: String)
  {
    try runProcess("\(binDir)/\(product)", args, environment: environment)
  }

  /// Runs the program at `path` and captures its output.
  static func runProcess(_ path: String, _ args: [String], environment: [String: String] = [:]) throws
    -> (status: Int32, stdout: String, stderr: String)
  {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = args
    var env = ProcessInfo.processInfo.environment
    env.merge(environment) { _, new in new }
    process.environment = env
    let out = Pipe()
    let err = Pipe()
    process.standardOutput = out
    process.standardError = err
    process.standardInput = FileHandle.nullDevice
    try process.run()
    // Read both pipes concurrently so neither fills up.
    let errData = Mutex(Data())
    let reader = Thread { errData.withLock { $0 = err.fileHandleForReading.readDataToEndOfFile() } }
    reader.start()
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    while !reader.isFinished { usleep(1000) }
    return (
      process.terminationStatus, String(decoding: outData, as: UTF8.self),
      String(decoding: errData.withLock { $0 }, as: UTF8.self)
    )
  }
}

/// End-to-end: `fleetsync up/plan/down/status` against a fleet of real hosts (own fleet id, so
/// other suites' fleets are not disturbed). The nodes share the machine's inotify limits: `up`
/// raises them and `down` must restore what the test read before, so no test may change them meanwhile.
@Suite(.serialized, .dependsOnInotifyLimits, .enabled(if: TestFleet.isSupported))
struct ProvisionFleetTests {
  /// 3, or `FLEETSYNC_PROVISION_FLEET_ID` (0...9) when set: two checkouts on one machine can then run
  /// these tests at once (give each a free id; the full suite takes every id, see `TestFleet.fallbackIDs`).
  static let fleetID: Int = {
    guard let text = ProcessInfo.processInfo.environment["FLEETSYNC_PROVISION_FLEET_ID"], let id = Int(text),
      (0...9).contains(id)
    else { return 3 }
    return id
  }()

  /// Node roles: bk1 and s1 boot systemd (units path), the others do not (supervisor path).
  static let bk1 = 0
  static let bk2 = 4
  static let sourceNodes = [1, 2, 3]

  /// 3 sources with 2 directories each, 2 backup hosts. The SSH connect timeout is for a loaded
  /// machine; a cut host fails sooner, once its address stops answering ARP.
  static func inventory(
    _ fleet: TestFleet, extraDirectory: Bool = false, dropDirectory: Bool = false,
    excludes: String = "[\"*.tmp\"]"
  ) -> String {
    let n = fleet.nodes
    var text = """
      \(fleet.inventoryDefaults)
      backups:
        bk1:
          address: \(n[bk1].address)
          daemons:
            main:
              modules:
                s1-a: /srv/backup/s1/a
                s1-b: /srv/backup/s1/b
                s2-a: /srv/backup/s2/a
                s2-b: /srv/backup/s2/b
                s1-c: /srv/backup/s1/c
        bk2:
          address: \(n[bk2].address)
          daemons:
            main:
              modules:
                s3-a: /srv/backup/s3/a
                s3-b: /srv/backup/s3/b
      sources:

      """
    for (i, node) in sourceNodes.map({ n[$0] }).enumerated() {
      let s = "s\(i + 1)"
      let backup = i == 2 ? "bk2" : "bk1"
      text += """
          \(s):
            address: \(node.address)
            directories:
              a: { path: /srv/data/a, to: [\(backup)/\(s)-a], excludes: \(excludes) }

        """
      if !(dropDirectory && i == 1) {
        text += "      b: { path: /srv/data/b, to: [\(backup)/\(s)-b] }\n"
      }
      if extraDirectory && i == 0 {
        text += "      c: { path: /srv/data/c, to: [bk1/s1-c] }\n"
      }
    }
    return text
  }

  /// What a node holds that fleetsync could touch: file list of /etc, /srv, /var/lib, /var/log, /run.
  static func snapshot(_ fleet: TestFleet, _ node: TestFleet.Node) throws -> String {
    let command =
      "find /etc /srv /var/lib /var/log /run/fleetsync -xdev 2>/dev/null | grep -v -e '^/var/log/\\(lastlog\\|wtmp\\|btmp\\|journal\\)' -e '^/var/lib/\\(apt\\|dpkg\\|systemd\\)' | sort"
    return try fleet.run(on: node, command).output
  }

  /// Main pids of fleetsync's instances on a node, under either supervisor.
  static func pids(_ fleet: TestFleet, _ node: TestFleet.Node) throws -> String {
    let command = """
      { cat /run/fleetsync/*.pid 2>/dev/null
        for u in $(systemctl list-units --plain --no-legend 'fleetsync-*' 2>/dev/null | awk '{print $1}'); do
          systemctl show -p MainPID --value "$u"; done; } | sort
      """
    return try fleet.run(on: node, command).output
  }

  @Test func upPlanStatusDownOnARealFleet() throws {
    let fleet = try TestFleet.up(id: Self.fleetID, nodes: 5, systemd: TestFleet.systemdSupported ? 2 : 0)
    defer { try? fleet.down() }
    let sysctlKeys = ["max_user_watches", "max_user_instances", "max_queued_events"]
    let sysctlBefore = sysctlKeys.map {
      (try? String(contentsOfFile: "/proc/sys/fs/inotify/\($0)", encoding: .utf8)) ?? ""
    }
    defer {
      for (key, value) in zip(sysctlKeys, sysctlBefore) where !value.isEmpty {
        try? value.write(toFile: "/proc/sys/fs/inotify/\(key)", atomically: false, encoding: .utf8)
      }
    }
    let sources = Self.sourceNodes.map { fleet.nodes[$0] }
    let dir = NSTemporaryDirectory() + "fleetsync-provision-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let inv = dir + "/fleet.yaml"
    try Self.inventory(fleet).write(toFile: inv, atomically: true, encoding: .utf8)
    for node in sources {
      _ = try fleet.run(
        on: node,
        // c holds data: an empty directory added with --limit before its backup module exists would be
        // held by the source guard (nothing recorded yet, and the backup cannot be listed).
        "mkdir -p /srv/data/a /srv/data/b /srv/data/c && echo seed > /srv/data/a/seed && echo seed > /srv/data/c/seed"
      )
    }
    let before = try fleet.nodes.map { try Self.snapshot(fleet, $0) }
    var captured = ""

    // plan on a fresh fleet: everything is to be created; nothing changes.
    let plan = try CLI.run("fleetsync", ["plan", "-i", inv])
    captured += plan.stdout + plan.stderr
    try #require(plan.status == 0, "plan failed: \(plan.stderr)")
    #expect(plan.stdout.contains("create /etc/fleetsync/rsyncd/main.conf"))
    #expect(plan.stdout.contains("(secret: content not shown)"))
    #expect(
      try fleet.run(on: fleet.nodes[Self.bk1], "test -e /etc/fleetsync").status != 0,
      "plan must change nothing")

    // Something else already listens on the first health port on s2: up must not take it.
    _ = try fleet.run(
      on: sources[1],
      "setsid python3 -c 'import socket,time; s=socket.socket(); s.bind((\"127.0.0.1\", 9700)); s.listen(); time.sleep(600)' >/dev/null 2>&1 &"
    )
    try waitForBlocking("a listener on port 9700 on s2") {
      try fleet.run(on: sources[1], "ss -Hltn 'sport = :9700' | grep -q .").status == 0
    }

    // up from scratch.
    let up = try CLI.run("fleetsync", ["up", "-i", inv])
    captured += up.stdout + up.stderr
    try #require(up.status == 0, "up failed:\n\(up.stdout)\n\(up.stderr)")
    #expect(up.stdout.contains("up: ok=0 changed=5 failed=0 unreachable=0"), "\(up.stdout)")
    let s2Config = try fleet.run(on: sources[1], "cat /etc/fleetsync/watch/a:bk1:s2-a.conf").output
    #expect(s2Config.contains("health-port = 9701"), "a busy port was skipped: \(s2Config)")
    _ = try fleet.run(on: sources[1], "pkill -f 'time.sleep\\(600\\)'; true")
    var info = stat()
    #expect(stat(dir + "/fleet.secrets", &info) == 0 && info.st_mode & 0o777 == 0o600)

    // Files written on each source arrive on the right backup.
    for (i, node) in sources.enumerated() {
      _ = try fleet.run(
        on: node,
        "echo hello-\(i) > /srv/data/a/new-\(i).txt; echo x > /srv/data/a/skip.tmp; echo b > /srv/data/b/f")
      let backup = i == 2 ? fleet.nodes[Self.bk2] : fleet.nodes[Self.bk1]
      try waitForBlocking("s\(i + 1)/a on its backup") {
        try fleet.run(on: backup, "grep -q hello-\(i) /srv/backup/s\(i + 1)/a/new-\(i).txt").status == 0
          && fleet.run(
            on: backup, "test -f /srv/backup/s\(i + 1)/b/f && test -f /srv/backup/s\(i + 1)/a/seed"
          ).status == 0
      }
      #expect(
        try fleet.run(on: backup, "test -e /srv/backup/s\(i + 1)/a/skip.tmp").status != 0,
        "excluded file sent")
    }

    try VersionsFleetChecks.check(
      fleet, inventory: inv, source: sources[0], backup: fleet.nodes[Self.bk1],
      withoutSystemd: fleet.nodes[Self.bk2])

    // A second up changes nothing and restarts nothing.
    let pidsBefore = try sources.map { try Self.pids(fleet, $0) }
    let again = try CLI.run("fleetsync", ["up", "-i", inv])
    captured += again.stdout + again.stderr
    #expect(again.status == 0)
    #expect(again.stdout.contains("up: ok=5 changed=0 failed=0 unreachable=0"), "\(again.stdout)")
    #expect(try sources.map { try Self.pids(fleet, $0) } == pidsBefore, "a second up restarted something")
    #expect(pidsBefore.allSatisfy { $0.split(separator: "\n").count >= 2 }, "instances found: \(pidsBefore)")

    // status: every instance healthy.
    let status = try CLI.run("fleetsync", ["status", "-i", inv])
    captured += status.stdout + status.stderr
    #expect(status.status == 0, "\(status.stdout)\(status.stderr)")
    #expect(status.stdout.components(separatedBy: " healthy").count - 1 == 8, "\(status.stdout)")
    let json = try CLI.run("fleetsync", ["status", "-i", inv, "--json"])
    #expect(json.status == 0, "\(json.stdout)\(json.stderr)")
    let document = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
    let instances = (document?["hosts"] as? [[String: Any]] ?? []).flatMap {
      $0["instances"] as? [[String: Any]] ?? []
    }
    #expect(document?["ok"] as? Bool == true, "\(json.stdout)")
    #expect(
      instances.count == 8 && instances.allSatisfy { $0["state"] as? String == "healthy" }, "\(json.stdout)")

    // Inventory edits touch only the affected instances.
    try Self.inventory(fleet, extraDirectory: true, dropDirectory: true, excludes: "[\"*.tmp\", \"*.log\"]")
      .write(toFile: inv, atomically: true, encoding: .utf8)
    let s2bPid = try fleet.run(on: sources[1], "cat '/run/fleetsync/watch-a:bk1:s2-a.pid'").output
    let edit = try CLI.run("fleetsync", ["plan", "-i", inv])
    #expect(edit.stdout.contains("start watch@c:bk1:s1-c (new)"), "\(edit.stdout)")
    #expect(edit.stdout.contains("stop watch@b:bk1:s2-b"), "\(edit.stdout)")
    #expect(edit.stdout.contains("+exclude = *.log"), "diff shows the new exclude: \(edit.stdout)")
    #expect(!edit.stdout.contains("watch@b:bk1:s1-b"), "unchanged instance in plan: \(edit.stdout)")
    // --limit: only s1 is touched; s2's removed instance keeps running until s2 is included.
    let limited = try CLI.run("fleetsync", ["up", "-i", inv, "--limit", "s1"])
    #expect(
      limited.status == 0 && limited.stdout.contains("up: ok=0 changed=1 failed=0"), "\(limited.stdout)")
    #expect(try fleet.run(on: sources[1], "test -e /etc/fleetsync/watch/b:bk1:s2-b.conf").status == 0)
    let applied = try CLI.run("fleetsync", ["up", "-i", inv])
    captured += edit.stdout + applied.stdout + applied.stderr
    #expect(applied.status == 0, "\(applied.stdout)\(applied.stderr)")
    #expect(try fleet.run(on: sources[1], "test -e /etc/fleetsync/watch/b:bk1:s2-b.conf").status != 0)
    let s2bPidAfter = try fleet.run(on: sources[1], "cat '/run/fleetsync/watch-a:bk1:s2-a.pid'").output
    #expect(s2bPidAfter != s2bPid, "exclude change restarts that instance")
    _ = try fleet.run(on: sources[0], "echo c > /srv/data/c/new")
    try waitForBlocking("the new directory replicated") {
      try fleet.run(on: fleet.nodes[Self.bk1], "test -f /srv/backup/s1/c/new").status == 0
    }

    // A backup host cut off during up: the rest succeed, exit code says unreachable; re-run converges.
    try Self.inventory(fleet).write(toFile: inv, atomically: true, encoding: .utf8)
    try fleet.cut(fleet.nodes[Self.bk2])
    let partial = try CLI.run("fleetsync", ["up", "-i", inv, "--health-timeout", "20"])
    captured += partial.stdout + partial.stderr
    try fleet.restore(fleet.nodes[Self.bk2])
    #expect(
      partial.status == 3,
      "exit code for unreachable: \(partial.status)\n\(partial.stdout)\n\(partial.stderr)")
    #expect(partial.stdout.contains("unreachable=1"), "\(partial.stdout)")
    let converge = try CLI.run("fleetsync", ["up", "-i", inv])
    captured += converge.stdout + converge.stderr
    #expect(converge.status == 0, "\(converge.stdout)\(converge.stderr)")

    // Secrets never show: not in any output, not in any process list.
    let processes = try fleet.nodes.map { try fleet.run(on: $0, "ps -eo args").output }.joined()
    let secrets = try String(contentsOfFile: dir + "/fleet.secrets", encoding: .utf8)
      .split(separator: "\n").filter { !$0.hasPrefix("#") }.compactMap { $0.split(separator: " ").last }
    #expect(secrets.count == 7)
    for secret in secrets {
      #expect(!captured.contains(secret), "a secret appeared in fleetsync's output")
      #expect(!processes.contains(secret), "a secret appeared in a process list")
    }
    let logs = try fleet.nodes.map { try fleet.run(on: $0, "cat /var/log/fleetsync/* 2>/dev/null").output }
      .joined()
    for secret in secrets { #expect(!logs.contains(secret), "a secret appeared in a log") }

    // down: every host's file list is as before `up` (backup data is kept), sysctls restored.
    let down = try CLI.run("fleetsync", ["down", "-i", inv])
    #expect(down.status == 0, "\(down.stdout)\(down.stderr)")
    for (index, node) in fleet.nodes.enumerated() {
      let after = try Self.snapshot(fleet, node)
        .split(separator: "\n").filter { !$0.hasPrefix("/srv/backup") }.joined(separator: "\n")
      let was = before[index].split(separator: "\n").joined(separator: "\n")
      // The test's own writes under /srv/data, and the login's motd, are not fleetsync's.
      let added = Set(after.split(separator: "\n")).subtracting(was.split(separator: "\n"))
        .filter { !$0.hasPrefix("/srv/data/") && $0 != "/run/motd.dynamic" }.sorted()
      let removed = Set(was.split(separator: "\n")).subtracting(after.split(separator: "\n")).sorted()
      #expect(added.isEmpty && removed.isEmpty, "\(node.name) after down: added \(added), removed \(removed)")
    }
    #expect(
      try fleet.run(on: fleet.nodes[Self.bk1], "test -f /srv/backup/s1/a/new-0.txt").status == 0, "data kept")
    for (key, value) in zip(sysctlKeys, sysctlBefore) {
      let now = try String(contentsOfFile: "/proc/sys/fs/inotify/\(key)", encoding: .utf8)
      #expect(now == value, "fs.inotify.\(key) restored")
    }
    let downAgain = try CLI.run("fleetsync", ["down", "-i", inv])
    #expect(
      downAgain.status == 0 && downAgain.stdout.contains("down: ok=5"),
      "down is idempotent: \(downAgain.stdout)")
  }
}
