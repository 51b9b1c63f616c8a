import FleetCore
import FleetInventory
import FleetWatch
import Foundation

/// Whether a restore may write into the protected directories it touches: never into one whose
/// filesystem is not the one its watcher recorded, the sign of an unmounted source.
///
/// A restore into an unmounted source would write into the mountpoint's filesystem (often `/`, which
/// it may fill), and the data would vanish under the real filesystem once it is mounted. The check
/// compares the device of the directory, or of its nearest existing parent when it is gone, with
/// the device in the watcher's `STATE/source-identity.json`; a directory without a record (never
/// synced) is not checked. A directory removed from its own filesystem (`rm -rf` of its content
/// or of the directory below a mount) keeps its device, so restoring it anew stays possible.
enum RestoreMountGuard {
  /// What the destination host showed of one protected directory.
  struct Observation: Equatable {
    /// The watcher's record of its source, when it has one.
    var recorded: SourceIdentity?
    /// The device of the directory or of its nearest existing parent, and that path.
    var device: UInt64?
    var checked: String
  }

  /// Why the restore must not write into `directory`, for people; nil when it may.
  static func refusal(_ seen: Observation, directory: ProtectedDirectory, host: String) -> String? {
    guard let recorded = seen.recorded, let device = seen.device, device != recorded.device else {
      return nil
    }
    let path = directory.path
    let checkedNote = seen.checked == path ? "" : " (its nearest existing parent \(seen.checked))"
    return
      "refusing to restore into \(path): it\(checkedNote) is on device \(device), but its watcher recorded the "
      + "source on device \(recorded.device) (\(recorded.filesystemType)): the source's filesystem looks unmounted, "
      + "and a restore would write into the filesystem under it and vanish when it is mounted; mount it "
      + "(`findmnt -T \(path)`) and restore again, or restore elsewhere with --to; if the source really moved, "
      + "accept it first: fleetsync resume -i INVENTORY --accept-source --directory \(directory.name) --limit \(host)"
  }

  /// Refuses (``FleetError/Code/restoreFailed``) when a protected directory the restore writes into
  /// on `target`'s host is not on the filesystem its watcher recorded; one command per directory.
  static func check(_ inventory: Inventory, _ target: HostPath, on host: any RemoteHost) async throws {
    for directory in Provisioner.touchedDirectories(inventory, target) {
      let seen = try await observe(directory, on: host)
      if let why = refusal(seen, directory: directory, host: target.host) {
        throw FleetError(.restoreFailed, why)
      }
    }
  }

  /// Reads the record of the directory's first watcher that has one, and the device, in one command.
  static func observe(_ directory: ProtectedDirectory, on host: any RemoteHost) async throws -> Observation {
    let records = try directory.destinations.map {
      try ShellQuote.quote(
        "\(Layout.state)/\(Layout.watchInstance(directory: directory.name, to: $0))/\(SourceIdentity.fileName)"
      )
    }
    let script = """
      \(try SectionedOutput.marker("identity"))
      for r in \(records.joined(separator: " ")); do [ -f "$r" ] && { cat "$r"; break; }; done
      \(try SectionedOutput.marker("device"))
      p=\(try ShellQuote.quote(directory.path))
      while [ ! -e "$p" ] && [ "$p" != / ]; do p=$(dirname -- "$p"); done
      stat -c %d -- "$p" && printf '%s\\n' "$p"
      exit 0
      """
    let sections = SectionedOutput(try await host.run(script).stdout)
    let json = (sections["identity"] ?? []).joined(separator: "\n")
    let recorded = json.isEmpty ? nil : try? JSONDecoder().decode(SourceIdentity.self, from: Data(json.utf8))
    let device = (sections["device"] ?? []).map(String.init)
    return Observation(
      recorded: recorded, device: device.first.flatMap { UInt64($0.trimmingCharacters(in: .whitespaces)) },
      checked: device.dropFirst().first ?? directory.path)
  }
}
