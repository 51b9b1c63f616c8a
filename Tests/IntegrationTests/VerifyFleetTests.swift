import FleetCore
import FleetTestSupport
import Foundation
import Testing

extension ProvisionFleetTests {
  /// `fleetsync verify` on a real fleet after `up`: a backup file rewritten with the same size and
  /// mtime (only a checksum sees it) is reported with exit 2, `--repair` sends it back (keeping the
  /// altered copy as a version), and verify is clean after; versions on the backup are not extra.
  @Test func verifyFindsAChecksumOnlyChangeOnTheBackupAndRepairFixesIt() throws {
    let fleet = try TestFleet.up(id: Self.fleetID, nodes: 2)
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
    let (backup, source) = (fleet.nodes[0], fleet.nodes[1])
    let dir = NSTemporaryDirectory() + "fleetsync-verify-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let inv = dir + "/fleet.yaml"
    try """
    defaults:
      ssh:
        identity: \(fleet.clientKey)
        known_hosts: \(fleet.knownHosts)
        connect_timeout: 30
      watch:
        batch_delay_ms: 50
    backups:
      bk1:
        address: \(backup.address)
        daemons:
          main:
            modules:
              s1-a: /srv/backup/s1/a
    sources:
      s1:
        address: \(source.address)
        directories:
          a: { path: /srv/data/a, to: [bk1/s1-a], excludes: ["*.tmp"] }

    """.write(toFile: inv, atomically: true, encoding: .utf8)
    _ = try fleet.run(
      on: source,
      "mkdir -p /srv/data/a/sub && echo seed > /srv/data/a/seed && echo 'precious data' > '/srv/data/a/sub/in space.txt'"
        + " && echo scratch > /srv/data/a/skip.tmp")
    let up = try CLI.run("fleetsync", ["up", "-i", inv])
    try #require(up.status == 0, "up failed:\n\(up.stdout)\n\(up.stderr)")
    let module = "/srv/backup/s1/a"
    try waitForBlocking("the tree on the backup") {
      try fleet.run(on: backup, "grep -q precious '\(module)/sub/in space.txt'").status == 0
    }
    let clean = try CLI.run("fleetsync", ["verify", "-i", inv])
    #expect(clean.status == 0, "\(clean.stdout)\(clean.stderr)")
    #expect(clean.stdout.contains("s1:/srv/data/a → rsync://"), "\(clean.stdout)")
    #expect(clean.stdout.contains("2 compared, 0 differing, 0 missing, 0 extra"), "\(clean.stdout)")

    // Same size, same mtime: only a checksum sees it. A version on the backup (the daemon's, as the
    // daemon writes them) is not extra.
    _ = try fleet.run(
      on: backup,
      """
      f='\(module)/sub/in space.txt'; t=$(stat -c %y "$f"); echo 'PRECIOUS DATA' > "$f"; touch -d "$t" "$f"
      mkdir -p \(module)/.fleetsync-versions/2026-11-28T00-05-01.123Z && echo old > \(module)/.fleetsync-versions/2026-11-28T00-05-01.123Z/seed
      chown -R nobody:nogroup \(module)/.fleetsync-versions
      """)
    let drift = try CLI.run("fleetsync", ["verify", "-i", inv, "--limit", "s1:/srv/data/a"])
    #expect(drift.status == 2, "drift exits 2: \(drift.stdout)\(drift.stderr)")
    #expect(drift.stdout.contains("2 compared, 1 differing, 0 missing, 0 extra"), "\(drift.stdout)")
    #expect(drift.stdout.contains("differing: sub/in space.txt"), "\(drift.stdout)")
    #expect(drift.stdout.contains("--repair"), "says how to repair: \(drift.stdout)")
    let json = try CLI.run("fleetsync", ["verify", "-i", inv, "--json"])
    #expect(json.stdout.contains(#""differingPaths":["sub/in space.txt"]"#), "\(json.stdout)")

    let repair = try CLI.run("fleetsync", ["verify", "-i", inv, "--repair"])
    #expect(repair.status == 0, "\(repair.stdout)\(repair.stderr)")
    #expect(repair.stdout.contains("repaired"), "\(repair.stdout)")
    #expect(try fleet.run(on: backup, "grep -q 'precious data' '\(module)/sub/in space.txt'").status == 0)
    #expect(
      try fleet.run(on: backup, "grep -qs 'PRECIOUS DATA' \(module)/.fleetsync-versions/*/sub/'in space.txt'")
        .status == 0, "the altered copy is kept as a version")
    let after = try CLI.run("fleetsync", ["verify", "-i", inv])
    #expect(after.status == 0, "\(after.stdout)\(after.stderr)")
    #expect(after.stdout.contains("verify: ok=1 changed=0 failed=0"), "\(after.stdout)")
    // 2 of the 3 files are picked; the excluded skip.tmp, when picked, is not compared.
    let sample = try CLI.run("fleetsync", ["verify", "-i", inv, "--sample", "50"])
    #expect(sample.status == 0, "\(sample.stdout)\(sample.stderr)")
    #expect(
      sample.stdout.contains("(a 50% sample)"), "\(sample.stdout)")
    let bad = try CLI.run("fleetsync", ["verify", "-i", inv, "--sample", "5", "--repair"])
    #expect(sample.stdout.contains("1 compared") || sample.stdout.contains("2 compared"), "\(sample.stdout)")
    #expect(bad.status == 64, "a repair from a sample is a usage error: \(bad.stderr)")

    let down = try CLI.run("fleetsync", ["down", "-i", inv])
    #expect(down.status == 0, "\(down.stdout)\(down.stderr)")
  }
}
