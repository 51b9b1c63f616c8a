/// An error from any fleetsync module: a stable code, a message for people, and what caused it.
///
/// Modules extend ``FleetError/Code`` with their own codes, and each code declares what it means
/// (``FleetError/Meaning``); per-host outcomes (``HostOutcome``) and exit statuses (``ExitStatus``) are
/// derived from that meaning alone. Messages never carry secrets: callers pass redacted values only.
public struct FleetError: Error, Sendable, CustomStringConvertible {
  /// A stable, machine-readable error category and what it means.
  public struct Code: Hashable, Sendable, CustomStringConvertible {
    /// The code's name, e.g. `ssh.hostKeyChanged`.
    public let name: String
    /// What an error with this code means for the host or the command it stopped.
    public let meaning: Meaning

    /// Makes a code; modules declare theirs as static constants, next to the code that raises them.
    public init(_ name: String, meaning: Meaning) {
      self.name = name
      self.meaning = meaning
    }

    public var description: String { name }

    /// The input (arguments, config, a file named on the command line) is wrong; nothing was touched.
    public static let invalidInput = Code("invalidInput", meaning: .invalidInput)
    /// A local or remote I/O operation failed.
    public static let io = Code("io", meaning: .failed)
    /// The operation was cancelled.
    public static let cancelled = Code("cancelled", meaning: .cancelled)
    /// A bug or an impossible state.
    public static let `internal` = Code("internal", meaning: .failed)
  }

  /// What went wrong, by category.
  public var code: Code
  /// A message for people: what happened and, where known, what to do.
  public var message: String
  /// The underlying error, if any.
  public var cause: (any Error & Sendable)?

  /// Makes an error value.
  public init(_ code: Code, _ message: String, cause: (any Error & Sendable)? = nil) {
    self.code = code
    self.message = message
    self.cause = cause
  }

  public var description: String {
    guard let cause else { return message }
    return "\(message): \(cause)"
  }
}

extension FleetError {
  /// What an error means for the host or the command it stopped; every ``Code`` declares one.
  ///
  /// The module that raises an error knows what happened, so it decides the meaning; nobody
  /// re-classifies codes by their names. The line between ``unreachable`` and ``failed`` is the login:
  /// before it, nothing was done on the host; after it, something may have been.
  public enum Meaning: String, Sendable, Hashable, CaseIterable {
    /// The command's input (arguments, options, a file they name) is wrong; nothing was touched.
    case invalidInput
    /// The inventory is malformed or inconsistent; no host was contacted.
    case invalidInventory
    /// No SSH session with the host came about: the connection was refused, there was no route or no
    /// answer, or the network or the SSH handshake failed before login. Nothing was done on the host.
    case unreachable
    /// The host answered but we could not log in: it refused the credentials, they could not be used,
    /// or its host key is unknown or changed. Nothing was done on the host.
    case auth
    /// Something we asked of a reachable host (or of this machine) failed: a remote command, an SFTP
    /// write (permission denied, disk full), a deadline or a dropped connection after login, a bug.
    case failed
    /// The work was cancelled.
    case cancelled
  }
}

extension FleetError {
  /// Wraps any error as a ``FleetError``, keeping one that already is.
  public static func wrap(
    _ error: any Error, code: Code = .internal, _ message: @autoclosure () -> String
  ) -> FleetError {
    if let fleet = error as? FleetError { return fleet }
    if error is CancellationError { return FleetError(.cancelled, "cancelled") }
    return FleetError(code, message(), cause: SendableErrorBox(String(describing: error)))
  }
}

/// A non-Sendable error reduced to its description so it can travel across tasks.
public struct SendableErrorBox: Error, Sendable, CustomStringConvertible {
  /// The original error's description.
  public let description: String
  /// Boxes a description.
  public init(_ description: String) { self.description = description }
}
