import FleetCore
import FleetInventory

extension Provisioner {
  /// Refuses a run in which two inventory names reach one machine (a DNS alias, or two addresses of
  /// one host), found from the hosts' facts before anything is written anywhere.
  ///
  /// fleetsync keeps one record per machine (its manifest): under two names, each name's `up` would
  /// remove what the other's installed, and `down` of one would remove both. The inventory already
  /// refuses one address under two names; this catches what the text cannot show. Two names are one
  /// machine when they report the same kernel boot id and the same `/etc` (device and inode): two
  /// containers on one kernel have their own `/etc`, two machines never share a boot id.
  func checkDistinctMachines(_ facts: [String: HostFacts]) throws {
    var names: [String: [String]] = [:]
    for (name, hostFacts) in facts {
      if let machine = hostFacts.machine { names[machine, default: []].append(name) }
    }
    let shared = names.values.filter { $0.count > 1 }.map { $0.sorted() }.sorted { $0[0] < $1[0] }
    guard !shared.isEmpty else { return }
    let list = shared.map { $0.joined(separator: " and ") }.joined(separator: "; ")
    throw FleetError(
      .sameMachine,
      "\(list) are one machine under two names (same running kernel, same /etc): fleetsync keeps one "
        + "record per machine, so each name's `up` or `down` would remove what the other installed. "
        + "Nothing was changed on any host. List the machine once in \(inventory.file): one name, under "
        + "both `sources:` and `backups:` if it has both roles (see docs/inventory.md)")
  }

  /// Refuses to work on a host whose manifest was written for another host of this inventory: the
  /// two names are one machine (found also when `--limit` selects one of them only), and `up` or
  /// `down` under this name would remove what the other installed. A manifest naming a host the
  /// inventory no longer has (a renamed host) is taken over.
  func checkRecordedName(_ ref: HostRef, facts: HostFacts) throws {
    guard let owner = facts.manifest?.host, owner != ref.name,
      inventory.hosts.contains(where: { $0.name == owner })
    else { return }
    throw FleetError(
      .sameMachine,
      "\(ref.name) is the machine fleetsync provisioned as \(owner) (its \(Layout.manifest) is \(owner)'s): "
        + "one machine under two names, and working on it as \(ref.name) would remove what \(owner) "
        + "installed. Nothing was changed on it. List the machine once in \(inventory.file): one name, under "
        + "both `sources:` and `backups:` if it has both roles (see docs/inventory.md)")
  }

  /// Refuses the run when a node's lease was refused because this run already holds it under
  /// another name and ``checkDistinctMachines(_:)`` could not tell (the facts carry no machine
  /// identity): one machine under two names, and nothing was written.
  func checkLeases(_ sessions: [String: Result<Session, FleetError>]) throws {
    for case .success(let session) in sessions.values {
      if let refusal = session.leaseRefusal {
        throw FleetError(
          .sameMachine,
          refusal.message
            + ". Nothing was changed on any host. List the machine once in \(inventory.file): one "
            + "name, under both `sources:` and `backups:` if it has both roles (see docs/inventory.md)")
      }
    }
  }
}

extension FleetError.Code {
  /// Two inventory names reach one machine; the run was refused before any change.
  public static let sameMachine = FleetError.Code("provision.sameMachine", meaning: .invalidInput)

}
