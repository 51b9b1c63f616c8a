import FleetTestSupport
import Foundation
import Testing

/// A source and a backup host on a test fleet, provisioned by `fleetsync up` (versions, metadata and
/// the read-only views as `up` writes them), for `restore` and `versions` tests.
struct RestoreRig {
  let fleet: TestFleet
  let inventory: String
  let workDir: String
  var backup: TestFleet.Node { fleet.nodes[0] }
  var source: TestFleet.Node { fleet.nodes[1] }

  /// The watcher instance of directory `name`.
  static func instance(_ name: String) -> String { "\(name):bk1:s1-\(name)" }

  static func inventory(_ fleet: TestFleet) -> String {
    """
    \(fleet.inventoryDefaults)
    backups:
      bk1:
        address: \(fleet.nodes[0].address)
        daemons:
          main:
            modules:
              s1-a: /srv/backup/s1/a
              s1-b: /srv/backup/s1/b
    sources:
      s1:
        address: \(fleet.nodes[1].address)
        directories:
          a: { path: /srv/data/a, to: [bk1/s1-a] }
          b: { path: /srv/data/b, to: [bk1/s1-b], max_delete: 0 }

    """
  }

  /// Brings up the fleet, seeds the sources and runs `up` (which writes the daemon's versions lines
  /// and read-only views).
  ///
  /// With `systemd` (where the machine can), both nodes boot systemd; otherwise instances run
  /// under fleetsync's pid-file supervisor.
  static func make(id: Int, seed: String, systemd: Bool = true) throws -> RestoreRig {
    let fleet = try TestFleet.up(id: id, nodes: 2, systemd: systemd && TestFleet.systemdSupported ? 2 : 0)
    let dir = NSTemporaryDirectory() + "fleetsync-restore-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let rig = RestoreRig(fleet: fleet, inventory: dir + "/fleet.yaml", workDir: dir)
    try inventory(fleet).write(toFile: rig.inventory, atomically: true, encoding: .utf8)
    try rig.must(rig.source, "mkdir -p /srv/data/a /srv/data/b && cd /srv/data/a && \(seed)")
    let up = try CLI.run("fleetsync", ["up", "-i", rig.inventory])
    try #require(up.status == 0, "up failed:\n\(up.stdout)\n\(up.stderr)")
    return rig
  }

  func down() {
    _ = try? CLI.run("fleetsync", ["down", "-i", inventory])
    try? fleet.down()
    try? FileManager.default.removeItem(atPath: workDir)
  }

  /// Runs a command on a node and returns its output; throws when it fails.
  @discardableResult
  func must(_ node: TestFleet.Node, _ command: String) throws -> String {
    let out = try fleet.run(on: node, command)
    guard out.status == 0 else {
      throw RigError("on \(node): `\(command)` exited \(out.status): \(out.output)")
    }
    return out.output
  }

  /// Stops or starts the watcher of directory `name` (systemd unit, or its pid-file supervisor).
  func watcher(_ name: String, running: Bool) throws {
    let unit = "'fleetsync-watch@\(Self.instance(name)).service'"
    if source.systemd {
      try must(source, "systemctl \(running ? "start" : "stop") \(unit)")
    } else if !running {
      try must(source, "kill \"$(cat '/run/fleetsync/watch-\(Self.instance(name)).pid')\"; true")
    } else {
      throw RigError("starting a watcher without systemd is `fleetsync up`'s job")
    }
  }

  /// The module URL and password file the watcher of `name` uses, as in its config.
  func watcherTarget(_ name: String) throws -> (url: String, password: String) {
    let conf = try must(source, "cat '/etc/fleetsync/watch/\(Self.instance(name)).conf'")
    func value(_ key: String) -> String {
      conf.split(separator: "\n").first { $0.hasPrefix("\(key) =") }
        .map { String($0.dropFirst(key.count + 2)).trimmingCharacters(in: .whitespaces) } ?? ""
    }
    return (value("target"), value("password-file"))
  }

  /// A transfer as the watcher makes it: metadata flags, `--delete`, versions in `STAMP` (a new one
  /// of now when nil: the daemon refuses a write that keeps no versions).
  func contractSync(_ name: String, stamp: String?) throws {
    let (url, password) = try watcherTarget(name)
    let backup = "--backup --backup-dir=.fleetsync-versions/\(stamp ?? Moment(Date()).stamp) "
    try must(
      source,
      "rsync -aAXHS --numeric-ids --delete \(backup)--filter='P /.fleetsync-versions/' "
        + "--password-file='\(password)' /srv/data/\(name)/ '\(url)/'")
  }

  /// Content and metadata of every entry under `path`, one line each: type, mode, owner, size,
  /// mtime (not of directories, unless `directoryTimes`), link count, checksum, allocated size, link
  /// target, ACL and xattrs.
  func manifest(_ path: String, directoryTimes: Bool = false, on node: TestFleet.Node? = nil) throws -> String
  {
    let dirFormat = directoryTimes ? "%F %a %u:%g %Y" : "%F %a %u:%g"
    return try must(
      node ?? source,
      """
      cd '\(path)' && find . -mindepth 1 | LC_ALL=C sort | while IFS= read -r p; do
        if [ -L "$p" ]; then t="$(stat -c '%F %u:%g' "$p") -> $(readlink "$p")"
        elif [ -d "$p" ]; then t=$(stat -c '\(dirFormat)' "$p")
        else t="$(stat -c '%F %a %u:%g %s %Y %h' "$p") $(sha256sum < "$p" | cut -c1-16) $(du -k "$p" | cut -f1)k"; fi
        echo "$p $t acl[$(getfacl -cp "$p" 2>/dev/null | tr '\\n' ,)] xattr[$(getfattr -hd -m - "$p" 2>/dev/null | grep -v '^#' | tr '\\n' ,)]"
      done
      """)
  }

  /// `fleetsync ARGS -i INVENTORY`.
  func fleetsync(_ args: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
    try CLI.run("fleetsync", args + ["-i", inventory])
  }
}

struct RigError: Error, CustomStringConvertible {
  let description: String
  init(_ description: String) { self.description = description }
}
