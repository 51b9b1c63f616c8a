/// A secret value (password, passphrase, key material) that never prints itself.
///
/// `description`, `debugDescription` and string interpolation all show `<redacted>`, so a secret
/// that slips into a log line or an error message does not leak. Read the value only with
/// ``Secret/withBytes(_:)`` or ``Secret/revealed`` at the single place that must send it.
public struct Secret: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible,
  CustomReflectable
{
  private let storage: [UInt8]

  /// Wraps bytes as a secret.
  public init(bytes: [UInt8]) { self.storage = bytes }

  /// Wraps a string as a secret.
  public init(_ string: String) { self.storage = Array(string.utf8) }

  /// The secret as a string, for the one call that needs it.
  public var revealed: String { String(decoding: storage, as: UTF8.self) }

  /// Calls `body` with the secret's bytes.
  public func withBytes<R>(_ body: ([UInt8]) throws -> R) rethrows -> R { try body(storage) }

  /// Whether the secret is empty.
  public var isEmpty: Bool { storage.isEmpty }

  public var description: String { "<redacted>" }
  public var debugDescription: String { "<redacted>" }
  public var customMirror: Mirror { Mirror(self, children: []) }
}
