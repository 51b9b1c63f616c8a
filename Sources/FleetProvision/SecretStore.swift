import Crypto
import FleetCore
import FleetInventory
import Foundation

/// The controller's module secrets: generated once, kept in a 0600 file beside the inventory.
///
/// Format: `BACKUP/MODULE SECRET` lines under a header. While `fleetsync rotate-secrets` has not
/// finished a module, the module's next secret is kept too, as `BACKUP/MODULE+next SECRET` (`+`
/// occurs in no host or module name): a rotation cut off is finished with the same secret, and the
/// file never holds a secret the hosts might have that it does not know. A module with
/// `secret_file` in the inventory takes its secret from that file instead. Secrets are only ever
/// handed out as ``FleetCore/Secret`` values.
public struct SecretStore: Sendable {
  /// Path of the store file.
  public let path: String
  /// Whether the store file existed when loaded.
  public let existed: Bool
  private var secrets: [String: Secret]
  /// Next secrets of rotations not finished, by `BACKUP/MODULE`.
  private var next: [String: Secret] = [:]
  private var dirty = false

  /// What marks a line's key as a module's next secret.
  static let nextSuffix = "+next"

  /// Loads the store at `path` (an absent file is an empty store).
  ///
  /// - Throws: when the file is readable by group or others, or malformed.
  public init(path: String) throws {
    self.path = path
    self.secrets = [:]
    self.existed = FileManager.default.fileExists(atPath: path)
    guard existed else { return }
    let attributes = try? FileManager.default.attributesOfItem(atPath: path)
    let mode = (attributes?[.posixPermissions] as? NSNumber)?.intValue ?? 0
    if mode & 0o077 != 0 {
      throw FleetError(
        .localState,
        "secrets file \(path) is readable by others (mode \(String(mode & 0o777, radix: 8))); run: chmod 600 \(path)"
      )
    }
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
      throw FleetError(.localState, "cannot read secrets file \(path)")
    }
    for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
      if line.isEmpty || line.hasPrefix("#") { continue }
      let parts = line.split(separator: " ", maxSplits: 1)
      guard parts.count == 2 else {
        throw FleetError(.localState, "\(path):\(index + 1): expected `BACKUP/MODULE SECRET`")
      }
      let key = String(parts[0])
      if key.hasSuffix(Self.nextSuffix) {
        next[String(key.dropLast(Self.nextSuffix.count))] = Secret(String(parts[1]))
      } else {
        secrets[key] = Secret(String(parts[1]))
      }
    }
  }

  /// The secret for `module` on `backup`: from the module's `secret_file`, the store, or newly
  /// generated (32 random bytes, base64url) and remembered until ``save()``.
  public mutating func secret(backup: String, module: RsyncModule) throws -> Secret {
    if let file = module.secretFile {
      guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
        throw FleetError(.localState, "cannot read secret_file \(file) of module \(backup)/\(module.name)")
      }
      let value = text.trimmingCharacters(in: .whitespacesAndNewlines)
      guard !value.isEmpty, !value.contains("\n"), !value.contains(":") else {
        throw FleetError(
          .localState, "secret_file \(file) must hold one line without `:` (the secret itself is not shown)")
      }
      return Secret(value)
    }
    let key = "\(backup)/\(module.name)"
    if let known = secrets[key] { return known }
    let fresh = Secret(Self.generate())
    secrets[key] = fresh
    dirty = true
    return fresh
  }

  /// The secret of every module of `inventory`, by `backup/module` (see ``secret(backup:module:)``).
  mutating func moduleSecrets(_ inventory: Inventory) throws -> [String: Secret] {
    var out: [String: Secret] = [:]
    for backup in inventory.backups {
      for daemon in backup.daemons {
        for module in daemon.modules {
          out["\(backup.name)/\(module.name)"] = try secret(backup: backup.name, module: module)
        }
      }
    }
    return out
  }

  /// The secret the store holds for `key` (`BACKUP/MODULE`), without generating one.
  public func current(_ key: String) -> Secret? { secrets[key] }

  /// The next secret of `key`'s rotation when one has not finished.
  public func pending(_ key: String) -> Secret? { next[key] }

  /// The modules whose rotation has not finished, by `BACKUP/MODULE`.
  public var pendingKeys: [String] { next.keys.sorted() }

  /// Starts (or resumes) the rotation of `key`: its next secret, newly generated unless a rotation
  /// cut off left one, remembered until ``save()``.
  public mutating func beginRotation(_ key: String) -> Secret {
    if let known = next[key] { return known }
    let fresh = Secret(Self.generate())
    next[key] = fresh
    dirty = true
    return fresh
  }

  /// Ends the rotation of `key`: its next secret becomes its secret (until ``save()``).
  public mutating func finishRotation(_ key: String) {
    guard let fresh = next.removeValue(forKey: key) else { return }
    secrets[key] = fresh
    dirty = true
  }

  /// Writes the store if anything changed (atomically, mode 0600).
  public mutating func save() throws {
    guard dirty else { return }
    var text =
      "# fleetsync module secrets: keep this file private (mode 0600); losing it means new secrets.\n"
    for key in secrets.keys.sorted() {
      text += "\(key) \(secrets[key]!.revealed)\n"
    }
    for key in next.keys.sorted() {
      text += "\(key)\(Self.nextSuffix) \(next[key]!.revealed)\n"
    }
    try AtomicFile.write(Array(text.utf8), to: path, mode: 0o600)
    dirty = false
  }

  static func generate() -> String {
    let key = SymmetricKey(size: .bits256)
    let data = key.withUnsafeBytes { Data($0) }
    return data.base64EncodedString()
      .replacingOccurrences(of: "+", with: "-")
      .replacingOccurrences(of: "/", with: "_")
      .replacingOccurrences(of: "=", with: "")
  }
}
