import FleetCore
import Foundation

/// The `--at TIME` of `restore`: a moment, and its spelling as a version STAMP (versions with a
/// greater STAMP hold what the tree was at that moment).
///
/// Accepted forms, one format with its two spellings: ISO 8601 with a zone
/// (`2026-11-28T00:05:01Z`, `2026-11-28T01:05:01.250+01:00`), or a version STAMP exactly as
/// `fleetsync versions` prints it (`2026-11-28T00-05-01.123Z`).
public struct RestoreTime: Sendable, Equatable, CustomStringConvertible {
  /// Milliseconds since the epoch.
  public var milliseconds: Int64

  /// Makes a time from milliseconds since the epoch.
  public init(milliseconds: Int64) { self.milliseconds = milliseconds }

  /// Parses `--at`.
  ///
  /// - Throws: ``FleetError/Code/invalidInput`` with the accepted forms.
  public init(parsing text: String) throws {
    let iso = Self.isoSpelling(ofStamp: text) ?? text
    let formatter = ISO8601DateFormatter()
    formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    let plain = ISO8601DateFormatter()
    guard Self.hasDateTimeAndZone(iso), let date = formatter.date(from: iso) ?? plain.date(from: iso) else {
      throw FleetError(
        .invalidInput,
        "--at '\(text)' is not a time: give ISO 8601 with a zone (2026-11-28T00:05:01Z, "
          + "2026-11-28T01:05:01+01:00) or a version stamp as `fleetsync versions` prints it (2026-11-28T00-05-01.123Z)"
      )
    }
    milliseconds = Int64((date.timeIntervalSince1970 * 1000).rounded(.down))
  }

  /// The STAMP spelling (`YYYY-MM-DDTHH-MM-SS.mmmZ`, UTC), which sorts as text like the versions' STAMPs.
  public var stamp: String {
    var seconds = time_t(milliseconds / 1000)
    var parts = tm()
    gmtime_r(&seconds, &parts)
    return String(
      format: "%04d-%02d-%02dT%02d-%02d-%02d.%03dZ", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1,
      Int(parts.tm_mday), Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec), Int(milliseconds % 1000))
  }

  /// `@SECONDS.mmm`, the form GNU `find -newermt` and `date -d` take.
  var epochArgument: String { String(format: "@%lld.%03lld", milliseconds / 1000, milliseconds % 1000) }

  public var description: String {
    let stamp = self.stamp
    let date = stamp.prefix(11)
    let time = stamp.dropFirst(11).prefix(8).replacingOccurrences(of: "-", with: ":")
    return "\(date)\(time)\(stamp.dropFirst(19))"
  }

  /// Whether `text` has the `T` between date and time, `:` in the time, and ends with a zone (`Z`, `+HH:MM`, `-HH:MM`):
  /// a time without a zone would be read in some zone nobody chose.
  static func hasDateTimeAndZone(_ text: String) -> Bool {
    let chars = Array(text.utf8)
    guard chars.count >= 20, chars[10] == UInt8(ascii: "T"), chars[13] == UInt8(ascii: ":"),
      chars[16] == UInt8(ascii: ":")
    else { return false }
    if chars.last == UInt8(ascii: "Z") { return true }
    let zone = chars.suffix(6)
    return (zone.first == UInt8(ascii: "+") || zone.first == UInt8(ascii: "-"))
      && zone.dropFirst(3).first == UInt8(ascii: ":")
  }

  /// Whether `name` is a version STAMP (`YYYY-MM-DDTHH-MM-SS.mmmZ`).
  static func isStamp(_ name: String) -> Bool { isoSpelling(ofStamp: name) != nil }

  /// `2026-11-28T00-05-01.123Z` → `2026-11-28T00:05:01.123Z`; nil when `text` is not a STAMP.
  static func isoSpelling(ofStamp text: String) -> String? {
    let chars = Array(text.utf8)
    guard chars.count == 24, chars[10] == UInt8(ascii: "T"), chars[13] == UInt8(ascii: "-"),
      chars[16] == UInt8(ascii: "-"), chars[19] == UInt8(ascii: "."), chars[23] == UInt8(ascii: "Z")
    else { return nil }
    let digits = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 22]
    guard digits.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(chars[$0]) }) else {
      return nil
    }
    var out = chars
    out[13] = UInt8(ascii: ":")
    out[16] = UInt8(ascii: ":")
    return String(decoding: out, as: UTF8.self)
  }
}
