import FleetCore
import Foundation

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// The delete limit's tally on disk, `STATE-DIR/delete-budget.json`, so that a restart (a crash,
/// `systemctl restart`, a reboot, a SIGHUP reload) neither forgets the deletes applied within the
/// window nor the deletes held.
///
/// The file holds the ``DeleteBudget/Tally`` with both clocks of every moment, and the boot it was
/// written in. The limit is not saved: it comes from the config in force.
extension DeleteBudget {
  /// The record as written.
  struct File: Codable, Equatable {
    /// The record's file name inside ``WatchConfig/stateDir``.
    static let name = "delete-budget.json"
    /// The format written; another is refused as unreadable.
    static let currentVersion = 1

    var version: Int
    /// `/proc/sys/kernel/random/boot_id` when written: monotonic times are valid in that boot only.
    var boot: String
    var tally: Tally
  }

  /// This boot's id, or "" when it cannot be read (then saved monotonic times are never trusted).
  static func currentBoot() -> String {
    let text = try? String(contentsOfFile: "/proc/sys/kernel/random/boot_id", encoding: .utf8)
    return text?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
  }

  /// Reads the tally saved at `path`, its times made valid at `now` in boot `boot`; nil when there
  /// is no file (a first start).
  ///
  /// - Throws: ``FleetError`` when the file exists but cannot be read, parsed, or makes no sense.
  static func loadTally(path: String, boot: String, now: Moment, window: UInt64) throws -> Tally? {
    if access(path, F_OK) != 0 && errno == ENOENT { return nil }
    let data = try Data(contentsOf: URL(fileURLWithPath: path))
    let file = try decoder.decode(File.self, from: data)
    let t = file.tally
    guard file.version == File.currentVersion else {
      throw FleetError(.io, "format version \(file.version), this watcher reads \(File.currentVersion)")
    }
    guard t.moduleFiles >= 0, t.applied.allSatisfy({ $0.count >= 0 }), (t.held?.count ?? 0) >= 0 else {
      throw FleetError(.io, "negative counts")
    }
    return t.restored(sameBoot: !boot.isEmpty && boot == file.boot, now: now, window: window)
  }

  /// Writes `tally` to `path` atomically (temp file, fsync, rename), mode 0600.
  static func save(_ tally: Tally, path: String, boot: String) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    encoder.dateEncodingStrategy = .millisecondsSince1970
    let file = File(version: File.currentVersion, boot: boot, tally: tally)
    try AtomicFile.write(Array(try encoder.encode(file)) + [0x0A], to: path, mode: 0o600)
  }

  private static var decoder: JSONDecoder {
    let decoder = JSONDecoder()
    decoder.dateDecodingStrategy = .millisecondsSince1970
    return decoder
  }
}

extension DeleteBudget.Tally {
  /// The tally after a restart at `now`: moments outside the window dropped, the others given
  /// monotonic times of this boot.
  ///
  /// Within one boot (`sameBoot`) the saved monotonic time is exact, whatever the wall clock did.
  /// After a reboot only the wall clock tells a moment's age, and it may have been set meanwhile.
  /// The age is clamped to the window: a moment that looks later than now (the clock went back)
  /// counts as applied now, so it counts for one whole window from now, never longer and never less;
  /// a moment a window or more ago has passed. A clock set forward ages moments early; nothing
  /// can tell that from a real wait after a reboot. Soon after boot, a moment older than the
  /// monotonic clock gets time 0, which only makes it count a little longer.
  func restored(sameBoot: Bool, now: DeleteBudget.Moment, window: UInt64) -> Self {
    func restore(_ moment: DeleteBudget.Moment) -> DeleteBudget.Moment? {
      let age: UInt64
      if sameBoot {
        age = now.monotonic >= moment.monotonic ? now.monotonic - moment.monotonic : 0
      } else {
        let seconds = now.date.timeIntervalSince(moment.date)
        age = seconds > 0 ? Duration.seconds(seconds).saturatingNanos : 0
      }
      guard age < window else { return nil }
      return DeleteBudget.Moment(monotonic: now.monotonic > age ? now.monotonic - age : 0, date: moment.date)
    }
    var restored = self
    restored.applied = applied.compactMap { a in
      restore(a.at).map { DeleteBudget.Applied(at: $0, count: a.count) }
    }
    restored.fullSince = fullSince.flatMap(restore)
    return restored
  }
}
