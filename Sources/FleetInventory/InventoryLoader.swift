import FleetCore
import Foundation
import Yams

extension Inventory {
  /// Reads and validates the inventory at `path`.
  ///
  /// - Throws: ``FleetError`` with code ``FleetError/Code/invalidInventory`` and an
  ///   ``InventoryIssues`` cause listing every problem (all of them, not just the first), or
  ///   ``FleetError/Code/io`` when the file cannot be read.
  public static func load(path: String) throws -> Inventory {
    let text: String
    do {
      text = try String(contentsOfFile: path, encoding: .utf8)
    } catch {
      throw FleetError(.io, "cannot read inventory \(path): \(error.localizedDescription)")
    }
    return try parse(yaml: text, file: path)
  }

  /// Validates inventory text; `file` names it in error locations and anchors relative paths.
  public static func parse(yaml: String, file: String) throws -> Inventory {
    var reader = InventoryReader(file: file)
    let inventory = reader.read(yaml: yaml)
    if let inventory, reader.issues.isEmpty { return inventory }
    let issues = reader.issues.sorted { ($0.line, $0.column) < ($1.line, $1.column) }
    let count = issues.count
    throw FleetError(
      .invalidInventory,
      "\(file): \(count) error\(count == 1 ? "" : "s") in the inventory; no host was contacted",
      cause: InventoryIssues(issues: issues))
  }
}

/// Walks the YAML node tree, checks every key and value, and builds the model.
///
/// Split by concern: hosts (`+Sources`, `+Backups`), layered settings (`+Settings`), typed
/// values (`+Values`); the keys each part accepts are in ``InventoryKeys``.
struct InventoryReader {
  let file: String
  var issues: [InventoryIssue] = []
  /// Every `to:` entry, with its node and the directory that sends, checked once all backups are read.
  var destinationNodes: [(destination: Destination, node: Node, directory: String)] = []
  /// Each host entry's `address:` node, by `source NAME` / `backup NAME`, for ``checkMachines(sources:backups:)``.
  var addressNodes: [String: Node] = [:]
  /// Each module's node, by `HOST/MODULE`, for ``checkMachines(sources:backups:)``.
  var moduleNodes: [String: Node] = [:]

  init(file: String) { self.file = file }

  /// The settings every host starts from: `defaults:` and each declared group's.
  struct Inherited {
    var defaults = Layers()
    var groups: [String: Layers] = [:]
    /// Group names in file order.
    var groupOrder: [String] = []
  }

  mutating func read(yaml: String) -> Inventory? {
    guard let root = compose(yaml) else { return nil }
    guard let top = mapping(root, "the inventory", keys: InventoryKeys.top) else { return nil }

    if let version = top["version"] { _ = int(version.value, "version", range: 1...1) }
    var secretsFile = defaultSecretsFile()
    if let node = top["secrets_file"], let path = string(node.value, "secrets_file") {
      secretsFile = resolveLocal(path)
    }
    let inherited = self.inherited(top)
    var backupNames: [String: Node] = [:]
    let backups = hosts(top, "backups", kind: "backup host", names: &backupNames) {
      $0.backup($1, $2, inherited: inherited)
    }
    var sourceNames: [String: Node] = [:]
    let sources = hosts(top, "sources", kind: "source", names: &sourceNames) {
      $0.source($1, $2, inherited: inherited)
    }
    if top["sources"] == nil && top["backups"] == nil {
      issue(root, "the inventory has no `sources:` and no `backups:`", hint: "see docs/inventory.md")
    }
    checkDestinations(backups: backups)
    checkMachines(sources: sources, backups: backups)
    return Inventory(
      file: file, secretsFile: secretsFile, sources: sources, backups: backups, groups: inherited.groupOrder)
  }

  /// The YAML node tree, or nil (with the syntax error reported) when there is none.
  mutating func compose(_ yaml: String) -> Node? {
    let root: Node?
    do {
      root = try Yams.compose(yaml: yaml)
    } catch let error as YamlError {
      report(yamlError: error)
      return nil
    } catch {
      issues.append(InventoryIssue(file: file, line: 0, column: 0, message: "cannot parse YAML: \(error)"))
      return nil
    }
    guard let root else {
      issue(nil, "the inventory is empty", hint: "start from inventory/small.yaml")
      return nil
    }
    return root
  }

  /// `defaults:` and `groups:`.
  mutating func inherited(_ top: Fields) -> Inherited {
    var out = Inherited()
    if let node = top["defaults"] {
      out.defaults = layers(node.value, "defaults", keys: InventoryKeys.defaults)
    }
    if let node = top["groups"], let entries = mapping(node.value, "groups", keys: nil) {
      for entry in entries.pairs {
        guard let name = name(entry.key, "group") else { continue }
        out.groups[name] = layers(entry.value, "group \(name)", keys: InventoryKeys.group)
        out.groupOrder.append(name)
      }
    }
    return out
  }

  /// The hosts under `section` (`sources:` or `backups:`), each read by `read`; a name used twice
  /// in the section is reported once and read once. (A name in both sections is one host with both
  /// roles, checked by ``checkMachines(sources:backups:)``.)
  mutating func hosts<Host>(
    _ top: Fields, _ section: String, kind: String, names: inout [String: Node],
    read: (inout InventoryReader, String, Node) -> Host?
  ) -> [Host] {
    guard let node = top[section], let entries = mapping(node.value, section, keys: nil) else { return [] }
    var out: [Host] = []
    for entry in entries.pairs {
      guard let name = name(entry.key, kind) else { continue }
      if let first = names[name] {
        issue(
          entry.key, "host name `\(name)` is used twice (first at line \(first.mark?.line ?? 0))",
          hint:
            "name each host once under `\(section):` (one name under both sections is one host with both roles)"
        )
        continue
      }
      names[name] = entry.key
      if let host = read(&self, name, entry.value) { out.append(host) }
    }
    return out
  }
}
