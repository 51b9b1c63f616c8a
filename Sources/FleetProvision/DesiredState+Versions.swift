import FleetCore
import FleetInventory
import FleetWire

// Versions on backup hosts: what each module's daemon config says about them, the read-only views
// restores read through, and the pruning of expired versions (FleetWire's `VersionsLayout`).
extension Renderer {
  /// The daemon `filter` of every module (``FleetWire/VersionsLayout/daemonFilter``).
  static let versionsFilter = VersionsLayout.daemonFilter

  /// The `pre-xfer exec` line of a module that keeps versions (none for a plain mirror): every write
  /// into it must keep what it replaces (``VersionsXferCheck``).
  static func xferCheck(_ module: RsyncModule) -> String {
    module.keepVersions > 0 ? "\n  pre-xfer exec = \(Layout.xferCheckScript)" : ""
  }

  /// A module's read-only views, which `restore` and `versions` read through: `[NAME.mirror]` (the
  /// mirror without its versions) and `[NAME.versions]` (the versions).
  ///
  /// Reading through a view, a restore can never write the backup. The views admit `readers`, every
  /// host of the inventory, so `restore --to` reaches any of them, and loopback, where `status` logs
  /// in to each module (``ModuleProbe``); the module's secret, which only its senders hold (and a
  /// restore lends for its run), is what keeps other readers out.
  static func readViews(_ module: RsyncModule, daemon: RsyncDaemon, readers: [String]) -> String {
    let views = [
      (
        VersionsLayout.mirrorModuleSuffix, module.path, "mirror",
        "\n  exclude = /\(VersionsLayout.directory)/"
      ),
      (VersionsLayout.versionsModuleSuffix, "\(module.path)/\(VersionsLayout.directory)", "versions", ""),
    ]
    return views.map { suffix, path, what, exclude in
      """

      [\(module.name)\(suffix)]
        path = \(path)
        comment = \(what) of \(module.name), read only, managed by fleetsync
        read only = yes
        fake super = yes
        auth users = \(Layout.authUser(module: module.name))
        secrets file = \(Layout.rsyncdSecrets(daemon.name))
        hosts allow = \((["127.0.0.1"] + readers.filter { $0 != "127.0.0.1" }).joined(separator: " "))
        hosts deny = *\(exclude)

      """
    }.joined()
  }

  /// The module's versions directory, made by `up` (the read-only module needs it) and owned by
  /// the daemon's user; not data: `down` removes it only when it is empty, and keeps any version.
  static func versionsDirectory(_ module: RsyncModule, daemon: RsyncDaemon) -> DesiredDirectory {
    DesiredDirectory(
      path: "\(module.path)/\(VersionsLayout.directory)",
      owner: "\(daemon.settings.uid):\(daemon.settings.gid)", mode: 0o700, data: false)
  }

  /// The prune list of a daemon's modules: one `DAYS PATH` line each (the path last: it may hold blanks).
  static func pruneList(_ daemon: RsyncDaemon) -> String {
    Layout.header + daemon.modules.map { "\($0.keepVersions) \($0.path)\n" }.joined()
  }

  /// Installs the pruning of a daemon's modules: its prune list, the prune script and, with
  /// systemd, the timer template the daemon's unit starts (``Units/pruneTimer``); without, an
  /// hourly cron entry (``VersionsPrune/cron``).
  static func addPruning(_ out: inout DesiredHost, daemon: RsyncDaemon, systemd: Bool) {
    out.files.append(
      DesiredFile(
        path: Layout.pruneList(daemon.name), content: .bytes(Array(pruneList(daemon).utf8)), mode: 0o644,
        secret: false))
    guard !out.files.contains(where: { $0.path == Layout.pruneScript }) else { return }
    out.files.append(
      DesiredFile(
        path: Layout.pruneScript, content: .bytes(Array(VersionsPrune.script.utf8)), mode: 0o755,
        secret: false))
    out.files.append(
      DesiredFile(
        path: Layout.xferCheckScript, content: .bytes(Array(VersionsXferCheck.script.utf8)), mode: 0o755,
        secret: false))
    guard systemd else {
      // Made when missing (no cron installed yet); `down` removes it only when empty.
      out.directories.append(DesiredDirectory(path: "/etc/cron.d", owner: nil, mode: 0o755, data: false))
      out.files.append(
        DesiredFile(
          path: Layout.pruneCron, content: .bytes(Array(VersionsPrune.cron.utf8)), mode: 0o644, secret: false)
      )
      return
    }
    for (name, text) in [("service", Units.pruneService), ("timer", Units.pruneTimer)] {
      out.files.append(
        DesiredFile(
          path: "\(Layout.units)/fleetsync-prune@.\(name)", content: .bytes(Array(text.utf8)), mode: 0o644,
          secret: false))
    }
  }
}

extension Layout {
  /// The daemon's `pre-xfer exec` of modules that keep versions (``VersionsXferCheck``).
  public static let xferCheckScript = "/var/lib/fleetsync/bin/fleetsync-xfer-check"
  /// The script that removes expired versions on a backup host (``VersionsPrune``).
  public static let pruneScript = "/var/lib/fleetsync/bin/fleetsync-prune"
  /// The hourly prune on hosts without systemd.
  public static let pruneCron = "/etc/cron.d/fleetsync-prune"
  /// The prune list of an rsync daemon instance: `DAYS PATH` per module.
  public static func pruneList(_ instance: String) -> String { "\(etc)/rsyncd/\(instance).versions" }
}
