import FleetCore
import Foundation

/// The size of one backup module's mirror and versions, as the backup host's last prune run
/// measured them (``VersionsPrune``).
public struct ModuleSize: Sendable, Equatable {
  /// The module's directory.
  public var path: String
  /// KiB in the mirror (the module without its versions).
  public var mirrorKiB: Int
  /// KiB in `.fleetsync-versions`.
  public var versionsKiB: Int
  /// When they were measured.
  public var measured: Date

  /// Where the prune script records the sizes on a backup host.
  static let directory = "/run/fleetsync/sizes"
  /// The command that prints them.
  static let command = "cat \(directory)/* 2>/dev/null; true"

  /// The sizes in `output` (`MIRROR VERSIONS EPOCH PATH` lines); lines that are not such are skipped.
  static func parse(_ output: String) -> [ModuleSize] {
    output.split(separator: "\n").compactMap { line in
      let parts = line.split(separator: " ", maxSplits: 3, omittingEmptySubsequences: false)
      guard parts.count == 4, let mirror = Int(parts[0]), let versions = Int(parts[1]),
        let epoch = Int(parts[2])
      else { return nil }
      return ModuleSize(
        path: String(parts[3]), mirrorKiB: max(0, mirror), versionsKiB: max(0, versions),
        measured: Date(timeIntervalSince1970: TimeInterval(epoch)))
    }
  }
}

extension StatusTable {
  /// Below the table, for each backup host: each module's mirror and versions sizes.
  static func moduleSizeLines(_ hosts: [HostStatus]) -> [String] {
    var lines: [String] = []
    for host in hosts where !host.moduleSizes.isEmpty {
      let oldest = host.moduleSizes.map(\.measured).min() ?? Date()
      lines.append("")
      lines.append(
        "\(host.host) modules (measured \(Self.age(since: oldest)) ago by the hourly prune; "
          + "`systemctl start fleetsync-prune@DAEMON` measures again):")
      let width = host.moduleSizes.map(\.path.count).max() ?? 0
      for size in host.moduleSizes {
        lines.append(
          "  \(size.path.padding(toLength: width, withPad: " ", startingAt: 0))  mirror "
            + "\(Self.bytes(kib: size.mirrorKiB))  versions \(Self.bytes(kib: size.versionsKiB))")
      }
    }
    return lines
  }

  /// `1.5 GiB`, `12 MiB`, `4 KiB`.
  static func bytes(kib: Int) -> String {
    let units = ["KiB", "MiB", "GiB", "TiB", "PiB"]
    var value = Double(kib)
    var unit = 0
    while value >= 1024 && unit < units.count - 1 {
      value /= 1024
      unit += 1
    }
    return unit == 0 || value >= 10
      ? "\(Int(value.rounded())) \(units[unit])" : String(format: "%.1f %@", value, units[unit])
  }

  /// `42 s`, `12 min`, `3 h`.
  static func age(since date: Date, now: Date = Date()) -> String {
    let seconds = max(0, Int(now.timeIntervalSince(date)))
    if seconds < 120 { return "\(seconds) s" }
    if seconds < 7200 { return "\(seconds / 60) min" }
    return "\(seconds / 3600) h"
  }
}
