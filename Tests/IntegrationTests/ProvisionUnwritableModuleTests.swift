import FleetCore
import FleetTestSupport
import Foundation
import Testing

extension ProvisionFleetTests {
  /// A backup module directory that existed before `up`, owned by root while the daemon writes as
  /// `nobody`: every transfer ends with rsync exit 23. `up` must report that watcher red with the
  /// reason (it used to count the full sync's exit 23 as success and report green), `status` lists
  /// the failing paths, and once the directory is the daemon's, `up` is green and the data arrives.
  @Test func upFailsAWatcherWhoseBackupModuleIsNotWritable() throws {
    let setup = try TwoNodeFleet("unwritable")
    defer { setup.tearDown() }
    let (fleet, backup, source, inv) = (setup.fleet, setup.backup, setup.source, setup.inventory)
    let module = "/srv/backup/s1/a"
    _ = try fleet.run(on: backup, "mkdir -p \(module) && chown root:root \(module) && chmod 755 \(module)")
    _ = try fleet.run(on: source, "mkdir -p /srv/data/a && echo seed > /srv/data/a/seed")

    let up = try CLI.run("fleetsync", ["up", "-i", inv, "--health-timeout", "20"])
    #expect(up.status != 0, "up reported success:\n\(up.stdout)\n\(up.stderr)")
    let report = up.stdout + up.stderr
    #expect(report.contains("watch@a:bk1:s1-a"), "\(report)")
    // How many paths fail, and which is named first, depend on rsync's order: the file, the module root.
    #expect(
      report.contains("path cannot be sent to") || report.contains("paths cannot be sent to"),
      "the reason: \(report)")
    #expect(report.contains("uid") && report.contains("fleetsync up"), "what to do: \(report)")

    let status = try CLI.run("fleetsync", ["status", "-i", inv])
    #expect(status.stdout.contains("cannot be sent to the backup"), "\(status.stdout)")
    #expect(status.stdout.contains("seed") && status.stdout.contains("Permission denied"), "\(status.stdout)")

    // The cause cleared: the failing paths arrive on their own retries, and up is green.
    _ = try fleet.run(on: backup, "chown nobody:nogroup \(module)")
    let again = try CLI.run("fleetsync", ["up", "-i", inv, "--health-timeout", "90"])
    #expect(again.status == 0, "\(again.stdout)\(again.stderr)")
    #expect(try fleet.run(on: backup, "grep -q seed \(module)/seed").status == 0)

    let down = try CLI.run("fleetsync", ["down", "-i", inv])
    #expect(down.status == 0, "\(down.stdout)\(down.stderr)")
  }
}
