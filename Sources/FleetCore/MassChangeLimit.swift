/// When a watcher raises the mass-change alarm: the `mass_change` setting (inventory key
/// `mass_change`, watcher config key `mass-change`).
///
/// Written `MIN,FACTORx,WINDOW` (`500,10x,5m`): the alarm goes off when the files deleted or
/// overwritten on the backup within WINDOW reach MIN and FACTOR times the directory's normal count
/// per WINDOW (the median of the last hour's windows). `off` turns the alarm off.
public struct MassChangeLimit: Sendable, Hashable, CustomStringConvertible {
  /// The fewest files deleted or overwritten within a window that can raise the alarm.
  public var minFiles: Int
  /// How many times the normal count per window raises the alarm.
  public var factor: Int
  /// The window, in seconds.
  public var windowSeconds: Int
  /// Whether the alarm is off (`off`).
  public var isOff: Bool

  /// 500 files, 10 times the normal rate, within 5 minutes.
  public static let `default` = MassChangeLimit(minFiles: 500, factor: 10, windowSeconds: 300)
  /// No alarm.
  public static let off = MassChangeLimit(minFiles: 0, factor: 0, windowSeconds: 0, off: true)
  /// How a value is written, for messages.
  public static let syntax =
    "MIN,FACTORx,WINDOW: files (1 to 100000000), times the normal rate (1x to 1000x), and a window "
    + "of 10s to 24h (e.g. 500,10x,5m, the default), or off"

  /// A limit of `minFiles` files and `factor` times the normal rate within `windowSeconds`.
  public init(minFiles: Int, factor: Int, windowSeconds: Int) {
    self.init(minFiles: minFiles, factor: factor, windowSeconds: windowSeconds, off: false)
  }

  private init(minFiles: Int, factor: Int, windowSeconds: Int, off: Bool) {
    self.minFiles = minFiles
    self.factor = factor
    self.windowSeconds = windowSeconds
    self.isOff = off
  }

  /// Reads a written limit (see ``syntax``).
  ///
  /// - Throws: ``FleetError`` ``FleetError/Code/invalidInput`` saying what is wrong with the value
  ///   and how to write it (the caller names the setting).
  public static func parse(_ text: String) throws -> MassChangeLimit {
    func bad(_ why: String) -> FleetError {
      FleetError(.invalidInput, "`\(text)` \(why); write \(syntax)")
    }
    if text == "off" { return .off }
    let parts = text.split(separator: ",", omittingEmptySubsequences: false)
    guard parts.count == 3 else { throw bad("does not have three parts") }
    guard let files = Int(parts[0]), (1...100_000_000).contains(files) else {
      throw bad("does not start with a count of files from 1 to 100000000")
    }
    guard parts[1].hasSuffix("x"), let factor = Int(parts[1].dropLast()), (1...1_000).contains(factor) else {
      throw bad("has no factor from 1x to 1000x in the middle")
    }
    guard let window = seconds(parts[2]), (10...86_400).contains(window) else {
      throw bad("does not end with a window from 10s to 24h (a number with s, m or h)")
    }
    return MassChangeLimit(minFiles: files, factor: factor, windowSeconds: window)
  }

  private static func seconds(_ text: Substring) -> Int? {
    let units: [Character: Int] = ["s": 1, "m": 60, "h": 3_600]
    guard let last = text.last, let unit = units[last], let n = Int(text.dropLast()), n >= 0,
      n <= 1_000_000
    else { return nil }
    return n * unit
  }

  /// The window as written: `5m`, `90s`, `1h`.
  public var windowText: String {
    if windowSeconds % 3_600 == 0 { return "\(windowSeconds / 3_600)h" }
    if windowSeconds % 60 == 0 { return "\(windowSeconds / 60)m" }
    return "\(windowSeconds)s"
  }

  /// The limit as written: `500,10x,5m` or `off`.
  public var description: String {
    isOff ? "off" : "\(minFiles),\(factor)x,\(windowText)"
  }
}
