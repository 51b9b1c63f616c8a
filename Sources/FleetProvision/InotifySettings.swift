import FleetCore
import FleetInventory
import FleetWire

/// The `fs.inotify.*` settings a source needs, decided from what the inventory asks and what the host has.
///
/// fleetsync never lowers a value the host already has higher. Where /proc/sys is read-only (a container,
/// some VPS) it cannot set anything: the host is fine, with a warning, when its current values already
/// suffice, and fails with what to do when one is below what the inventory asks.
struct InotifySettings {
  /// The values to apply, by sysctl key (empty where /proc/sys is read-only).
  var targets: [String: Int] = [:]
  /// The drop-in file that persists them (nil where /proc/sys is read-only).
  var file: DesiredFile?
  /// Things the operator should know; the host is fine.
  var warnings: [String] = []

  /// What the inventory asks for `host`, by sysctl key. A host whose every directory is watched with
  /// fanotify (`backend: fanotify`) needs no inotify watches, so `max_user_watches` is left alone
  /// there (`auto` may still end up with inotify: the filesystem or the kernel decides).
  static func wanted(for host: SourceHost) -> [String: Int] {
    let limits = host.inotify
    var wanted = [
      "fs.inotify.max_user_instances": limits.maxUserInstances,
      "fs.inotify.max_queued_events": limits.maxQueuedEvents,
    ]
    let fanotifyOnly =
      !host.directories.isEmpty && host.directories.allSatisfy { $0.watch.backend == .fanotify }
    if !fanotifyOnly { wanted["fs.inotify.max_user_watches"] = limits.maxUserWatches }
    return wanted
  }

  /// Decides the settings for `host` from its current values and the manifest of an earlier run.
  static func decide(
    for host: SourceHost, current: [String: Int], writable: Bool, manifest: Manifest?
  ) throws -> InotifySettings {
    let wanted = wanted(for: host)
    var out = InotifySettings()
    guard writable else {
      let below = wanted.keys.sorted().filter { (current[$0] ?? 0) < wanted[$0]! }
      guard below.isEmpty else {
        let values = below.map {
          "\($0) is \(current[$0].map(String.init) ?? "unknown"), below the \(wanted[$0]!) the inventory asks"
        }
        let commands = below.map { "sysctl -w \($0)=\(wanted[$0]!)" }.joined(separator: "; ")
        throw FleetError(
          .sysctlReadOnly,
          values.joined(separator: "; ")
            + ", and /proc/sys is read-only on this host (a container?), so fleetsync cannot raise \(below.count == 1 ? "it" : "them"): "
            + "raise it where the kernel's settings are managed (on the container's host: \(commands)), "
            + "or ask for less in the inventory's inotify block")
      }
      let values = wanted.keys.sorted().map { "\($0) \(current[$0]!) ≥ \(wanted[$0]!)" }
      out.warnings.append(
        "/proc/sys is read-only on this host (a container?): the inotify limits are left as they are; they "
          + "suffice (\(values.joined(separator: ", "))), and no sysctl file is written")
      return out
    }
    var text = Layout.header
    for key in wanted.keys.sorted() {
      let base = manifest?.sysctl[key]?.previous ?? current[key] ?? 0
      let target = max(wanted[key]!, base)
      out.targets[key] = target
      text += "\(key) = \(target)\n"
    }
    out.file = DesiredFile(path: Layout.sysctl, content: .bytes(Array(text.utf8)), mode: 0o644, secret: false)
    return out
  }
}

extension FleetError.Code {
  /// A source's inotify limits are below what the inventory asks and /proc/sys cannot be written.
  public static let sysctlReadOnly = FleetError.Code("provision.sysctlReadOnly", meaning: .failed)
}
