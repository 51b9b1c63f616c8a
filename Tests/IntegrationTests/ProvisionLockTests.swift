import FleetCore
import FleetTestSupport
import Foundation
import Synchronization
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// Issue 9 §6 on real hosts: two `up` runs at once (one checkout, then two checkouts of one
/// inventory) never interleave and leave the fleet converged; `down --delete-data` keeps a data
/// directory that existed before `up` and deletes the one `up` made.
///
/// The inventory asks for inotify limits below any machine's, so `up` never changes the machine's
/// (shared) limits and `down` has nothing to restore.
@Suite(.serialized, .dependsOnInotifyLimits, .enabled(if: TestFleet.isSupported))
struct ProvisionLockTests {
  /// A fleet id no other provisioning suite uses: the shared fleet's last fallback, which the shared
  /// fleet skips while this suite's fleet exists (ids are 0...9, and 0-4 and 9 are taken).
  static let fleetID = 8

  static func inventory(_ fleet: TestFleet) -> String {
    """
    defaults:
      ssh: { identity: \(fleet.clientKey), known_hosts: \(fleet.knownHosts), connect_timeout: 30 }
      watch: { batch_delay_ms: 50 }
    backups:
      bk:
        address: \(fleet.node(1).address)
        daemons: { main: { modules: { pre: /srv/backup/pre, new: /srv/backup/new } } }
    sources:
      s1:
        address: \(fleet.node(2).address)
        inotify: { max_user_watches: 1, max_user_instances: 1, max_queued_events: 1 }
        directories: { a: { path: /srv/data/a, to: [bk/pre] } }
      s2:
        address: \(fleet.node(3).address)
        inotify: { max_user_watches: 1, max_user_instances: 1, max_queued_events: 1 }
        directories: { a: { path: /srv/data/a, to: [bk/new] } }
    """
  }

  typealias Run = (status: Int32, stdout: String, stderr: String)

  /// Runs `fleetsync` with each argument list at the same time; results in order.
  static func atOnce(_ runs: [[String]]) -> [Run] {
    let results = Mutex<[Int: Run]>([:])
    DispatchQueue.concurrentPerform(iterations: runs.count) { index in
      let result = (try? CLI.run("fleetsync", runs[index])) ?? (-1, "", "cannot run fleetsync")
      results.withLock { $0[index] = result }
    }
    return (0..<runs.count).map { index in results.withLock { $0[index]! } }
  }

  @Test func twoUpsAtOnceAndDeleteDataKeepsWhatWasThere() throws {
    let fleet = try TestFleet.up(id: Self.fleetID, nodes: 3)
    defer { try? fleet.down() }
    let bk = fleet.node(1)
    for node in [fleet.node(2), fleet.node(3)] {
      _ = try fleet.run(on: node, "mkdir -p /srv/data/a && echo precious > /srv/data/a/keep")
    }
    // The backup host already has a directory at one module's path (prepared by its operator for
    // the daemon's user), with data in it.
    _ = try fleet.run(
      on: bk,
      "mkdir -p /srv/backup/pre && echo precious > /srv/backup/pre/keep && chown -R nobody:nogroup /srv/backup/pre"
    )
    let inode = try fleet.run(on: bk, "stat -c %i /srv/backup/pre").output
    let dir = NSTemporaryDirectory() + "fleetsync-locks-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir + "/other", withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let inv = dir + "/fleet.yaml"
    try Self.inventory(fleet).write(toFile: inv, atomically: true, encoding: .utf8)

    // A run holds the inventory's lock (here a process that says it is `fleetsync up -i held`):
    // `up` changes nothing and says who holds it; once that process is gone (killed), `up` runs.
    let holder = Process()
    holder.executableURL = URL(fileURLWithPath: "/bin/sh")
    holder.arguments = [
      "-c",
      #"exec 9>>"$0" && flock 9 && : >"$0" && printf '{"pid":%d,"host":"ops-test","command":"fleetsync up -i held","since":"2026-01-01T00:00:00Z"}' $$ >&9 && exec sleep 600"#,
      dir + "/fleet.lock",
    ]
    try holder.run()
    defer { if holder.isRunning { kill(holder.processIdentifier, SIGKILL) } }
    try waitForBlocking("the test's process holds the lock") {
      (try? String(contentsOfFile: dir + "/fleet.lock", encoding: .utf8))?.contains("ops-test") == true
    }
    let refused = try CLI.run("fleetsync", ["up", "-i", inv])
    #expect(refused.status == 1, "\(refused)")
    #expect(
      refused.stderr.contains("pid \(holder.processIdentifier) on ops-test (`fleetsync up -i held`)"),
      "\(refused.stderr)")
    #expect(try fleet.run(on: bk, "test -e /etc/fleetsync").status != 0, "a refused run touched a host")
    kill(holder.processIdentifier, SIGKILL)
    holder.waitUntilExit()

    // One checkout, two `up` at once: the second says who holds the lock, or (with --wait-lock)
    // runs after the first; either way the fleet ends converged.
    let first = Self.atOnce([["up", "-i", inv], ["up", "-i", inv]])
    let succeeded = first.filter { $0.status == 0 }
    #expect(!succeeded.isEmpty, "\(first)")
    for run in first where run.status != 0 {
      #expect(run.status == 1 && run.stderr.contains("holds the lock on this inventory"), "\(run)")
      #expect(run.stderr.contains("pid ") && run.stderr.contains("`") && run.stderr.contains("since"))
    }
    let waited = Self.atOnce([
      ["up", "-i", inv, "--wait-lock", "600"], ["up", "-i", inv, "--wait-lock", "600"],
    ])
    #expect(waited.allSatisfy { $0.status == 0 }, "\(waited)")
    let converged = try CLI.run("fleetsync", ["up", "-i", inv])
    #expect(converged.stdout.contains("up: ok=3 changed=0 failed=0"), "\(converged)")
    _ = try fleet.run(on: fleet.node(2), "echo hello > /srv/data/a/hello")
    try waitForBlocking("s1's file on the backup") {
      try fleet.run(on: bk, "grep -q hello /srv/backup/pre/hello").status == 0
    }

    // A second checkout of the inventory (another controller): a node it finds leased by another
    // run is left alone, and the message says by whom.
    let inv2 = dir + "/other/fleet.yaml"
    for name in ["fleet.yaml", "fleet.secrets", "fleet.state.json"] {
      try FileManager.default.copyItem(atPath: dir + "/" + name, toPath: dir + "/other/" + name)
    }
    _ = try fleet.run(
      on: fleet.node(2),
      #"printf 'token=by-hand\npid=4242\nhost=controller-2\ncommand=fleetsync up -i /elsewhere/fleet.yaml\nsince=2026-01-01T00:00:00Z\nexpires=%s\n' $(( $(date +%s) + 3600 )) > /run/fleetsync.lock"#
    )
    let blocked = try CLI.run("fleetsync", ["up", "-i", inv2])
    #expect(blocked.status == 2, "\(blocked)")
    #expect(blocked.stdout.contains("is being changed by another fleetsync run: pid 4242 on controller-2"))
    #expect(blocked.stdout.contains("up: ok=2 changed=0 failed=1"), "\(blocked.stdout)")
    _ = try fleet.run(on: fleet.node(2), "rm -f /run/fleetsync.lock")
    // Both checkouts at once: every host is done by one of them, the other says who holds it.
    let both = Self.atOnce([["up", "-i", inv], ["up", "-i", inv2]])
    for run in both where run.status != 0 {
      #expect(run.status == 2 && run.stdout.contains("is being changed by another fleetsync run"), "\(run)")
    }
    let after = try CLI.run("fleetsync", ["up", "-i", inv2])
    #expect(after.stdout.contains("up: ok=3 changed=0 failed=0"), "\(after)")
    for node in fleet.nodes {
      #expect(try fleet.run(on: node, "test -e /run/fleetsync.lock").status != 0, "a lease left on \(node)")
    }

    // down --delete-data: the directory up made goes, the one that was there stays, and says why.
    let down = try CLI.run("fleetsync", ["down", "-i", inv, "--delete-data"])
    #expect(down.status == 0, "\(down)")
    #expect(down.stdout.contains("note: kept /srv/backup/pre: fleetsync did not create"), "\(down.stdout)")
    #expect(try fleet.run(on: bk, "test -e /srv/backup/new").status != 0, "the directory up created is gone")
    #expect(try fleet.run(on: bk, "cat /srv/backup/pre/keep").output.contains("precious"))
    #expect(try fleet.run(on: bk, "stat -c %i /srv/backup/pre").output == inode, "the very directory")
    #expect(try fleet.run(on: bk, "test -e /var/lib/fleetsync").status != 0, "down leaves no record")
  }
}
