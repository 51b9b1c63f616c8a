import FleetTestSupport
import Foundation
import Testing

extension ProvisionFleetTests {
  /// A backup's rsync daemon killed in the middle of a transfer (a crash, a reboot): the unfinished
  /// file stays in the daemon's temp dir under `.fleetsync-versions/.tmp`, never beside the real file
  /// in the mirror, where no source holds it and `verify` would call it drift (found by the chaos
  /// run of issue 11). Once the daemon is back, the file arrives whole and `verify` finds the backup clean.
  @Test func aTransferCutShortLeavesNothingInTheMirror() throws {
    let setup = try TwoNodeFleet("unfinished")
    defer { setup.tearDown() }
    func on(_ node: TestFleet.Node, _ command: String) throws -> String {
      let out = try setup.fleet.run(on: node, command)
      try #require(out.status == 0, "on \(node): \(command): \(out.output)")
      return out.output.trimmingCharacters(in: .whitespacesAndNewlines)
    }
    _ = try on(setup.source, "mkdir -p /srv/data/a")
    let up = try CLI.run("fleetsync", ["up", "-i", setup.inventory])
    try #require(up.status == 0, "\(up.stdout)\(up.stderr)")

    // Kill the daemon (and its connection) as soon as the big file's transfer has begun writing.
    let tmp = "/srv/backup/s1/a/.fleetsync-versions/.tmp"
    // Written beside the directory and moved in: the watcher sees one whole file appear.
    _ = try on(setup.source, "head -c 400M /dev/urandom >/srv/data/big && mv /srv/data/big /srv/data/a/big")
    let killed = try on(
      setup.backup,
      "i=0; until [ -n \"$(ls -A \(tmp))\" ]; do i=$((i+1)); [ $i -gt 6000 ] && exit 1; sleep 0.01; done; "
        + "pkill -KILL --ns $$ --nslist net -f '^rsync --daemon'; ls -A \(tmp)")
    #expect(!killed.isEmpty, "an unfinished file was in the temp dir when the daemon died")
    let mirror = try on(
      setup.backup, "cd /srv/backup/s1/a && find . -path ./.fleetsync-versions -prune -o -type f -print")
    #expect(mirror.isEmpty, "nothing unfinished in the mirror: \(mirror)")

    let healed = try CLI.run("fleetsync", ["heal", "--limit", "bk1", "-i", setup.inventory])
    #expect(healed.status == 0, "heal starts the daemon: \(healed.stdout)\(healed.stderr)")
    try waitForBlocking("the big file whole on the backup") {
      let sums = try setup.fleet.run(on: setup.source, "sha256sum < /srv/data/a/big").output
      return try setup.fleet.run(on: setup.backup, "sha256sum < /srv/backup/s1/a/big").output == sums
    }
    let verify = try CLI.run("fleetsync", ["verify", "-i", setup.inventory])
    #expect(verify.status == 0, "verify finds the backup clean: \(verify.stdout)\(verify.stderr)")
  }
}
