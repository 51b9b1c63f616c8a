import FleetCore
import FleetInventory
import Foundation

/// Stable port assignments, kept in the controller's state file beside the inventory.
///
/// A port once given to an instance stays with it: adding directories or hosts never renumbers
/// existing instances. New instances take the lowest port from the base that no other instance on
/// the host has and nothing on the host listens on.
public struct PortBook: Sendable, Equatable, Codable {
  /// First port for rsync daemon instances.
  public static let rsyncBase = 8730
  /// First port for watcher health endpoints.
  public static let healthBase = 9700

  /// `host/kind@instance` → port.
  public var ports: [String: Int] = [:]

  /// Makes an empty book.
  public init() {}

  /// Loads the book from `path` (absent: empty).
  public static func load(path: String) throws -> PortBook {
    guard let data = FileManager.default.contents(atPath: path) else { return PortBook() }
    do {
      return try JSONDecoder().decode(PortBook.self, from: data)
    } catch {
      throw FleetError(.localState, "state file \(path) is not valid JSON: fix it or move it away")
    }
  }

  /// Saves the book atomically.
  public func save(path: String) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    let data = try encoder.encode(self)
    try AtomicFile.write(Array(data), to: path, mode: 0o644)
  }

  /// The port of `service` on `host`: the inventory's fixed port, the recorded one, or a new one.
  ///
  /// - Parameters:
  ///   - listening: ports in use on the host now (from its facts), or nil if unknown.
  ///   - ours: ports our own running instances hold on the host (not a conflict).
  /// - Throws: when a fixed or recorded port is taken by something that is not ours.
  public mutating func port(
    host: String, service: ServiceName, fixed: Int?, listening: Set<Int>?, ours: Set<Int>
  ) throws -> Int {
    let key = "\(host)/\(service)"
    let used = Set(ports.filter { $0.key.hasPrefix("\(host)/") && $0.key != key }.values)
    if let fixed {
      if used.contains(fixed) {
        throw FleetError(
          .invalidInput, "\(host): port \(fixed) of \(service) is already given to another instance")
      }
      if let listening, listening.contains(fixed), !ours.contains(fixed) {
        throw FleetError(
          .portTaken, "\(host): port \(fixed) for \(service) is already in use by another program on the host"
        )
      }
      ports[key] = fixed
      return fixed
    }
    if let recorded = ports[key] {
      if let listening, listening.contains(recorded), !ours.contains(recorded) {
        throw FleetError(
          .portTaken,
          "\(host): port \(recorded) of \(service) is now in use by another program; stop it, or set a port in the inventory"
        )
      }
      return recorded
    }
    var candidate = service.kind == .rsyncd ? Self.rsyncBase : Self.healthBase
    while used.contains(candidate) || (listening?.contains(candidate) ?? false) { candidate += 1 }
    ports[key] = candidate
    return candidate
  }

  /// Forgets instances that are gone from `host` (after a successful `up` or `down`).
  public mutating func retain(host: String, services: Set<ServiceName>) {
    for key in ports.keys where key.hasPrefix("\(host)/") {
      let name = String(key.dropFirst(host.count + 1))
      if !services.contains(where: { $0.description == name }) { ports[key] = nil }
    }
  }
}

extension PortBook {
  /// Gives every instance of `inventory` its port (see ``port(host:service:fixed:listening:ours:)``).
  ///
  /// - Parameter facts: the hosts that could be read, by name: what listens there and which of
  ///   fleetsync's own instances run. A host without facts gets its ports without those checks.
  /// - Returns: per host, every instance that could not have its port, with why; no entry for a
  ///   host whose instances all have theirs.
  mutating func assign(_ inventory: Inventory, facts: [String: HostFacts]) -> [String: [FleetError]] {
    var errors: [String: [FleetError]] = [:]
    for (host, service, fixed) in Self.instances(of: inventory) {
      let hostFacts = facts[host]
      do {
        _ = try port(
          host: host, service: service, fixed: fixed, listening: hostFacts?.listening,
          ours: hostFacts?.ownPorts ?? [])
      } catch {
        errors[host, default: []].append(FleetError.wrap(error, code: .internal, "assigning a port failed"))
      }
    }
    return errors
  }

  /// Every service instance the inventory asks for, with its host and the inventory's fixed port.
  static func instances(of inventory: Inventory) -> [(host: String, service: ServiceName, fixed: Int?)] {
    var out: [(host: String, service: ServiceName, fixed: Int?)] = []
    for backup in inventory.backups {
      for daemon in backup.daemons {
        out.append((backup.name, ServiceName(.rsyncd, daemon.name), daemon.port))
      }
    }
    for source in inventory.sources {
      for dir in source.directories {
        for dest in dir.destinations {
          let service = ServiceName(.watch, Layout.watchInstance(directory: dir.name, to: dest))
          out.append((source.name, service, dir.healthPort))
        }
      }
    }
    return out
  }
}

extension FleetError.Code {
  /// A port fleetsync needs is taken by another program on the host.
  public static let portTaken = FleetError.Code("provision.portTaken", meaning: .failed)
}
