import FleetCore
import FleetWire
import Foundation
import Yams

// Typed values: mappings with known keys, strings, numbers, names, addresses, paths; and how
// problems are reported (at the node's file:line:column).
extension InventoryReader {
  /// A mapping's entries with the key nodes kept for locations.
  struct Fields {
    var node: Node
    var pairs: [(key: Node, value: Node)]
    var allowed: [String]
    subscript(_ key: String) -> (key: Node, value: Node)? {
      pairs.first { $0.key.string == key }
    }
  }

  /// Checks `node` is a mapping; reports unknown (with a suggestion), secret-looking and
  /// duplicate keys. `keys == nil` accepts any key (a map of names).
  mutating func mapping(_ node: Node, _ what: String, keys: [String]?) -> Fields? {
    guard let map = node.mapping else {
      issue(node, "\(what) must be a mapping (`key: value` lines), not \(kind(of: node))")
      return nil
    }
    var seen: [String: Node] = [:]
    var pairs: [(key: Node, value: Node)] = []
    for (key, value) in map {
      guard let name = key.scalar?.string else {
        issue(key, "\(what): keys must be plain names")
        continue
      }
      if let first = seen[name] {
        issue(
          key, "\(what): `\(printable(name))` appears twice (first at line \(first.mark?.line ?? 0))",
          hint: "keep one of them")
        continue
      }
      seen[name] = key
      if InventoryKeys.secretLike.contains(name.lowercased()) {
        issue(
          key, "\(what): secrets are never written in the inventory (the value was not read)",
          hint:
            "remove `\(name)`; fleetsync generates each module's secret into the secrets file, or set `secret_file: PATH` on the module"
        )
        continue
      }
      if let keys, !keys.contains(name) {
        issue(
          key, "\(what): unknown key `\(printable(name))`",
          hint: Suggestion.didYouMean(name, among: keys) ?? "known keys: \(keys.joined(separator: ", "))")
        continue
      }
      pairs.append((key, value))
    }
    return Fields(node: node, pairs: pairs, allowed: keys ?? [])
  }

  mutating func string(_ node: Node, _ what: String) -> String? {
    guard let scalar = node.scalar, isPlainString(node) else {
      issue(node, "\(what) must be a string, not \(kind(of: node))")
      return nil
    }
    return scalar.string
  }

  mutating func int(_ node: Node, _ what: String, range: ClosedRange<Int>) -> Int? {
    guard node.scalar != nil, let value = node.int else {
      issue(
        node, "\(what) must be a whole number, not \(kind(of: node))",
        hint: "write a number between \(range.lowerBound) and \(range.upperBound)")
      return nil
    }
    guard range.contains(value) else {
      issue(node, "\(what) is \(value), out of range", hint: "use \(range.lowerBound)...\(range.upperBound)")
      return nil
    }
    return value
  }

  mutating func stringList(_ node: Node, _ what: String) -> [String]? {
    if node.scalar != nil, let one = string(node, what) { return [one] }
    guard let seq = node.sequence else {
      issue(node, "\(what) must be a list, not \(kind(of: node))", hint: "write `[a, b]`")
      return nil
    }
    var out: [String] = []
    for item in seq {
      guard let s = string(item, what) else { return nil }
      out.append(s)
    }
    return out
  }

  mutating func name(_ node: Node, _ what: String) -> String? {
    guard let text = node.scalar?.string else {
      issue(node, "\(what) name must be a string, not \(kind(of: node))")
      return nil
    }
    guard isSafeName(text) else {
      issue(
        node, "\(what) name `\(printable(text))` is not safe as a file name",
        hint: "use letters, digits, `.`, `_` and `-` (at most 63, starting with a letter or digit)")
      return nil
    }
    return text
  }

  mutating func address(_ node: Node, _ what: String) -> String? {
    guard let text = string(node, what) else { return nil }
    let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:")
    guard !text.isEmpty, text.count <= 253, text.allSatisfy({ allowed.contains($0) }), !text.hasPrefix("-")
    else {
      issue(
        node, "\(what) `\(printable(text))` is not a host name or IP address",
        hint: "write an IPv4/IPv6 address or a DNS name, e.g. `192.0.2.10` or `nfs1.example.org`")
      return nil
    }
    return text
  }

  /// A path that holds data (a protected directory, a backup module): a ``path(_:_:)`` that is not,
  /// inside or above a directory fleetsync keeps its own files in. Replicating one would feed the
  /// watcher's own journal back to it; a module there would have its `--delete` wipe fleetsync's state.
  mutating func dataPath(_ node: Node, _ what: String) -> String? {
    guard let path = path(node, what) else { return nil }
    if let own = Inventory.fleetsyncDirectories.first(where: { Self.overlaps(path, $0) }) {
      issue(
        node, "\(what) `\(path)` overlaps \(own), where fleetsync keeps its own files",
        hint: "keep data outside \(Inventory.fleetsyncDirectories.joined(separator: ", "))")
      return nil
    }
    return path
  }

  /// Whether one of two normalised absolute paths is the other or lies inside it.
  static func overlaps(_ a: String, _ b: String) -> Bool {
    a == b || a.hasPrefix(b + "/") || b.hasPrefix(a + "/")
  }

  /// An absolute remote path without shell or config metacharacters, normalised.
  mutating func path(_ node: Node, _ what: String) -> String? {
    guard let text = string(node, what) else { return nil }
    guard text.hasPrefix("/") else {
      issue(
        node, "\(what) `\(printable(text))` is relative", hint: "write an absolute path, e.g. `/\(text)`")
      return nil
    }
    if let bad = text.unicodeScalars.first(where: {
      InventoryKeys.pathForbidden.contains($0) || $0.value < 0x20
    }) {
      let shown = bad.value < 0x20 ? String(format: "\\x%02x", bad.value) : String(bad)
      issue(
        node, "\(what) contains `\(shown)`, which fleetsync does not accept in paths",
        hint:
          "use a plain path (letters, digits, spaces, `._-+=,@%~:`); a symlink can give an odd path a plain name"
      )
      return nil
    }
    let parts = text.split(separator: "/")
    if parts.contains(where: { $0 == "." || $0 == ".." }) {
      issue(node, "\(what) `\(printable(text))` has `.` or `..` parts", hint: "write the path without them")
      return nil
    }
    if parts.isEmpty {
      issue(node, "\(what) is `/`", hint: "protect a data directory, not the whole filesystem")
      return nil
    }
    let normalized = "/" + parts.joined(separator: "/")
    // The config files fleetsync writes (watcher, rsyncd) trim values: the path must survive that.
    if let problem = WatcherConfigFile.problem(with: normalized) {
      issue(
        node, "\(what) `\(printable(text))` \(problem)",
        hint: "remove the blank at the end; a symlink can give an odd path a plain name")
      return nil
    }
    return normalized
  }

  func isSafeName(_ text: String) -> Bool {
    guard let first = text.unicodeScalars.first, text.unicodeScalars.count <= 63 else { return false }
    let ok = { (c: Unicode.Scalar) -> Bool in
      (c >= "a" && c <= "z") || (c >= "A" && c <= "Z") || (c >= "0" && c <= "9") || c == "." || c == "_"
        || c == "-"
    }
    guard text.unicodeScalars.allSatisfy(ok), first != ".", first != "-", first != "_" else { return false }
    return !text.contains("..")
  }

  func isSafeLine(_ text: String) -> Bool {
    !text.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F }
  }

  func isPlainString(_ node: Node) -> Bool {
    // Plain scalars that YAML would read as numbers or booleans are still accepted as strings
    // where a string is expected only if they are not numbers/bools/null.
    guard let scalar = node.scalar else { return false }
    if scalar.style != .plain { return true }
    return node.int == nil && node.float == nil && node.bool == nil && node.null == nil
  }

  func kind(of node: Node) -> String {
    switch node {
    case .mapping: return "a mapping"
    case .sequence: return "a list"
    case .scalar(let s):
      if s.style == .plain {
        if node.null != nil { return "empty" }
        if node.bool != nil { return "a boolean (`\(s.string)`)" }
        if node.int != nil || node.float != nil { return "a number (`\(s.string)`)" }
      }
      return "a string (`\(printable(s.string))`)"
    }
  }

  func printable(_ text: String) -> String {
    var out = ""
    for c in text.unicodeScalars.prefix(60) {
      out += c.value < 0x20 || c.value == 0x7F ? String(format: "\\x%02x", c.value) : String(c)
    }
    return text.unicodeScalars.count > 60 ? out + "…" : out
  }

  func defaultSecretsFile() -> String {
    let base =
      file.hasSuffix(".yaml")
      ? String(file.dropLast(5)) : file.hasSuffix(".yml") ? String(file.dropLast(4)) : file
    return base + ".secrets"
  }

  /// Resolves a controller-side path: `~/` to $HOME, relative to the inventory's folder.
  func resolveLocal(_ path: String) -> String {
    if path.hasPrefix("~/") {
      let home = ProcessInfo.processInfo.environment["HOME"] ?? "/root"
      return home + String(path.dropFirst(1))
    }
    if path.hasPrefix("/") { return path }
    let dir = (file as NSString).deletingLastPathComponent
    return dir.isEmpty ? path : dir + "/" + path
  }

  mutating func issue(_ node: Node?, _ message: String, hint: String? = nil) {
    let mark = node?.mark
    issues.append(
      InventoryIssue(
        file: file, line: mark?.line ?? 0, column: mark?.column ?? 0, message: message, hint: hint))
  }

  mutating func report(yamlError error: YamlError) {
    switch error {
    case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _),
      .composer(let context, let problem, let mark, _):
      let detail = context.map { "\(problem) \($0.text)" } ?? problem
      issues.append(
        InventoryIssue(
          file: file, line: mark.line, column: mark.column, message: "YAML syntax: \(detail)",
          hint: "check indentation (spaces, not tabs) and quoting near this point"))
    default:
      issues.append(InventoryIssue(file: file, line: 0, column: 0, message: "YAML: \(error)"))
    }
  }
}
