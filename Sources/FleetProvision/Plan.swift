import FleetInventory

/// A change to one file on a node.
public struct FileChange: Sendable, Equatable {
  /// What happens to the file.
  public enum Kind: String, Sendable { case create, update, delete }
  /// Remote path.
  public var path: String
  /// Create, update or delete.
  public var kind: Kind
  /// Secret content: shown masked.
  public var secret: Bool
  /// A unified diff, filled for `plan` output (never for secrets or binaries).
  public var diff: String?
}

/// A service start, restart or stop on a node.
public struct ServiceAction: Sendable, Equatable {
  /// What happens to the service.
  public enum Kind: String, Sendable { case start, restart, stop }
  /// The instance.
  public var service: ServiceName
  /// Start, restart or stop.
  public var kind: Kind
  /// Why, for people.
  public var reason: String
}

/// A kernel setting change on a node.
public struct SysctlAction: Sendable, Equatable {
  /// `fs.inotify.max_user_watches` etc.
  public var key: String
  /// Current value.
  public var from: Int
  /// New value.
  public var to: Int
}

/// Everything `up` or `down` would change on one node, and the manifest it leaves.
public struct HostPlan: Sendable, Equatable {
  /// The host.
  public var host: HostRef
  /// Directories to create (up) or remove if empty (down).
  public var directories: [DesiredDirectory] = []
  /// File changes, in apply order.
  public var files: [FileChange] = []
  /// Service changes.
  public var services: [ServiceAction] = []
  /// Kernel settings to change.
  public var sysctl: [SysctlAction] = []
  /// Whether systemd runs the services.
  public var systemd: Bool
  /// The manifest after the change (nil: remove it, after `down`).
  public var manifest: Manifest?
  /// What `up` wants (files with content), nil for `down`.
  public var desired: DesiredHost?
  /// Whether the manifest file must be written (or, for `down`, removed).
  public var manifestChanged = false

  /// Whether nothing changes.
  public var isEmpty: Bool { files.isEmpty && services.isEmpty && sysctl.isEmpty }
}

/// Compares what is wanted with what is there.
public enum Planner {
  /// The plan that brings `facts` to `desired`.
  public static func up(desired: DesiredHost, facts: HostFacts) -> HostPlan {
    let old = facts.manifest
    var plan = HostPlan(host: desired.host, systemd: facts.systemd, desired: desired)
    plan.directories = desired.directories
    var manifest = Manifest(supervisor: facts.systemd ? "systemd" : "pidfile")
    manifest.host = desired.host.name
    let wantedPaths = Set(desired.files.map(\.path))

    for file in desired.files {
      let sha = file.sha256
      manifest.files[file.path] = Manifest.File(sha256: sha, secret: file.secret)
      switch facts.hashes[file.path] {
      case nil: plan.files.append(FileChange(path: file.path, kind: .create, secret: file.secret))
      case let present? where present != sha:
        plan.files.append(FileChange(path: file.path, kind: .update, secret: file.secret))
      default: break
      }
    }
    for (path, file) in (old?.files ?? [:]).sorted(by: { $0.key < $1.key }) where !wantedPaths.contains(path)
    {
      if facts.hashes[path] != nil {
        plan.files.append(FileChange(path: path, kind: .delete, secret: file.secret))
      }
    }

    let wantedServices = Set(desired.services.map(\.name.description))
    for (name, _) in (old?.services ?? [:]).sorted(by: { $0.key < $1.key })
    where !wantedServices.contains(name) {
      if let service = parseService(name) {
        plan.services.append(
          ServiceAction(service: service, kind: .stop, reason: "no longer in the inventory"))
      }
    }
    for service in desired.services {
      let key = service.name.description
      manifest.services[key] = Manifest.Service(port: service.port, configHash: service.configHash)
      let running = facts.running.contains(key)
      if !running {
        let why = old?.services[key] == nil ? "new" : "not running"
        plan.services.append(ServiceAction(service: service.name, kind: .start, reason: why))
      } else if old?.services[key]?.configHash != service.configHash {
        plan.services.append(
          ServiceAction(service: service.name, kind: .restart, reason: "configuration changed"))
      }
    }

    for (key, target) in desired.sysctl.sorted(by: { $0.key < $1.key }) {
      let current = facts.sysctl[key] ?? 0
      let previous = old?.sysctl[key]?.previous ?? current
      manifest.sysctl[key] = Manifest.SysctlChange(previous: previous, applied: target)
      if current != target { plan.sysctl.append(SysctlAction(key: key, from: current, to: target)) }
    }
    manifest.directories = desired.directories.filter { !$0.data }.map(\.path)
    manifest.dataDirectories = desired.directories.filter(\.data).map(\.path)
    // Keep data directories of earlier runs on record, so `down --delete-data` can still find them.
    for path in old?.dataDirectories ?? [] where !manifest.dataDirectories.contains(path) {
      manifest.dataDirectories.append(path)
    }
    plan.manifest = manifest
    // The manifest itself is bookkeeping: written when anything in it changes, not reported.
    plan.manifestChanged = old != manifest
    return plan
  }

  /// The plan that removes everything the manifest lists and restores changed settings.
  public static func down(host: HostRef, facts: HostFacts, deleteData: Bool) -> HostPlan {
    var plan = HostPlan(host: host, systemd: facts.systemd, manifest: nil)
    guard let old = facts.manifest else { return plan }
    for name in old.services.keys.sorted() {
      if let service = parseService(name) {
        plan.services.append(ServiceAction(service: service, kind: .stop, reason: "fleetsync down"))
      }
    }
    for (path, file) in old.files.sorted(by: { $0.key < $1.key }) where facts.hashes[path] != nil {
      plan.files.append(FileChange(path: path, kind: .delete, secret: file.secret))
    }
    plan.files.append(FileChange(path: Layout.manifest, kind: .delete, secret: false))
    for (key, change) in old.sysctl.sorted(by: { $0.key < $1.key }) {
      let current = facts.sysctl[key] ?? 0
      if current == change.applied && current != change.previous {
        plan.sysctl.append(SysctlAction(key: key, from: current, to: change.previous))
      }
    }
    plan.directories = old.directories.reversed().map {
      DesiredDirectory(path: $0, owner: nil, mode: 0, data: false)
    }
    if deleteData {
      plan.directories += old.dataDirectories.map {
        DesiredDirectory(path: $0, owner: nil, mode: 0, data: true)
      }
    }
    plan.manifestChanged = true
    return plan
  }

  static func parseService(_ text: String) -> ServiceName? {
    guard let at = text.firstIndex(of: "@"), let kind = ServiceName.Kind(rawValue: String(text[..<at])) else {
      return nil
    }
    return ServiceName(kind, String(text[text.index(after: at)...]))
  }
}
