import FleetTestSupport
import Foundation
import Testing

/// Versions on a real fleet after `fleetsync up` with the default `keep_versions` (7 days): a file
/// changed on a source leaves a version on its backup node, the backup node's prune timer runs, and
/// its prune script removes a version only once it is older than the retention, and none while a
/// hold marker exists. Called by ``ProvisionFleetTests`` once its fleet replicates.
enum VersionsFleetChecks {
  static func check(
    _ fleet: TestFleet, inventory: String, source: TestFleet.Node, backup: TestFleet.Node,
    withoutSystemd: TestFleet.Node, sourceLocation: SourceLocation = #_sourceLocation
  ) throws {
    try checkCron(fleet, on: withoutSystemd, sourceLocation: sourceLocation)
    let versions = "/srv/backup/s1/a/.fleetsync-versions"
    _ = try fleet.run(on: source, "echo changed > /srv/data/a/new-0.txt")
    try waitForBlocking("the replaced new-0.txt kept as a version on \(backup.name)") {
      try fleet.run(on: backup, "grep -qx hello-0 \(versions)/*/new-0.txt").status == 0
    }
    if backup.systemd {
      let timer = try fleet.run(on: backup, "systemctl is-active fleetsync-prune@main.timer").output
      #expect(timer.hasPrefix("active"), "the prune timer: \(timer)", sourceLocation: sourceLocation)
      let run = try fleet.run(
        on: backup,
        "systemctl start fleetsync-prune@main.service && systemctl show -p Result --value fleetsync-prune@main.service"
      )
      #expect(
        run.status == 0 && run.output.hasPrefix("success"), "\(run.output)", sourceLocation: sourceLocation)
      // That run measured the modules: `fleetsync status` shows their sizes.
      let status = try CLI.run("fleetsync", ["status", "-i", inventory])
      let sizes = status.stdout.split(separator: "\n").first { $0.contains("/srv/backup/s1/a ") }
      #expect(
        status.stdout.contains("bk1 modules (measured ") && sizes?.contains(" mirror ") == true
          && sizes?.contains(" versions ") == true, "\(status.stdout)", sourceLocation: sourceLocation)
    }
    let prune = "/var/lib/fleetsync/bin/fleetsync-prune /etc/fleetsync/rsyncd/main.versions"
    let inEightDays = "FLEETSYNC_NOW=$(( $(date +%s) + 8 * 86400 ))"
    let kept = try fleet.run(on: backup, "FLEETSYNC_NOW=$(( $(date +%s) + 6 * 86400 )) \(prune)")
    #expect(kept.status == 0, "\(kept.output)", sourceLocation: sourceLocation)
    #expect(try fleet.run(on: backup, "ls \(versions)/*/new-0.txt").status == 0, "within 7 days: kept")
    _ = try fleet.run(on: backup, "touch \(versions)/.hold-a:bk1:s1-a")
    let held = try fleet.run(on: backup, "\(inEightDays) \(prune)")
    #expect(held.output.contains("held by"), "\(held.output)", sourceLocation: sourceLocation)
    #expect(try fleet.run(on: backup, "ls \(versions)/*/new-0.txt").status == 0, "held: kept")
    _ = try fleet.run(on: backup, "rm \(versions)/.hold-a:bk1:s1-a")
    let expired = try fleet.run(on: backup, "\(inEightDays) \(prune)")
    #expect(
      expired.output.contains("removed \(versions)/"), "\(expired.output)", sourceLocation: sourceLocation)
    #expect(try fleet.run(on: backup, "ls \(versions)/*/new-0.txt").status != 0, "expired: removed")
    #expect(
      try fleet.run(on: backup, "grep -qx changed /srv/backup/s1/a/new-0.txt").status == 0, "mirror kept")
  }

  /// A backup node without systemd prunes from cron: the entry's command runs and measures.
  static func checkCron(_ fleet: TestFleet, on node: TestFleet.Node, sourceLocation: SourceLocation) throws {
    guard !node.systemd else { return }
    let entry = try fleet.run(on: node, "grep -v '^#' /etc/cron.d/fleetsync-prune | grep .").output
    let prefix = "17 * * * * root "
    #expect(entry.hasPrefix(prefix), "\(entry)", sourceLocation: sourceLocation)
    let ran = try fleet.run(on: node, String(entry.dropFirst(prefix.count)))
    #expect(ran.status == 0, "\(ran.output)", sourceLocation: sourceLocation)
    let log = try fleet.run(on: node, "cat /var/log/fleetsync/prune.log; cat /run/fleetsync/sizes/main")
      .output
    #expect(log.contains("expired version(s) removed") && log.contains(" /srv/backup/s3/a"), "\(log)")
  }
}
