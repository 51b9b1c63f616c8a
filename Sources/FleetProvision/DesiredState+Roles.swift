import FleetCore
import FleetInventory

extension DesiredHost {
  /// One node's desired state from what each of its roles wants (a host that is a source and a
  /// backup): one manifest lists both roles' files, directories and services, so that neither
  /// role's `up` removes what the other installed, and `down` removes both.
  ///
  /// What both roles want (fleetsync's own directories) is kept once, in the first role's order, so
  /// parents still come before children.
  /// - Throws: when two roles want one file with different content, or one service twice (never
  ///   from the renderer: the roles' paths and instance names are disjoint).
  init(combining roles: [DesiredHost]) throws {
    guard var out = roles.first else { throw FleetError(.internal, "a host with no role to render") }
    for role in roles.dropFirst() {
      for directory in role.directories where !out.directories.contains(where: { $0.path == directory.path })
      {
        out.directories.append(directory)
      }
      for file in role.files {
        if let same = out.files.first(where: { $0.path == file.path }) {
          guard same.sha256 == file.sha256 else {
            throw FleetError(
              .internal, "\(out.host.name): both roles want \(file.path), with different content")
          }
          continue
        }
        out.files.append(file)
      }
      for service in role.services {
        guard !out.services.contains(where: { $0.name == service.name }) else {
          throw FleetError(.internal, "\(out.host.name): both roles want \(service.name)")
        }
        out.services.append(service)
      }
      out.sysctl.merge(role.sysctl) { max($0, $1) }
      out.warnings += role.warnings
    }
    self = out
  }
}
