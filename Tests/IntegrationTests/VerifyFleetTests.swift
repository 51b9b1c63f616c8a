import FleetCore
import FleetTestSupport
import Foundation
import Testing

extension ProvisionFleetTests {
  /// `fleetsync verify` on a real fleet after `up`: a backup file rewritten with the same size and
  /// mtime (only a checksum sees it) is reported with exit 2, `--repair` sends it back (keeping the
  /// altered copy as a version), and verify is clean after; versions on the backup are not extra.
  @Test func verifyFindsAChecksumOnlyChangeOnTheBackupAndRepairFixesIt() throws {
    let setup = try TwoNodeFleet("verify", directoryOptions: #", excludes: ["*.tmp"]"#)
    defer { setup.tearDown() }
    let (fleet, backup, source, inv) = (setup.fleet, setup.backup, setup.source, setup.inventory)
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
