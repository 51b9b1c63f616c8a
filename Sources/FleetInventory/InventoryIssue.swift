import FleetCore

/// One problem in an inventory file, located at `file:line:column`, with what to write instead.
public struct InventoryIssue: Sendable, Equatable, CustomStringConvertible {
  /// The inventory file.
  public var file: String
  /// 1-based line, 0 when unknown.
  public var line: Int
  /// 1-based column, 0 when unknown.
  public var column: Int
  /// What is wrong. Never contains a secret value.
  public var message: String
  /// What to write instead, when there is a clear answer.
  public var hint: String?

  /// Makes an issue.
  public init(file: String, line: Int, column: Int, message: String, hint: String? = nil) {
    self.file = file
    self.line = line
    self.column = column
    self.message = message
    self.hint = hint
  }

  public var description: String {
    var out = "\(file):\(line):\(column): error: \(message)"
    if let hint { out += "\n  hint: \(hint)" }
    return out
  }
}

/// Every problem found in an inventory; thrown (as a ``FleetError`` cause) by the loader.
public struct InventoryIssues: Error, Sendable, CustomStringConvertible {
  /// The problems, in file order.
  public var issues: [InventoryIssue]

  public var description: String { issues.map(\.description).joined(separator: "\n") }
}

extension FleetError.Code {
  /// The inventory is malformed or inconsistent; no host was contacted.
  public static let invalidInventory = FleetError.Code("inventory.invalid", meaning: .invalidInventory)
}
