/// How many files one watcher may delete on its backup without an operator: the `max_delete`
/// setting (inventory key `max_delete`, watcher config key `max-delete`).
///
/// Written as a count (`1000`), a percentage of the module's files (`10%`), both (`1000,10%`:
/// whichever allows more), or `unlimited`. `0` holds every delete. The default is `1000,10%`.
/// There is no empty or `none` form: turning the limit off takes the word `unlimited`.
public struct DeleteLimit: Sendable, Hashable, CustomStringConvertible {
  /// Files that may always be deleted; nil when only a percentage is given.
  public var count: Int?
  /// Percent (0...100) of the module's files that may be deleted; nil when only a count is given.
  public var percent: Int?
  /// Whether the limit is off (`unlimited`).
  public var isUnlimited: Bool

  /// 1,000 files or 10 % of the module, whichever is larger.
  public static let `default` = DeleteLimit(count: 1_000, percent: 10)
  /// No limit: every delete is applied at once.
  public static let unlimited = DeleteLimit(count: nil, percent: nil, unlimited: true)
  /// How a value is written, for messages.
  public static let syntax =
    "a count (1000), a percentage of the module's files (10%), both (1000,10%), or unlimited"

  /// A limit of `count` files and/or `percent` of the module's files; at least one must be given.
  public init(count: Int?, percent: Int?) {
    self.init(count: count, percent: percent, unlimited: false)
  }

  private init(count: Int?, percent: Int?, unlimited: Bool) {
    self.count = count
    self.percent = percent
    self.isUnlimited = unlimited
  }

  /// Reads a written limit (see ``syntax``).
  ///
  /// - Throws: ``FleetError`` ``FleetError/Code/invalidInput`` saying what is wrong with the value
  ///   and how to write it (the caller names the setting).
  public static func parse(_ text: String) throws -> DeleteLimit {
    func bad(_ why: String) -> FleetError {
      FleetError(.invalidInput, "`\(text)` \(why); write \(syntax)")
    }
    if text == "unlimited" { return .unlimited }
    let parts = text.split(separator: ",", omittingEmptySubsequences: false)
    guard (1...2).contains(parts.count) else { throw bad("has more than two parts") }
    var limit = DeleteLimit(count: nil, percent: nil)
    for part in parts {
      if part.hasSuffix("%") {
        guard limit.percent == nil else { throw bad("gives two percentages") }
        guard let p = Int(part.dropLast()), (0...100).contains(p) else {
          throw bad("has a percentage that is not a whole number from 0 to 100")
        }
        limit.percent = p
      } else {
        guard limit.count == nil else { throw bad("gives two counts") }
        guard let n = Int(part), n >= 0, n <= 1_000_000_000 else {
          throw bad(
            ["none", "off", "no", "false"].contains(part) ? "is not a limit" : "is not a count of files")
        }
        limit.count = n
      }
    }
    return limit
  }

  /// How many deletes the limit allows on a module of `moduleFiles` files; nil when unlimited.
  public func allowed(moduleFiles: Int) -> Int? {
    if isUnlimited { return nil }
    let byPercent = percent.map { Int((Double(max(0, moduleFiles)) * Double($0) / 100).rounded(.down)) }
    return max(count ?? 0, byPercent ?? 0)
  }

  /// The limit as written: `1000,10%`, `10%`, `1000` or `unlimited`.
  public var description: String {
    if isUnlimited { return "unlimited" }
    return [count.map(String.init), percent.map { "\($0)%" }].compactMap { $0 }.joined(separator: ",")
  }
}
