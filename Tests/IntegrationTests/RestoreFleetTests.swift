import FleetTestSupport
import Foundation
import Testing

extension ProvisionFleetTests {
  /// `fleetsync restore` and `fleetsync versions` on a fleet of real hosts: a source with a tree of
  /// several owners, modes, ACLs, xattrs, hard links, a sparse file and a symlink, backed up to a real
  /// daemon with its read-only views; versions are made by transfers with the watcher's flags (the
  /// watcher's own versions are tested in VersionsTests).
  @Suite(.enabled(if: TestFleet.isSupported))
  struct RestoreFleetTests {
    /// The provisioning suite's fleet id: its tests (this nested suite's too) run one at a time.
    static let fleetID = ProvisionFleetTests.fleetID

    static let seed = """
      mkdir -p docs/deep z/sub shared && echo report > docs/report.txt && chown 1001:1002 docs/report.txt \
      && chmod 640 docs/report.txt && echo deep > docs/deep/x && setfacl -m u:1003:rw docs/deep/x \
      && setfattr -n user.tag -v blue docs/deep/x && echo zz > z/sub/f1 && echo z2 > z/f2 && chown 1004:1004 z/f2 \
      && chmod 600 z/f2 && chown 1005:1006 z/sub && chmod 750 z/sub && setfacl -m g:1007:rx z/sub \
      && echo hl > shared/h1 && ln shared/h1 shared/h2 && truncate -s 8M sparse \
      && printf data | dd of=sparse conv=notrunc bs=1 seek=4096 2>/dev/null && ln -s docs/report.txt link \
      && echo original > o.txt && echo delete-me > y.txt \
      && find . -mindepth 1 -exec touch -h -d '5 minutes ago' {} +
      """

    @Test func restoreAtATimeBeforeOverwriteDeleteAndRmRf() throws {
      let rig = try RestoreRig.make(id: Self.fleetID, seed: Self.seed)
      defer { rig.down() }
      let original = try rig.manifest("/srv/data/a")
      let originalZ = try rig.manifest("/srv/data/a/z")
      // From here on, transfers to s1-a are the contract's (versions), not the watcher's.
      try rig.watcher("a", running: false)
      try rig.must(rig.backup, "find /srv/backup/s1/a -mindepth 1 -delete")
      try rig.contractSync("a", stamp: nil)

      let before = Moment(Date())
      Thread.sleep(forTimeInterval: 1.1)  // the changes below are written after `before` (their mtimes too)
      try rig.must(
        rig.source,
        "cd /srv/data/a && echo changed > o.txt && rm y.txt && rm -rf z && echo fresh > docs/new.txt")
      let first = Moment(before.date + 2)
      try rig.contractSync("a", stamp: first.stamp)
      try rig.must(rig.source, "echo changed-again > /srv/data/a/o.txt")
      let second = Moment(before.date + 4)
      try rig.contractSync("a", stamp: second.stamp)

      // versions lists both versions of o.txt with their sizes.
      let listed = try rig.fleetsync(["versions", "s1:/srv/data/a/o.txt", "--json"])
      try #require(listed.status == 0, "versions: \(listed.stderr)")
      let listing = try JSONDecoder().decode(Listing.self, from: Data(listed.stdout.utf8))
      #expect(listing.versions.map(\.stamp) == [first.stamp, second.stamp], "\(listed.stdout)")
      #expect(listing.versions.map(\.size) == [9, 8], "original, then changed: \(listed.stdout)")
      #expect(listing.mirror.map(\.size) == [14], "the mirror holds changed-again: \(listed.stdout)")

      // The whole directory as it was, to a new path: identical in content and metadata.
      let whole = try rig.fleetsync([
        "restore", "s1:/srv/data/a", "--at", before.iso, "--to", "s1:/srv/restored/a",
      ])
      try #require(whole.status == 0, "restore: \(whole.stdout)\(whole.stderr)")
      #expect(try rig.manifest("/srv/restored/a") == original, "\(whole.stdout)")
      #expect(
        try rig.must(rig.source, "stat -c '%a %u:%g' /srv/restored/a /srv/data/a") == "755 0:0\n755 0:0\n")
      #expect(try rig.must(rig.source, "ls -a /srv/restored /srv").contains(".fleetsync-restore") == false)

      // The same to another host of the inventory (here the backup host itself, outside its modules): it
      // reads through the module's read-only views with a lent password, removed after.
      let elsewhere = try rig.fleetsync([
        "restore", "s1:/srv/data/a", "--at", before.iso, "--to", "bk1:/srv/elsewhere/a",
      ])
      try #require(elsewhere.status == 0, "restore --to bk1: \(elsewhere.stdout)\(elsewhere.stderr)")
      #expect(try rig.manifest("/srv/elsewhere/a", on: rig.backup) == original, "\(elsewhere.stdout)")
      #expect(try rig.must(rig.backup, "ls /run/fleetsync").contains("restore-") == false)

      // A dry run lists what would change and changes nothing, not even directory times.
      let current = try rig.manifest("/srv/data/a", directoryTimes: true)
      let dry = try rig.fleetsync([
        "restore", "s1:/srv/data/a", "--at", before.stamp, "--dry-run", "--delete",
      ])
      try #require(dry.status == 0, "dry run: \(dry.stdout)\(dry.stderr)")
      #expect(dry.stdout.contains(">f.st...... o.txt"), "\(dry.stdout)")
      #expect(dry.stdout.contains("*deleting   docs/new.txt"), "\(dry.stdout)")
      #expect(
        !dry.stdout.contains(" ./\n") || dry.stdout.contains(".d..t...... ./"),
        "only the root's time differs: \(dry.stdout)")
      #expect(
        try rig.manifest("/srv/data/a", directoryTimes: true) == current, "a dry run changed the source")

      // A sub-path removed with rm -rf, and single files, in place.
      let sub = try rig.fleetsync(["restore", "s1:/srv/data/a/z", "--at", before.iso])
      try #require(sub.status == 0, "sub-path: \(sub.stdout)\(sub.stderr)")
      #expect(try rig.manifest("/srv/data/a/z") == originalZ)
      for file in ["o.txt", "y.txt"] {
        let one = try rig.fleetsync(["restore", "s1:/srv/data/a/\(file)", "--at", before.iso])
        #expect(one.status == 0, "\(file): \(one.stdout)\(one.stderr)")
      }
      #expect(try rig.must(rig.source, "cat /srv/data/a/o.txt /srv/data/a/y.txt") == "original\ndelete-me\n")
      // Nothing is deleted unless asked; with --delete the tree is exactly the original one.
      #expect(try rig.must(rig.source, "cat /srv/data/a/docs/new.txt") == "fresh\n")
      let exact = try rig.fleetsync(["restore", "s1:/srv/data/a", "--at", before.iso, "--delete"])
      try #require(exact.status == 0, "--delete: \(exact.stdout)\(exact.stderr)")
      #expect(try rig.manifest("/srv/data/a") == original)
      #expect(
        !exact.stdout.contains("accept-source"),
        "a restore into the directory keeps its inode: \(exact.stdout)"
      )

      // The whole protected directory gone: restored, made anew, and the note says how to accept it.
      try rig.must(rig.source, "rm -rf /srv/data/a")
      let anew = try rig.fleetsync(["restore", "s1:/srv/data/a", "--at", before.iso])
      try #require(anew.status == 0, "\(anew.stdout)\(anew.stderr)")
      #expect(try rig.manifest("/srv/data/a") == original)
      #expect(
        anew.stdout.contains("fleetsync resume -i INVENTORY --accept-source --directory a --limit s1"),
        "\(anew.stdout)")
    }

    /// A file rewritten many times: the hundreds of versions after `--at` come from the daemon in one
    /// read (not one connection each), and are laid over the mirror newest first, so the oldest, the
    /// content at `--at`, wins.
    @Test func hundredsOfVersionsAreReadInOneRun() throws {
      let rig = try RestoreRig.make(id: Self.fleetID, seed: "echo now > hist.txt")
      defer { rig.down() }
      try rig.watcher("a", running: false)
      try rig.contractSync("a", stamp: nil)
      let before = Moment(Date())
      let epoch = Int(before.date.timeIntervalSince1970)
      // What a transfer at each STAMP (one second apart, after `before`) kept: hist.txt as it was.
      try rig.must(
        rig.backup,
        """
        cd /srv/backup/s1/a/.fleetsync-versions && for i in $(seq 0 399); do
          d=$(date -u -d "@$((\(epoch) + 1 + i))" +%Y-%m-%dT%H-%M-%S.000Z) && mkdir "$d" && echo "v$i" > "$d/hist.txt" \
            && touch -d "@\(epoch - 60)" "$d/hist.txt" || exit 1
        done
        """)
      let log = "/var/log/fleetsync/rsyncd-main.log"
      let linesBefore = Int(
        try rig.must(rig.backup, "wc -l < \(log)").trimmingCharacters(in: .whitespacesAndNewlines))!
      let restored = try rig.fleetsync([
        "restore", "s1:/srv/data/a/hist.txt", "--at", before.iso, "--to", "s1:/srv/restored/hist.txt",
        "--json",
      ])
      try #require(restored.status == 0, "\(restored.stdout)\(restored.stderr)")
      #expect(try rig.must(rig.source, "cat /srv/restored/hist.txt") == "v0\n")
      let result = try JSONSerialization.jsonObject(with: Data(restored.stdout.utf8)) as? [String: Any]
      #expect((result?["versions"] as? [String])?.count == 400, "\(restored.stdout.prefix(400))")
      let reads = try rig.must(
        rig.backup, "tail -n +\(linesBefore + 1) \(log) | grep -c 'rsync on s1-a.versions/' || true")
      #expect(
        reads.trimmingCharacters(in: .whitespacesAndNewlines) == "2", "a listing and one read: \(reads)")
      #expect(try rig.must(rig.source, "ls /run/fleetsync").contains("restore-") == false)
    }

    @Test func refusalsChangeNothing() throws {
      let rig = try RestoreRig.make(id: Self.fleetID, seed: Self.seed)
      defer { rig.down() }
      try rig.watcher("a", running: false)
      try rig.contractSync("a", stamp: nil)
      let current = try rig.manifest("/srv/data/a", directoryTimes: true)

      // A time before every file: the tree then is empty, and --delete would empty the directory.
      let empty = try rig.fleetsync(["restore", "s1:/srv/data/a", "--at", "2000-01-01T00:00:00Z", "--delete"])
      #expect(empty.status == 64, "\(empty.stdout)\(empty.stderr)")
      #expect(empty.stderr.contains("refusing --delete"), "\(empty.stderr)")
      #expect(try rig.manifest("/srv/data/a", directoryTimes: true) == current)

      let outside = try rig.fleetsync(["restore", "s1:/etc/passwd"])
      #expect(
        outside.status == 64 && outside.stderr.contains("not under a protected directory"),
        "\(outside.stderr)")
      let badTime = try rig.fleetsync(["restore", "s1:/srv/data/a", "--at", "yesterday"])
      #expect(badTime.status == 64 && badTime.stderr.contains("ISO 8601"), "\(badTime.stderr)")
      // The source's filesystem gone from under the directory (here another one mounted over it, as an
      // unmounted data disk leaves the mountpoint's): refused, nothing written there.
      try rig.must(
        rig.source, "test -s '/var/lib/fleetsync/watch/\(RestoreRig.instance("a"))/source-identity.json'")
      try rig.must(rig.source, "mount -t tmpfs -o size=1m fleetsync-test /srv/data/a")
      let unmounted = try rig.fleetsync(["restore", "s1:/srv/data/a/o.txt"])
      let written = try rig.must(rig.source, "ls -A /srv/data/a; umount /srv/data/a")
      #expect(unmounted.status == 2 && unmounted.stderr.contains("looks unmounted"), "\(unmounted.stderr)")
      #expect(unmounted.stderr.contains("--accept-source --directory a --limit s1"), "\(unmounted.stderr)")
      #expect(written.isEmpty, "the restore wrote into the wrong filesystem: \(written)")

      // Into a backup module (the mirror itself, or a directory holding one): refused before any host is touched.
      let mirrorCopy = try rig.manifest("/srv/backup/s1/a", on: rig.backup)
      for into in ["bk1:/srv/backup/s1/a/o.txt", "bk1:/srv/backup"] {
        let module = try rig.fleetsync(["restore", "s1:/srv/data/a/o.txt", "--to", into])
        #expect(
          module.status == 64 && module.stderr.contains("backup module s1-a"), "\(into): \(module.stderr)")
      }
      #expect(try rig.manifest("/srv/backup/s1/a", on: rig.backup) == mirrorCopy)
      #expect(try rig.must(rig.backup, "ls /run/fleetsync; ls -a /srv").contains("restore-") == false)
      // A destination that cannot be written: the restore fails and leaves no stage behind.
      try rig.must(rig.source, "echo file > /srv/blocker")
      let blocked = try rig.fleetsync(["restore", "s1:/srv/data/a", "--to", "s1:/srv/blocker/a"])
      #expect(blocked.status == 2, "\(blocked.stdout)\(blocked.stderr)")
      #expect(try rig.must(rig.source, "ls -a /srv /srv/data").contains(".fleetsync-restore") == false)
      let gone = try rig.fleetsync(["restore", "s1:/srv/data/a/never-there"])
      #expect(gone.status == 64 && gone.stderr.contains("fleetsync versions"), "\(gone.stderr)")
    }

    /// A restore into a watched directory pauses its watcher: the restored file is not sent back
    /// (the mirror's copy keeps its inode), and the watcher runs again after.
    ///
    /// Both ways a watcher runs are covered: a systemd unit, and the pid-file supervisor.
    @Test(arguments: [true, false]) func restoreIntoAWatchedDirectoryIsNotEchoed(systemd: Bool) throws {
      let rig = try RestoreRig.make(id: Self.fleetID, seed: "true", systemd: systemd)
      defer { rig.down() }
      try rig.must(rig.source, "echo keep > /srv/data/b/keep")
      try waitForBlocking("keep on the backup") {
        try rig.fleet.run(on: rig.backup, "grep -q keep /srv/backup/s1/b/keep").status == 0
      }
      let inode = try rig.must(rig.backup, "stat -c %i /srv/backup/s1/b/keep")
      // b's delete limit is 0: the delete is held, so the mirror keeps the file.
      try rig.must(rig.source, "rm /srv/data/b/keep && echo 1 > /srv/data/b/marker1")
      try waitForBlocking("marker1 on the backup") {
        try rig.fleet.run(on: rig.backup, "test -f /srv/backup/s1/b/marker1").status == 0
      }
      let restored = try rig.fleetsync(["restore", "s1:/srv/data/b/keep"])
      try #require(restored.status == 0, "\(restored.stdout)\(restored.stderr)")
      #expect(restored.stdout.contains("paused and resumed: watch@b:bk1:s1-b"), "\(restored.stdout)")
      #expect(try rig.must(rig.source, "cat /srv/data/b/keep") == "keep\n")
      // The watcher runs again: a later change arrives; by then its start-up full sync is done.
      try rig.must(rig.source, "echo 2 > /srv/data/b/marker2")
      try waitForBlocking("marker2 on the backup") {
        try rig.fleet.run(on: rig.backup, "test -f /srv/backup/s1/b/marker2").status == 0
      }
      #expect(
        try rig.must(rig.backup, "stat -c %i /srv/backup/s1/b/keep") == inode, "the restore was sent back")
    }
  }

  /// A moment, spelled for `--at` (ISO 8601) and as a version STAMP.
}

struct Moment {
  let date: Date
  init(_ date: Date) { self.date = date }

  var iso: String {
    let formatter = ISO8601DateFormatter()
    formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    return formatter.string(from: date)
  }

  var stamp: String {
    let iso = self.iso
    return String(iso.prefix(11)) + iso.dropFirst(11).replacingOccurrences(of: ":", with: "-")
  }
}

/// `fleetsync versions --json`, the fields the tests read.
struct Listing: Decodable {
  struct Entry: Decodable {
    var stamp: String?
    var path: String
    var size: Int64
  }
  var mirror: [Entry]
  var versions: [Entry]
}
