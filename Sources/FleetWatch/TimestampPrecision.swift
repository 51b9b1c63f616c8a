/// The precision a reconciling full sync compares modification times at, as rsync's
/// `--modify-window`.
///
/// Only full syncs compare at less than nanoseconds, and only when ``TimestampProbe`` found that the
/// backup keeps no sub-second times: there, comparing to the nanosecond would send every file again at
/// every full sync. Listed paths are never compared by time (`--ignore-times`) and always set times to
/// the nanosecond (`--modify-window=-1`).
public enum TimestampPrecision: String, Sendable, Codable, Equatable, CaseIterable {
  /// Seconds and nanoseconds must be equal (`--modify-window=-1`, rsync ≥ 3.1.3): the default.
  case nanosecond
  /// Whole seconds must be equal (`--modify-window=0`): a backup that keeps no sub-second times.
  case second
  /// Times within one second of each other are equal (`--modify-window=1`): a backup with FAT-like
  /// two-second times.
  case twoSeconds

  /// rsync's `--modify-window` for this precision.
  public var modifyWindow: Int {
    switch self {
    case .nanosecond: -1
    case .second: 0
    case .twoSeconds: 1
    }
  }

  /// The rsync option that compares at this precision.
  var modifyWindowArgument: String { "--modify-window=\(modifyWindow)" }

  /// For people: "to the nanosecond", "to the second", "to two seconds".
  var phrase: String {
    switch self {
    case .nanosecond: "to the nanosecond"
    case .second: "to the second"
    case .twoSeconds: "within one second (two-second times)"
    }
  }
}
