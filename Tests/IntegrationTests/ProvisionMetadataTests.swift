import FleetCore
import FleetTestSupport
import Foundation
import Testing

extension ProvisionFleetTests {
  /// Issue 10 §2 on real hosts: `up` renders `fake super`, the daemon still writes as `nobody`, the
  /// backup keeps each file's owner in its `user.rsync.%stat` xattr, and a tree pulled back through
  /// the daemon as root on the source has the owners, modes, ACLs, xattrs, hard links and holes.
  @Test func provisionedBackupKeepsOwnersAndACLs() throws {
    let setup = try TwoNodeFleet("metadata")
    defer { setup.tearDown() }
    let (fleet, backup, source, inv) = (setup.fleet, setup.backup, setup.source, setup.inventory)
    _ = try fleet.run(on: source, Self.metadataTree)

    let up = try CLI.run("fleetsync", ["up", "-i", inv, "--health-timeout", "90"])
    #expect(up.status == 0, "\(up.stdout)\(up.stderr)")
    let conf = try fleet.run(on: backup, "cat /etc/fleetsync/rsyncd/main.conf").output
    #expect(conf.contains("fake super = yes") && conf.contains("uid = nobody"), "\(conf)")

    // A live change after the start (in a subdirectory: a batch does not send the root's own
    // mtime, which the next full sync sets), then the mirror as the daemon keeps it.
    _ = try fleet.run(
      on: source, "cd /srv/data/a/later && echo later > late && chown 1250:2350 late && chmod 0604 late")
    let stat = "getfattr --only-values -n user.rsync.%stat /srv/backup/s1/a/later/late 2>/dev/null"
    let arrived = try eventuallyBlocking { try fleet.run(on: backup, stat).output == "100604 0,0 1250:2350" }
    let mirror = try fleet.run(on: backup, stat + "; ls -ln /srv/backup/s1/a/later").output
    #expect(arrived, "late's owner on the backup: \(mirror)")
    let owner = try fleet.run(on: backup, "stat -c %U /srv/backup/s1/a/report.txt").output
    #expect(owner.trimmingCharacters(in: .whitespacesAndNewlines) == "nobody", "the daemon wrote as root?")

    // Pulled back on the source, as root, through the daemon, with the watcher's password file,
    // into a fresh directory each time until it equals the source: the watcher may still be
    // finishing the transfer that set `late`'s owner (rsync sets directory times last).
    let instance = "a:bk1:s1-a"
    let pull = """
      set -e
      rm -rf /srv/pulled
      t=$(sed -n 's/^target = //p' /etc/fleetsync/watch/\(instance).conf)
      rsync -aAXHS --numeric-ids --exclude=/.fleetsync-versions/ \
        --password-file=/etc/fleetsync/watch/\(instance).password "$t/" /srv/pulled/
      """
    let original = try fleet.run(on: source, Self.describe("/srv/data/a")).output
    #expect(original.contains("user:1234:rwx") && original.contains("user.origin"), "\(original)")
    var copy = ""
    let identical = try eventuallyBlocking {
      let pulled = try fleet.run(on: source, pull)
      copy =
        pulled.status == 0 ? try fleet.run(on: source, Self.describe("/srv/pulled")).output : pulled.output
      return copy == original
    }
    #expect(identical, "pulled back:\n\(copy)\nsource:\n\(original)")

    let down = try CLI.run("fleetsync", ["down", "-i", inv])
    #expect(down.status == 0, "\(down.stdout)\(down.stderr)")
  }

  /// A small tree with several owners, a setgid directory, ACLs, an xattr, a hard link, a sparse
  /// file, a symlink and an empty directory, in /srv/data/a.
  static let metadataTree = """
    set -e
    mkdir -p /srv/data/a/shared /srv/data/a/empty /srv/data/a/later && cd /srv/data/a
    printf 'numbers\\n' > report.txt && chown 1234:2345 report.txt && chmod 0640 report.txt
    setfattr -n user.origin -v finance report.txt
    chown 1235:2346 shared && chmod 2775 shared && setfacl -m u:1234:rwx,g:2345:r-x shared
    setfacl -d -m u:1234:r-x shared
    printf 'linked\\n' > shared/one && ln shared/one two && chown 1236:2346 shared/one
    truncate -s 8M sparse.img && printf end >> sparse.img && chown 1237:2347 sparse.img
    ln -s report.txt link && chown -h 1238:2348 link
    chown 1239:2349 empty && chmod 0700 empty
    """

  /// Every entry of `root` with kind, mode, owner, links, mtime, size and allocated blocks, then
  /// ACLs, xattrs and checksums: equal text for two trees means equal content and metadata.
  static func describe(_ root: String) -> String {
    """
    cd \(root) && find . -printf '%p %y %m %U:%G %n %T@ %s %b %l\\n' | sort
    getfacl -R -n -p . 2>/dev/null; getfattr -R -d -h . 2>/dev/null
    find . -type f -exec sha256sum {} + | sort
    """
  }
}
